import { create } from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  ChannelSummarySchema,
  MemberSchema,
  type Realtime,
  type BroadcastRequest,
  type SendRequest,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Broker, Publication } from "../core/broker.js";
import {
  checkIdempotencyKey,
  DEFAULT_IDEMPOTENCY_MAX_KEYS,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  fingerprintOf,
  Idempotency,
  keyMismatch,
  type DoneKey,
  type HeldKey,
} from "../core/idempotency.js";
import { MemoryIdempotencyStore } from "../core/idempotency-memory.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { MAX_BATCH_EVENTS, MAX_PUBLISH_UNACKNOWLEDGED, type Limits } from "../core/limits.js";
import { checkChannel, checkEvent } from "../core/names.js";
import type { Member, PresenceDirectory } from "../core/presence.js";
import { acceptedNow, checkPayload, createPublication, type IdGenerator } from "../core/publication.js";
import { publishStream, type PublishEvent } from "./publish.js";
import { DEFAULT_CHANNEL_PAGE_SIZE, decodePageToken, encodePageToken, membersScope, pageSize } from "../core/pages.js";
import { API_KEY, CONNECTION } from "./call-context.js";
import { getHistory } from "./history.js";
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
  /**
   * Where idempotency keys are claimed (roles/seams.ts: this process's
   * memory, or Redis). Default: this process's memory, with the default
   * window and bound.
   */
  idempotency?: Idempotency;
}

/** An event checked and encoded, ready to be handed to the broker. */
interface Prepared {
  readonly id: string;
  readonly pub: Publication;
  /** Its idempotency key; "" for none. */
  readonly key: string;
}

/** What a publish reads of its call: the API key's fingerprint (API_KEY) and the cancellation. */
type Call = Pick<HandlerContext, "values" | "signal">;

/** What Send and Broadcast answer. */
interface Ack {
  messageId: string;
  edges: number;
  duplicate: boolean;
}

/**
 * The one implementation of realtime.v1.Realtime. The gRPC adapter (and the
 * Connect adapter) serve it unchanged; it throws ConnectError, whose codes
 * are gRPC's.
 */
