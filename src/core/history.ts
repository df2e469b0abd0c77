import { randomBytes } from "node:crypto";
import type { HistoryQuery, HistoryResult, Publication, StreamPosition } from "./broker.js";
import type { HistoryFor, HistoryLimits } from "./history-rules.js";
import { DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT } from "./limits.js";
import { Code, RealtimeError } from "../protocol/errors.js";

/**
 * The positions and history of the channels of the hub (embedded mode),
 * where their order is decided: MemoryBroker numbers each publication here
 * as it routes it, so numbering and delivery are one step.
 *
 * Each channel that keeps history (HistoryFor) has a stream: an epoch,
 * random and made when the stream is (so it changes when the hub restarts,
 * which loses every history), the offset of its last publication, and its
 * last publications (a ring of at most `size`, each dropped once older than
 * `ageMs`). The offsets held are contiguous, ending at the stream's offset.
 *
 * A stream lives while it is used: a quiet channel's stream (nothing
 * published or read) is forgotten POSITION_IDLE_MS after its last use, or
 * twice its age limit if that is longer; a client that comes back later
 * with a position of the old epoch is told it could not recover (the
 * channel starts a new epoch), never given a wrong answer. Memory: a
 * stream's few hundred bytes plus its entries, which are the publications
 * the hub routes anyway (no copy).
 */

/** How long the hub remembers the position of a channel on which nothing happens (at least twice its history's age). */
export const POSITION_IDLE_MS = 60 * 60_000;
/** How often the hub drops aged entries and forgotten streams. */
export const HISTORY_SWEEP_MS = 10_000;
/** Characters of a new epoch (base64url of 6 random bytes). */
const EPOCH_BYTES = 6;

interface Stream {
  readonly epoch: string;
  readonly limits: HistoryLimits;
  /** The offset of the last publication (0n before the first). */
  offset: bigint;
  /**
   * The kept publications, oldest first, in a ring of limits.size slots,
   * and their times. Both grow as entries come (each write is at the slot
   * after the last one written, so they stay dense) up to limits.size: a
   * channel with a few events does not pay for the slots of its limit.
   */
  readonly ring: (Publication | undefined)[];
  readonly stamps: number[];
  /** Index of the oldest kept entry, and how many are kept. */
  head: number;
  count: number;
  /** Date.now() of the last publish or read. */
  used: number;
}

