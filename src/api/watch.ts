/**
 * WatchChannel: a channel's members, then its events, as a stream. The API
 * attaches one broker node per watcher (not an edge: it counts for no
 * delivery and receives no broadcasts), subscribes it to the channel, and
 * only then reads the members (or, resuming after a position, the history),
 * so no event between the two is lost.
 */
import { create } from "@bufbuild/protobuf";
import { WatchChannelResponseSchema, type WatchChannelResponse } from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication, PublicationHandler, StreamPosition } from "../core/broker.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { DEFAULT_WATCH_MAX_STREAMS_PER_KEY, MAX_HISTORY_LIMIT, MAX_RECOVERY_EVENTS } from "../core/limits.js";
import type { Presence } from "../core/presence.js";
import { eventResponse, memberMessage } from "./channel-events.js";
import type { HistoryReader } from "./history.js";

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
 * WatchChannel, WatchStats, WatchLifecycle and WatchMessages streams open at once on one connection (an HTTP/2
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

/** How a watch resumes (WatchChannelRequest.since). */
export interface WatchResume {
  /** The position of the last event a previous watch received. */
  readonly since: StreamPosition;
  /** Where the channel's history is read (the API's broker). */
  readonly history: HistoryReader;
}

/**
 * The responses of one WatchChannel call: the snapshot (members by id, in
 * parts of {@link WATCH_SNAPSHOT_CHUNK}), then each event in the order the
 * broker delivered it, each with its offset and epoch, until `signal`
 * aborts (then it throws the reason). When the node loses its subscription
 * (WatchNode.onLost) the stream ends with UNAVAILABLE after the events
 * delivered before the loss: a watcher is never left on a stream that
 * silently misses events; it opens it again (with since, to resume).
 *
 * With `resume`: the node subscribes, then the history after since is read
 * once. When it holds every event after since (the channel's epoch, none
 * trimmed, at most MAX_RECOVERY_EVENTS), those events come first, in
 * order, instead of a snapshot; otherwise the snapshot comes with resync =
 * true on its first message. Either way the live events follow, those
 * already sent dropped: each event after since exactly once, in offset
 * order. A history that cannot be read ends the stream (UNAVAILABLE), never
 * a stream with a silent hole.
 */
export async function* watchChannel(
  channel: string,
  source: WatchSource,
  presence: Presence,
  signal: AbortSignal,
  resume?: WatchResume,
): AsyncGenerator<WatchChannelResponse> {
  yield* followChannel(channel, source, signal, eventResponse, async function* () {
    /** The position of the last event sent: a live one at or before it is a repeat. */
    let last: StreamPosition = { offset: 0n, epoch: "" };
    let resync = false;
    if (resume) {
      const missed = await readMissed(resume.history, channel, resume.since);
      if (missed) {
        last = resume.since;
        for (const pub of missed) {
          if (pub.offset === undefined || pub.offset <= last.offset) continue;
          last = { offset: pub.offset, epoch: pub.epoch! };
          const response = eventResponse(pub);
          if (response) yield response;
        }
      } else resync = true;
    }
    if (!resume || resync) {
      const members = [...(await presence.members(channel))].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      for (let i = 0; i === 0 || i < members.length; i += WATCH_SNAPSHOT_CHUNK) {
        const part = members.slice(i, i + WATCH_SNAPSHOT_CHUNK).map(memberMessage);
        yield create(WatchChannelResponseSchema, {
          update: { case: "members", value: { members: part, complete: i + WATCH_SNAPSHOT_CHUNK >= members.length } },
          resync: resync && i === 0,
        });
      }
    }
    return last;
  });
}

/** A response that carries its event's position (offset 0n: none). */
export interface Positioned {
  readonly offset: bigint;
  readonly epoch: string;
}

/**
 * The stream of one channel's publications to a watcher: the node
 * subscribes; then `begin` runs (what comes before the live events: a
 * snapshot, or the events replayed from history) and returns the position
 * of the last event it sent; then each live publication that `respond`
 * turns into a response (undefined: not for this watcher), in the order
 * the broker delivered it, those at or before the last sent dropped (a
 * response without offset is never dropped as a repeat), until
 * `signal` aborts (then it throws the reason). A watcher that reads too
 * slowly (WATCH_MAX_QUEUED_EVENTS, WATCH_MAX_QUEUED_BYTES) is dropped with
 * RESOURCE_EXHAUSTED; a node that loses its subscription (WatchNode.onLost)
 * ends the stream with UNAVAILABLE after the events delivered before the
 * loss: a watcher is never left on a stream that silently misses events.
 */
export async function* followChannel<R extends object>(
  channel: string,
  source: WatchSource,
  signal: AbortSignal,
  respond: (pub: Publication) => R | null | undefined,
  begin: () => AsyncGenerator<R, StreamPosition>,
): AsyncGenerator<R> {
  const queue: { response: R; bytes: number }[] = [];
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
    const response = respond(pub);
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
    /** The position of the last event sent: a live one at or before it is a repeat. */
    let last = yield* begin();
    for (;;) {
      signal.throwIfAborted();
      if (overflow) {
        throw new RealtimeError(
          Code.ResourceExhausted,
          `the watcher fell ${overflow} behind the channel: read the stream as fast as events come, and watch again (with since, to resume)`,
        );
      }
      const next = queue.shift();
      if (next) {
        queuedBytes -= next.bytes;
        // A response without a position (the message tap's) is never a repeat.
        const { offset, epoch } = next.response as Partial<Positioned>;
        if (offset !== undefined && offset !== 0n) {
          // Sent already (replayed from history, or a broker's retry).
          if (epoch === last.epoch && offset <= last.offset) continue;
          last = { offset, epoch: epoch ?? "" };
        }
        yield next.response;
        continue;
      }
      if (lost) {
        throw new RealtimeError(
          Code.Unavailable,
          `the watch lost its subscription (${lost}), so events may be missed from here: open it again with since for the rest`,
        );
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal.removeEventListener("abort", notify);
    detach();
  }
}

/**
 * decode, made to run once per publication however many watchers of this
 * node are handed it (the broker hands them one object; a WeakMap keeps
 * each answer as long as the publication lives). A decode that throws
 * answers null (bytes that are not the channel's message: skipped). The
 * answer is shared by those watchers: do not change it.
 */
export function decodedOnce<R>(decode: (pub: Publication) => R): (pub: Publication) => R | null {
  const decoded = new WeakMap<Publication, R | null>();
  return (pub) => {
    let response = decoded.get(pub);
    if (response !== undefined) return response;
    try {
      response = decode(pub);
    } catch {
      response = null;
    }
    decoded.set(pub, response);
    return response;
  };
}

/**
 * The channel's publications after since, in order, when the history still
 * holds them all (since's epoch is the channel's, none trimmed, at most
 * MAX_RECOVERY_EVENTS); undefined when it does not. One read, so that the
 * answer is all or nothing: MAX_RECOVERY_EVENTS fit one read. Read after
 * the watch's node subscribed: whatever the read does not hold arrives live.
 */
async function readMissed(
  history: HistoryReader,
  channel: string,
  since: StreamPosition,
): Promise<Publication[] | undefined> {
  const limit = Math.min(MAX_HISTORY_LIMIT, MAX_RECOVERY_EVENTS);
  const res = await history.history(channel, { since, limit });
  if (!res.complete || res.position.epoch !== since.epoch) return undefined;
  if (res.position.offset - since.offset > BigInt(limit)) return undefined;
  return res.publications;
}

/** The bounds of {@link WatchStreams}. */
export interface WatchStreamLimits {
  /** Default: WATCH_MAX_STREAMS_PER_CONNECTION. */
  maxPerConnection?: number;
  /** Default: DEFAULT_WATCH_MAX_STREAMS_PER_KEY (REALTIME_WATCH_MAX_STREAMS_PER_KEY). */
  maxPerKey?: number;
}

/**
 * The WatchChannel, WatchStats, WatchLifecycle and WatchMessages streams open now, by connection and by
 * API key, so that neither one connection nor one key can hold more than
 * its bound (a WatchChannel stream holds a broker node and up to
 * WATCH_MAX_QUEUED_BYTES; a WatchStats stream asks every node each
 * interval). One budget for both: a key's bound is on its server streams.
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
        `this connection already has ${this.maxPerConnection} WatchChannel, WatchStats, WatchLifecycle or WatchMessages streams open (the most on one connection, WATCH_MAX_STREAMS_PER_CONNECTION): cancel one, or open another connection`,
      );
    }
    if (withKey >= this.maxPerKey) {
      const who = key === "" ? "callers without an API key" : `API key ${key}`;
      throw new RealtimeError(
        Code.ResourceExhausted,
        `${who} already has ${this.maxPerKey} WatchChannel, WatchStats, WatchLifecycle or WatchMessages streams open (REALTIME_WATCH_MAX_STREAMS_PER_KEY): cancel some, or raise the setting`,
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
