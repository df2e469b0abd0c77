/**
 * WatchChannel: a channel's members, then its events, as a stream. The API
 * attaches one broker node per watcher (not an edge: it counts for no
 * delivery and receives no broadcasts), subscribes it to the channel, and
 * only then reads the members, so no event between the two is lost.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  MemberSchema,
  WatchChannelResponseSchema,
  type WatchChannelResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication, PublicationHandler } from "../core/broker.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { DEFAULT_WATCH_MAX_STREAMS_PER_KEY } from "../core/limits.js";
import { SystemEvent } from "../protocol/system-events.js";
import type { Member, Presence } from "../core/presence.js";

/** Most members in one WatchSnapshot message (the proto documents it). */
export const WATCH_SNAPSHOT_CHUNK = 500;
/**
 * Events queued for one watcher that reads too slowly; past this (or past
 * {@link WATCH_MAX_QUEUED_BYTES}) the queue is dropped at once, and the
 * watch ends with RESOURCE_EXHAUSTED at its next read (the watcher must
 * watch again for a fresh snapshot anyway) instead of growing the API's
 * memory.
 */
export const WATCH_MAX_QUEUED_EVENTS = 10_000;
/**
 * Bytes of events queued for one watcher (each counted as its encoded
 * event, the bulk of its response), as WATCH_MAX_QUEUED_EVENTS: what a
 * stalled watcher can pin in the API beyond its transport's buffers. The
 * same as a WebSocket client's default outbound limit
 * (DEFAULT_MAX_OUTBOUND_BYTES): a watcher is held to what a client is.
 */
export const WATCH_MAX_QUEUED_BYTES = 1024 * 1024;
/**
 * WatchChannel streams open at once on one connection (an HTTP/2
 * connection carries many; HTTP/1.1 one at a time); a new one past it is
 * RESOURCE_EXHAUSTED. 100 is the least SETTINGS_MAX_CONCURRENT_STREAMS
 * that RFC 9113 (5.1.2) recommends a peer allow.
 */
export const WATCH_MAX_STREAMS_PER_CONNECTION = 100;

/** One watcher's subscription: MemoryNode (broker-memory.ts) is one. */
export interface WatchNode {
  /** Resolves once the channel's publications reach the node's handler. */
  subscribe(channel: string): Promise<void>;
  /** Stops delivery to the handler for good. */
  close(): void;
  /**
   * Registers the one listener told when the node's subscriptions are lost
   * (the Redis mode's subscriber connection dropped: what is published
   * until it re-subscribes is missed). A node that cannot lose them (the
   * embedded hub's, in this process) has none.
   */
  onLost?(listener: (why: string) => void): void;
}

/**
 * Where watchers subscribe: attach a node whose handler receives the
 * publications of the channels it subscribes to, and no broadcasts.
 * `(h) => memoryBroker.attach(h, false)` in the embedded mode.
 */
export type WatchSource = (handler: PublicationHandler) => WatchNode;

/** Each publication is decoded once, whatever the number of watchers. */
const decoded = new WeakMap<Publication, WatchChannelResponse | null>();

/**
 * The responses of one WatchChannel call: the snapshot (members by id, in
 * parts of {@link WATCH_SNAPSHOT_CHUNK}), then each event in the order the
 * broker delivered it, until `signal` aborts (then it throws the reason).
 * When the node loses its subscription (WatchNode.onLost) the stream ends
 * with UNAVAILABLE after the events delivered before the loss: a watcher
 * is never left on a stream that silently misses events; it opens it
 * again (and gets a fresh snapshot).
 */