export class ChannelStreams {
  private readonly streams = new Map<string, Stream>();
  /** The sweep: armed while some stream is held, so that a hub with none runs no timer. */
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly historyFor: HistoryFor,
    private readonly now: () => number = Date.now,
  ) {}

  /** The number of streams held (metrics, tests). */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Gives pub the next offset of its channel and the channel's epoch, and
   * keeps it in the channel's history: returns the positioned publication
   * (a new object; pub is not changed), or pub itself when its channel
   * keeps no history (and for a broadcast).
   */
  assign(pub: Publication): Publication {
    const stream = this.stream(pub.channel);
    if (!stream) return pub;
    const now = this.now();
    const offset = stream.offset + 1n;
    stream.offset = offset;
    stream.used = now;
    const positioned: Publication = { ...pub, offset, epoch: stream.epoch };
    const { size } = stream.limits;
    if (stream.count === size) {
      stream.ring[stream.head] = positioned;
      stream.stamps[stream.head] = now;
      stream.head = (stream.head + 1) % size;
    } else {
      const at = (stream.head + stream.count) % size;
      stream.ring[at] = positioned;
      stream.stamps[at] = now;
      stream.count++;
    }
    return positioned;
  }

  /** Reads the channel's history: the contract of Broker.history (core/broker.ts). */
  read(channel: string, query: HistoryQuery): HistoryResult {
    const stream = this.stream(channel);
    if (!stream) return { publications: [], position: { offset: 0n, epoch: "" }, complete: !query.since };
    const now = this.now();
    stream.used = now;
    this.trim(stream, now);
    const position: StreamPosition = { offset: stream.offset, epoch: stream.epoch };
    const first = stream.offset - BigInt(stream.count) + 1n; // offset of the oldest kept
    let from = first; // the first offset to return
    const since = query.since;
    if (since) {
      if (since.epoch !== stream.epoch || since.offset > stream.offset) {
        return { publications: [], position, complete: false };
      }
      // Some of those after since are gone: none are answered (as Redis does).
      if (since.offset + 1n < first) return { publications: [], position, complete: false };
      if (since.offset + 1n > from) from = since.offset + 1n;
    }
    const available = Number(stream.offset - from + 1n);
    const n = Math.max(0, Math.min(query.limit, available));
    const publications: Publication[] = new Array<Publication>(n);
    const size = stream.limits.size;
    // Index of `from` in the ring, then of the newest.
    const start = (stream.head + Number(from - first)) % size;
    const newest = (stream.head + stream.count - 1) % size;
    for (let i = 0; i < n; i++) {
      const at = query.newestFirst ? (newest - i + size) % size : (start + i) % size;
      publications[i] = stream.ring[at]!;
    }
    return { publications, position, complete: true };
  }

  /** Drops aged entries and the streams no longer used. */
  sweep(): void {
    const now = this.now();
    for (const [channel, stream] of this.streams) {
      this.trim(stream, now);
      const idle = Math.max(POSITION_IDLE_MS, 2 * stream.limits.ageMs);
      if (stream.count === 0 && now - stream.used > idle) this.streams.delete(channel);
    }
    if (this.streams.size === 0) this.disarm();
  }

  /** Stops the sweep. */
  close(): void {
    this.closed = true;
    this.disarm();
  }

  private disarm(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The channel's stream, made on first use; undefined when it keeps no history. */
  private stream(channel: string): Stream | undefined {
    const existing = this.streams.get(channel);
    if (existing) return existing;
    const limits = this.historyFor(channel);
    if (!limits || limits.size <= 0) return undefined;
    const stream: Stream = {
      epoch: randomBytes(EPOCH_BYTES).toString("base64url"),
      limits,
      offset: 0n,
      ring: [],
      stamps: [],
      head: 0,
      count: 0,
      used: this.now(),
    };
    this.streams.set(channel, stream);
    if (!this.timer && !this.closed) {
      this.timer = setInterval(() => this.sweep(), HISTORY_SWEEP_MS);
      this.timer.unref?.();
    }
    return stream;
  }

  /** Drops the entries older than the stream's age limit, oldest first. */
  private trim(stream: Stream, now: number): void {
    const { ageMs, size } = stream.limits;
    if (ageMs <= 0) return;
    const cutoff = now - ageMs;
    while (stream.count > 0 && stream.stamps[stream.head]! <= cutoff) {
      stream.ring[stream.head] = undefined;
      stream.head = (stream.head + 1) % size;
      stream.count--;
    }
  }
}

/**
 * The first publications of result whose encodings fit maxBytes (at least
 * one): a history reply of bounded size. Fewer than asked is no loss: the
 * reader asks again after the last one (complete is unchanged: it says
 * whether the events after since are all still kept).
 */
export function fitHistory(result: HistoryResult, maxBytes: number): HistoryResult {
  let total = 0;
  const pubs = result.publications;
  for (let i = 0; i < pubs.length; i++) {
    total += pubs[i]!.event.length + pubs[i]!.eventJson.length;
    if (total > maxBytes && i > 0) return { ...result, publications: pubs.slice(0, i) };
  }
  return result;
}

/**
 * The limit of a history read as a caller asked it (the client's getHistory,
 * the API's GetHistory): 0 means DEFAULT_HISTORY_LIMIT; more than
 * MAX_HISTORY_LIMIT is INVALID_ARGUMENT, naming the bound.
 */
export function historyLimit(limit: number): number {
  if (limit > MAX_HISTORY_LIMIT)
    throw new RealtimeError(
      Code.InvalidArgument,
      `limit is ${limit}: at most ${MAX_HISTORY_LIMIT} events per read (0 means ${DEFAULT_HISTORY_LIMIT}); read on after the last one`,
    );
  return limit === 0 ? DEFAULT_HISTORY_LIMIT : limit;
}
