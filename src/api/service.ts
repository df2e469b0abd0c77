import { create } from "@bufbuild/protobuf";
import { ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  ChannelSummarySchema,
  MemberSchema,
  type Realtime,
  type BroadcastRequest,
  type SendRequest,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Broker } from "../core/broker.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { MAX_BATCH_EVENTS, MAX_PUBLISH_UNACKNOWLEDGED, type Limits } from "../core/limits.js";
import { checkChannel, checkEvent } from "../core/names.js";
import type { Member, PresenceDirectory } from "../core/presence.js";
import { checkPayload, createPublication, type IdGenerator } from "../core/publication.js";
import { publishStream } from "./publish.js";
import { DEFAULT_CHANNEL_PAGE_SIZE, decodePageToken, encodePageToken, membersScope, pageSize } from "../core/pages.js";
import { API_KEY, CONNECTION } from "./call-context.js";
import { watchChannel, WatchStreams, type WatchSource, type WatchStreamLimits } from "./watch.js";

export interface RealtimeServiceDeps {
  broker: Broker;
  presence: PresenceDirectory;
  limits: Limits;
  eventIds: IdGenerator;
  /** Where WatchChannel subscribes: `(h) => memoryBroker.attach(h, false)`. */
  watchers: WatchSource;
  /** WatchChannel streams open at once per connection and per API key. Default: WatchStreams' defaults. */
  watchLimits?: WatchStreamLimits;
}

/**
 * The one implementation of realtime.v1.Realtime. The gRPC adapter (and the
 * Connect adapter) serve it unchanged; it throws ConnectError, whose codes
 * are gRPC's.
 */
export function createRealtimeService(deps: RealtimeServiceDeps): ServiceImpl<typeof Realtime> {
  const { broker, presence, limits, eventIds, watchers } = deps;
  const watchStreams = new WatchStreams(deps.watchLimits);

  async function publish(channel: string, event: string, payload: Parameters<typeof checkPayload>[0]) {
    const id = eventIds.next();
    const pub = createPublication(create(EventSchema, { id, channel, event, payload }), limits.maxPayloadBytes);
    const edges = await broker.publish(pub);
    return { messageId: id, edges };
  }

  /** Send (alone or in a Publish stream): throws INVALID_ARGUMENT for a bad name or a missing payload. */
  function sendOne(req: SendRequest) {
    checkChannel(req.channel);
    checkEvent(req.event);
    checkPayload(req.payload);
    return publish(req.channel, req.event, req.payload);
  }

  /** Broadcast (alone or in a Publish stream). */
  function broadcastOne(req: BroadcastRequest) {
    checkEvent(req.event);
    checkPayload(req.payload);
    return publish("", req.event, req.payload);
  }

  return {
    async send(req) {
      return guard(async () => sendOne(req));
    },
    async sendBatch(req) {
      return guard(async () => {
        const { requests } = req;
        if (requests.length === 0 || requests.length > MAX_BATCH_EVENTS) {
          throw new RealtimeError(
            Code.InvalidArgument,
            `requests holds ${requests.length} events; a batch holds 1 to ${MAX_BATCH_EVENTS}`,
          );
        }
        // Check and encode everything before sending anything.
        const pubs = requests.map((r, i) =>
          indexed(i, () => {
            checkChannel(r.channel);
            checkEvent(r.event);
            checkPayload(r.payload);
            const id = eventIds.next();
            return {
              id,
              pub: createPublication(
                create(EventSchema, { id, channel: r.channel, event: r.event, payload: r.payload }),
                limits.maxPayloadBytes,
              ),
            };
          }),
        );
        const edges = await Promise.all(pubs.map(({ pub }) => broker.publish(pub)));
        return { responses: pubs.map(({ id }, i) => ({ messageId: id, edges: edges[i]! })) };
      });
    },
    async broadcast(req) {
      return guard(async () => broadcastOne(req));
    },
    async *publish(requests, ctx) {
      try {
        yield* publishStream(
          requests,
          (e) => (e.case === "send" ? sendOne(e.value) : broadcastOne(e.value)),
          MAX_PUBLISH_UNACKNOWLEDGED,
          ctx.signal,
        );
      } catch (err) {
        throw toConnectError(err);
      }
    },
    async getMembers(req) {
      return guard(async () => {
        checkChannel(req.channel);
        const scope = membersScope(req.channel);
        const after = decodePageToken(req.pageToken, scope, "channel");
        let members: Member[];
        let nextPageToken = "";
        if (req.pageSize > 0 || after !== "") {
          // Keyset pages by member id (see core/pages.ts).
          const page = await presence.page(req.channel, after, pageSize(req.pageSize, Infinity));
          members = page.members;
          if (page.more) nextPageToken = encodePageToken(scope, members.at(-1)!.id);
        } else {
          members = await presence.members(req.channel);
        }
        return {
          members: members.map((m) => create(MemberSchema, { id: m.id, data: m.data, userId: m.userId })),
          nextPageToken,
        };
      });
    },
    async listChannels(req) {
      return guard(async () => {
        const scope = `channels:${req.prefix}`;
        const after = decodePageToken(req.pageToken, scope, "prefix");
        const size = pageSize(req.pageSize, DEFAULT_CHANNEL_PAGE_SIZE);
        // One more than the page tells whether there is a next page.
        const found = await presence.channels(req.prefix, after, size + 1);
        const page = found.slice(0, size);
        return {
          channels: page.map((c) => create(ChannelSummarySchema, { name: c.channel, members: c.members })),
          nextPageToken: found.length > size ? encodePageToken(scope, page[size - 1]!.channel) : "",
        };
      });
    },
    getHistory() {
      // The seam's first commit: the hub's history and this method follow.
      throw toConnectError(new RealtimeError(Code.Unimplemented, "GetHistory is not implemented yet"));
    },
    async *watchChannel(req, ctx) {
      let close: (() => void) | undefined;
      try {
        checkChannel(req.channel);
        close = watchStreams.open(ctx.values.get(CONNECTION), ctx.values.get(API_KEY));
        yield* watchChannel(req.channel, watchers, presence, ctx.signal);
      } catch (err) {
        throw toConnectError(err);
      } finally {
        close?.();
      }
    },
  };
}

/** Runs fn; an error it throws names the batch index it is about. */
function indexed<T>(index: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const e = asRealtimeError(err);
    throw new RealtimeError(e.code, `requests[${index}]: ${e.message}`);
  }
}

/** Runs fn, turning any RealtimeError into the ConnectError of the same code. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toConnectError(err);
  }
}

function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = asRealtimeError(err);
  return new ConnectError(e.message, e.code as number);
}