export async function* watchChannel(
  channel: string,
  source: WatchSource,
  presence: Presence,
  signal: AbortSignal,
): AsyncGenerator<WatchChannelResponse> {
  const queue: { response: WatchChannelResponse; bytes: number }[] = [];
  let queuedBytes = 0;
  /** Why the watcher was dropped, once it fell too far behind. */
  let overflow: string | undefined;
  /** Why the node's subscription was lost, once it was. */
  let lost: string | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  let detached = false;
  const detach = () => {
    if (!detached) node.close();
    detached = true;
  };
  const node = source((pub) => {
    if (overflow) return;
    const response = toResponse(pub);
    if (!response) return;
    const bytes = pub.event.length;
    if (queue.length >= WATCH_MAX_QUEUED_EVENTS)
      overflow = `${WATCH_MAX_QUEUED_EVENTS} events (WATCH_MAX_QUEUED_EVENTS)`;
    else if (queuedBytes + bytes > WATCH_MAX_QUEUED_BYTES)
      overflow = `${WATCH_MAX_QUEUED_BYTES / 1024 / 1024} MiB of events (WATCH_MAX_QUEUED_BYTES)`;
    if (overflow) {
      // Free what it pinned now, not at its next read (which a stalled
      // watcher may never make), and take no more.
      queue.length = 0;
      queuedBytes = 0;
      queueMicrotask(detach);
    } else {
      queue.push({ response, bytes });
      queuedBytes += bytes;
    }
    notify();
  });
  node.onLost?.((why) => {
    lost ??= why;
    notify();
  });
  signal.addEventListener("abort", notify);
  try {
    await node.subscribe(channel);
    const members = [...(await presence.members(channel))].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 0; i === 0 || i < members.length; i += WATCH_SNAPSHOT_CHUNK) {
      const part = members.slice(i, i + WATCH_SNAPSHOT_CHUNK).map(member);
      yield create(WatchChannelResponseSchema, {
        update: { case: "members", value: { members: part, complete: i + WATCH_SNAPSHOT_CHUNK >= members.length } },
      });
    }
    for (;;) {
      signal.throwIfAborted();
      if (overflow) {
        throw new RealtimeError(
          Code.ResourceExhausted,
          `the watcher fell ${overflow} behind the channel: read the stream as fast as events come, and watch again to get a fresh snapshot`,
        );
      }
      const next = queue.shift();
      if (next) {
        queuedBytes -= next.bytes;
        yield next.response;
        continue;
      }
      if (lost) {
        throw new RealtimeError(
          Code.Unavailable,
          `the watch lost its subscription (${lost}), so events may be missed from here: open it again for a fresh snapshot`,
        );
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal.removeEventListener("abort", notify);
    detach();
  }
}

function member(m: Member) {
  return create(MemberSchema, { id: m.id, data: m.data, userId: m.userId });
}

/** The response for a publication, or null for one that is not a channel event. */
function toResponse(pub: Publication): WatchChannelResponse | null {
  let response = decoded.get(pub);
  if (response !== undefined) return response;
  response = null;
  try {
    const event = fromBinary(EventSchema, pub.event);
    const p = event.payload;
    if (p.case === "member") {
      const m = member(p.value);
      if (event.event === SystemEvent.Join)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "join", value: m } });
      else if (event.event === SystemEvent.Leave)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "leave", value: m } });
      else if (event.event === SystemEvent.Update)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "profileUpdate", value: m } });
    } else if (p.case === "json" || p.case === "binary") {
      response = create(WatchChannelResponseSchema, {
        id: event.id,
        update: { case: "message", value: { event: event.event, payload: p, origin: pub.origin } },
      });
    }
  } catch {
    // Not an Event: the publisher is broken, not the watcher; skip it.
  }
  decoded.set(pub, response);
  return response;
}

/** The bounds of {@link WatchStreams}. */
export interface WatchStreamLimits {
  /** Default: WATCH_MAX_STREAMS_PER_CONNECTION. */
  maxPerConnection?: number;
  /** Default: DEFAULT_WATCH_MAX_STREAMS_PER_KEY (REALTIME_WATCH_MAX_STREAMS_PER_KEY). */
  maxPerKey?: number;
}

/**
 * The WatchChannel streams open now, by connection and by API key, so that
 * neither one connection nor one key can hold more than its bound (each
 * stream holds a broker node and up to WATCH_MAX_QUEUED_BYTES).
 */
export class WatchStreams {
  private readonly byConnection = new Map<string, number>();
  private readonly byKey = new Map<string, number>();
  private readonly maxPerConnection: number;
  private readonly maxPerKey: number;

  constructor(limits: WatchStreamLimits = {}) {
    this.maxPerConnection = limits.maxPerConnection ?? WATCH_MAX_STREAMS_PER_CONNECTION;
    this.maxPerKey = limits.maxPerKey ?? DEFAULT_WATCH_MAX_STREAMS_PER_KEY;
  }

  /**
   * Counts one more stream on `connection` (CONNECTION of src/api/call-context.ts)
   * with `key` (an API key's fingerprint, "" without one), and returns what
   * ends it (safe to call twice). Throws RESOURCE_EXHAUSTED, counting
   * nothing, when either already has its bound.
   */
  open(connection: string, key: string): () => void {
    const onConnection = this.byConnection.get(connection) ?? 0;
    const withKey = this.byKey.get(key) ?? 0;
    if (onConnection >= this.maxPerConnection) {
      throw new RealtimeError(
        Code.ResourceExhausted,
        `this connection already has ${this.maxPerConnection} WatchChannel streams open (the most on one connection, WATCH_MAX_STREAMS_PER_CONNECTION): cancel one, or open another connection`,
      );
    }
    if (withKey >= this.maxPerKey) {
      const who = key === "" ? "callers without an API key" : `API key ${key}`;
      throw new RealtimeError(
        Code.ResourceExhausted,
        `${who} already has ${this.maxPerKey} WatchChannel streams open (REALTIME_WATCH_MAX_STREAMS_PER_KEY): cancel some, or raise the setting`,
      );
    }
    this.byConnection.set(connection, onConnection + 1);
    this.byKey.set(key, withKey + 1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      decrement(this.byConnection, connection);
      decrement(this.byKey, key);
    };
  }
}

function decrement(counts: Map<string, number>, k: string): void {
  const n = (counts.get(k) ?? 0) - 1;
  if (n > 0) counts.set(k, n);
  else counts.delete(k);
}
