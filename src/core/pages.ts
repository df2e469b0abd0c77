/**
 * Page tokens of the list methods (the API's GetMembers and ListChannels,
 * the client protocol's getMembers), after https://google.aip.dev/158: a
 * page is keyed by the last item of the page before (keyset, not offset),
 * so that concurrent joins and leaves never shift an item into two pages or
 * out of all of them.
 *
 * A token is opaque to callers: base64url of JSON [scope, key], where scope
 * binds it to the request it continues (the channel of GetMembers, the
 * prefix of ListChannels). Tokens never expire: they hold no server state.
 * A GetMembers token of the API and one of the client protocol are the
 * same thing (the member id a page ended with), so either continues either.
 */
import { toBinary, toJsonString } from "@bufbuild/protobuf";
import { MemberSchema } from "../../gen/realtime/client/v1/client_pb.js";
import type { Member, MemberPage, Presence } from "./presence.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { MAX_MEMBERS_PAGE_BYTES } from "./limits.js";
import { Encoding } from "../protocol/encodings.js";
import { varintSize } from "../wire/varint.js";

/** Most items in one page; a larger page_size counts as this (AIP-158). */
export const MAX_PAGE_SIZE = 1000;
/** ListChannels' page size when the request says 0. */
export const DEFAULT_CHANNEL_PAGE_SIZE = 100;
/**
 * Members in a client's getMembers reply when the command says no
 * page_size (an older client gets this first page). A page of members with
 * profiles at the default limit (4 KiB) is about 440 KB, well inside the
 * default outbound queue (1 MiB); MAX_MEMBERS_PAGE_BYTES bounds any page.
 */
export const DEFAULT_MEMBERS_PAGE_SIZE = 100;

/** The scope of GetMembers tokens: bound to the channel. */
export function membersScope(channel: string): string {
  return `members:${channel}`;
}

/** The token that continues after `key` within `scope`. */
export function encodePageToken(scope: string, key: string): string {
  return Buffer.from(JSON.stringify([scope, key])).toString("base64url");
}

/**
 * The key a token continues after; "" for an empty token. Throws
 * INVALID_ARGUMENT for a token that is malformed or from another scope.
 */
export function decodePageToken(token: string, scope: string, request: string): string {
  if (token === "") return "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[1] !== "string" || parsed[1] === "") {
    throw new RealtimeError(
      Code.InvalidArgument,
      'page_token is not a token this API issued: pass next_page_token of the previous page, or "" for the first',
    );
  }
  if (parsed[0] !== scope) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `page_token belongs to another request: repeat the ${request} of the first page`,
    );
  }
  return parsed[1];
}

/** The page size to use for a requested one (0 means `fallback`). */
export function pageSize(requested: number, fallback: number): number {
  return Math.min(requested === 0 ? fallback : requested, MAX_PAGE_SIZE);
}

/**
 * Cuts a page so that its members take at most maxBytes as `sizeOf`
 * measures them (each member's share of the encoded reply), keeping at
 * least one member; a cut page has more = true. Measures only the members
 * it keeps (and the first one past the bound): O(the page's bytes), however
 * many members were offered.
 */
export function fitPage(page: MemberPage, maxBytes: number, sizeOf: (member: Member) => number): MemberPage {
  let total = 0;
  for (let i = 0; i < page.members.length; i++) {
    total += sizeOf(page.members[i]!);
    if (total > maxBytes && i > 0) return { members: page.members.slice(0, i), more: true };
  }
  return page;
}

/**
 * What one member adds to a reply in the given encoding: its encoding,
 * plus its field tag and length (binary) or the comma between entries
 * (JSON). Both client encodings' replies and the link's (binary) hold
 * members this way.
 */
export function memberSize(encoding: Encoding): (member: Member) => number {
  return encoding === Encoding.Json
    ? (m) => Buffer.byteLength(toJsonString(MemberSchema, m), "utf8") + 1
    : (m) => {
        const n = toBinary(MemberSchema, m).length;
        return n + 1 + varintSize(n);
      };
}

/** What a client's getMembers reply carries. */
export interface MembersReply {
  members: Member[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/**
 * The client protocol's getMembers: one page of at most pageSize members
 * (0: DEFAULT_MEMBERS_PAGE_SIZE; at most MAX_PAGE_SIZE) after the token's,
 * whose members take at most MAX_MEMBERS_PAGE_BYTES in the connection's
 * encoding (the reply adds its id and token). Throws INVALID_ARGUMENT for
 * a token of another channel, UNAVAILABLE as Presence.page does.
 */
export async function readMembersPage(
  presence: Presence,
  channel: string,
  requestedSize: number,
  pageToken: string,
  encoding: Encoding,
): Promise<MembersReply> {
  const scope = membersScope(channel);
  const after = decodePageToken(pageToken, scope, "channel");
  const whole = await presence.page(channel, after, pageSize(requestedSize, DEFAULT_MEMBERS_PAGE_SIZE));
  const page = fitPage(whole, MAX_MEMBERS_PAGE_BYTES, memberSize(encoding));
  const last = page.members.at(-1);
  return { members: page.members, nextPageToken: page.more && last ? encodePageToken(scope, last.id) : "" };
}
