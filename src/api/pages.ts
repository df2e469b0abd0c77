/**
 * Page tokens of the list methods (GetMembers, ListChannels), after
 * https://google.aip.dev/158: a page is keyed by the last item of the page
 * before (keyset, not offset), so that concurrent joins and leaves never
 * shift an item into two pages or out of all of them.
 *
 * A token is opaque to callers: base64url of JSON [scope, key], where scope
 * binds it to the request it continues (the channel of GetMembers, the
 * prefix of ListChannels). Tokens never expire: they hold no server state.
 */
import { Code, RealtimeError } from "../core/errors.js";

/** Most items in one page; a larger page_size counts as this (AIP-158). */
export const MAX_PAGE_SIZE = 1000;
/** ListChannels' page size when the request says 0. */
export const DEFAULT_CHANNEL_PAGE_SIZE = 100;

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