export function createRealtimeService(deps: RealtimeServiceDeps): ServiceImpl<typeof Realtime> {
  const { broker, presence, limits, eventIds, watchers } = deps;
  const watchStreams = new WatchStreams(deps.watchLimits);
  const idempotency =
    deps.idempotency ??
    new Idempotency({
      store: new MemoryIdempotencyStore({
        windowMs: DEFAULT_IDEMPOTENCY_WINDOW_MS,
        maxKeys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
      }),
    });

  /**
   * Checks the key and encodes the event: throws INVALID_ARGUMENT or
   * RESOURCE_EXHAUSTED. The event is accepted here: its publication carries
   * this moment (acceptedUnixMs), from which the edges measure its delivery
   * latency, so that latency includes the idempotency claim and the broker.
   */
  function prepare(channel: string, event: string, payload: Parameters<typeof checkPayload>[0], key: string): Prepared {
    if (key !== "") checkIdempotencyKey(key);
    const id = eventIds.next();
    const ev = create(EventSchema, { id, channel, event, payload });
    const pub = createPublication(ev, limits.maxPayloadBytes, "", false, acceptedNow());
    return { id, pub, key };
  }

  /** Send (alone, in a batch or in a Publish stream), checked: throws INVALID_ARGUMENT for a bad name or a missing payload. */
  function prepareSend(req: SendRequest): Prepared {
    checkChannel(req.channel);
    checkEvent(req.event);
    checkPayload(req.payload);
    return prepare(req.channel, req.event, req.payload, req.idempotencyKey);
  }

  /** Broadcast (alone or in a Publish stream), checked. */
  function prepareBroadcast(req: BroadcastRequest): Prepared {
    checkEvent(req.event);
    checkPayload(req.payload);
    return prepare("", req.event, req.payload, req.idempotencyKey);
  }

  /**
   * Hands the event to the broker; with a key, once per key: a retry gets
   * the first attempt's answer with duplicate. `started` is called once
   * the event is handed to the broker, or known not to be (a duplicate, an
   * error): what the Publish stream orders its next requests by.
   */
  async function publish(p: Prepared, call: Call, started?: () => void): Promise<Ack> {
    if (p.key === "") {
      const delivery = broker.publish(p.pub);
      started?.();
      return { messageId: p.id, edges: (await delivery).edges, duplicate: false };
    }
    const scope = call.values.get(API_KEY);
    const claim = await idempotency.claim(scope, p.key, fingerprintOf(p.pub.event, p.id), call.signal);
    if (claim.duplicate) return { ...claim.result, duplicate: true };
    return publishHeld(p, claim, started);
  }

  /** Publishes an event whose key this call holds: remembers its result, or forgets the key if it failed. */
  async function publishHeld(p: Prepared, held: HeldKey, started?: () => void): Promise<Ack> {
    let edges: number;
    try {
      const publishing = broker.publish(p.pub);
      started?.();
      edges = (await publishing).edges;
    } catch (err) {
      held.release();
      throw err;
    }
    held.complete({ messageId: p.id, edges });
    return { messageId: p.id, edges, duplicate: false };
  }

  /**
   * SendBatch's events with keys: every key is claimed before anything is
   * sent (if one cannot be, the claimed ones are released, nothing is sent,
   * and the call fails naming its index); then the events are handed to the
   * broker in batch order, those already delivered answered from their
   * first result. A key twice in one batch: the second is a duplicate of
   * the first (the same request) or FAILED_PRECONDITION.
   */
  async function publishKeyedBatch(prepared: Prepared[], call: Call): Promise<Ack[]> {
    const scope = call.values.get(API_KEY);
    const fingerprints = prepared.map((p) => (p.key === "" ? "" : fingerprintOf(p.pub.event, p.id)));
    const firstOf = new Map<string, number>();
    const copyOf: (number | undefined)[] = [];
    prepared.forEach((p, i) => {
      if (p.key === "") return;
      const first = firstOf.get(p.key);
      if (first === undefined) firstOf.set(p.key, i);
      else if (fingerprints[first] !== fingerprints[i])
        indexed(i, () => {
          throw keyMismatch(p.key, true);
        });
      else copyOf[i] = first;
    });
    const firsts = [...firstOf.values()];
    const settled = await Promise.allSettled(
      firsts.map((i) => idempotency.claim(scope, prepared[i]!.key, fingerprints[i]!, call.signal)),
    );
    const claims = new Map(firsts.map((i, k) => [i, settled[k]!]));
    const refused = firsts.find((i) => claims.get(i)!.status === "rejected");
    if (refused !== undefined) {
      for (const c of claims.values()) if (c.status === "fulfilled" && !c.value.duplicate) c.value.release();
      const reason = (claims.get(refused) as PromiseRejectedResult).reason;
      indexed(refused, () => {
        throw reason;
      });
    }
    const acks: Promise<Ack>[] = [];
    prepared.forEach((p, i) => {
      const copy = copyOf[i];
      if (copy !== undefined) {
        acks.push(acks[copy]!.then((a) => ({ ...a, duplicate: true })));
        return;
      }
      const claim = claims.get(i);
      if (claim === undefined) acks.push(publish(p, call));
      else {
        const c = (claim as PromiseFulfilledResult<HeldKey | DoneKey>).value;
        acks.push(c.duplicate ? Promise.resolve({ ...c.result, duplicate: true }) : publishHeld(p, c));
      }
    });
    return Promise.all(acks);
  }

  return {
    async send(req, ctx) {
      return guard(async () => publish(prepareSend(req), ctx));
    },
    async sendBatch(req, ctx) {
      return guard(async () => {
        const { requests } = req;
        if (requests.length === 0 || requests.length > MAX_BATCH_EVENTS) {
          throw new RealtimeError(
            Code.InvalidArgument,
            `requests holds ${requests.length} events; a batch holds 1 to ${MAX_BATCH_EVENTS}`,
          );
        }
        // Check and encode everything before sending anything.
        const prepared = requests.map((r, i) => indexed(i, () => prepareSend(r)));
        const keyed = prepared.some((p) => p.key !== "");
        return {
          responses: await (keyed
            ? publishKeyedBatch(prepared, ctx)
            : Promise.all(prepared.map((p) => publish(p, ctx)))),
        };
      });
    },
    async broadcast(req, ctx) {
      return guard(async () => publish(prepareBroadcast(req), ctx));
    },
    async *publish(requests, ctx) {
      // Stream order with keys: a keyed request is handed to the broker only
      // once its key is claimed (a Redis round trip in Redis mode), so the
      // requests after it wait until it was (or was found to be a
      // duplicate); without keys nothing waits.
      let gate: Promise<void> | undefined;
      const publishOne = (e: PublishEvent): Promise<unknown> => {
        const p = e.case === "send" ? prepareSend(e.value) : prepareBroadcast(e.value);
        if (gate === undefined && p.key === "") return broker.publish(p.pub);
        const before = gate;
        let open!: () => void;
        const mine = new Promise<void>((resolve) => (open = resolve));
        gate = mine;
        void mine.then(() => {
          if (gate === mine) gate = undefined;
        });
        return (async () => {
          try {
            if (before) await before;
            return await publish(p, ctx, open);
          } finally {
            open();
          }
        })();
      };
      try {
        yield* publishStream(requests, publishOne, MAX_PUBLISH_UNACKNOWLEDGED, ctx.signal);
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
    async presenceStats(req) {
      return guard(async () => {
        checkChannel(req.channel);
        return presence.stats(req.channel);
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
          channels: page.map((c) =>
            create(ChannelSummarySchema, { name: c.channel, members: c.members, users: c.users }),
          ),
          nextPageToken: found.length > size ? encodePageToken(scope, page[size - 1]!.channel) : "",
        };
      });
    },
    async getHistory(req) {
      return guard(async () => getHistory(broker, req));
    },
    async *watchChannel(req, ctx) {
      let close: (() => void) | undefined;
      try {
        checkChannel(req.channel);
        close = watchStreams.open(ctx.values.get(CONNECTION), ctx.values.get(API_KEY));
        const since = req.since && { offset: req.since.offset, epoch: req.since.epoch };
        yield* watchChannel(req.channel, watchers, presence, ctx.signal, since && { since, history: broker });
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
