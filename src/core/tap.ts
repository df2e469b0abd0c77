/**
 * The message tap: copies of the application messages published across
 * every channel, for realtime.v1.Realtime.WatchMessages (a debug console,
 * as Pusher's or Centrifugo's admin tap).
 *
 * Why copies: in the Redis mode each channel is a sharded pub/sub channel
 * (SPUBLISH), which has no pattern subscribe, so an API node cannot see the
 * publications of other nodes. Instead, while someone watches, each node
 * that publishes (an API node for Send, Broadcast, SendBatch and Publish;
 * an edge for its clients' sends and broadcasts) also publishes a copy of
 * each message to TAP_CHANNEL, an internal channel (its "#" is a character
 * client channel names cannot hold: no client can join, watch or publish
 * to it; it keeps no history, as the control plane's channels), which only
 * the API's watchers subscribe to. The embedded mode does the same through
 * its hub, so that both modes behave and are tested alike.
 *
 * Who wants copies: an API node with a watcher open (TapDemand) announces
 * it on the control plane (Control.tap, to every edge and every API node)
 * every TAP_ANNOUNCE_MS; each node that hears it copies for the next
 * TAP_WANTED_MS by its own clock (Tap.want). When the last watcher closes,
 * the announcements stop and the copies stop within TAP_WANTED_MS. A node
 * that starts, or that missed an announcement, copies from the next one.
 *
 * Cost: while nobody watches, a publishing node pays one clock read per
 * message (Tap.wanted), no allocation. While someone does, at most
 * TAP_COPIES_PER_SECOND copies a second per node, each one publish to the
 * broker of at most TAP_PREVIEW_BYTES of payload plus its facts; messages
 * past that rate are counted, not copied, and each node publishes the count
 * at most once per TAP_SKIPPED_REPORT_MS (a response with only skipped
 * set): the watcher always learns what it did not see.
 *
 * Contract: at most once (a copy whose publish fails is lost, as any
 * publication in flight); copies of one node reach a watcher in the order
 * that node published the messages; copies of different nodes in no
 * particular order. A copy says a message was handed to the broker (a
 * publish that then fails is still shown), not who received it.
 */
import { create, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  MessageSource,
  TappedMessageSchema,
  WatchMessagesResponseSchema,
  type TappedMessage,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Broker, Publication } from "./broker.js";
import { NOOP_OBSERVER, type Observer } from "./observer.js";
import { nowUnixUs } from "./presence.js";
import type { Payload } from "./publication.js";
import { TokenBucket } from "./token-bucket.js";

/** The internal channel the copies travel on; only the API's watchers subscribe to it. */
export const TAP_CHANNEL = "#tap";
/** Copies one node publishes a second, at most, while someone watches; the rest are counted as skipped. */
export const TAP_COPIES_PER_SECOND = 100;
/** Copies one node may publish at once, in a burst, before the rate holds it. */
export const TAP_BURST = 100;
/** Bytes of a payload a copy carries (its preview); a longer payload is cut and marked truncated. */
export const TAP_PREVIEW_BYTES = 1024;
/** How often an API node with a watcher tells the others that the tap is wanted. */
export const TAP_ANNOUNCE_MS = 2_000;
/**
 * How long a node copies after it heard an announcement: three announcement
 * periods, so that one or two lost announcements do not stop the copies,
 * and copies stop this long after the last watcher closed.
 */
export const TAP_WANTED_MS = 3 * TAP_ANNOUNCE_MS;
/** How often, at most, a node reports the messages it skipped (past TAP_COPIES_PER_SECOND). */
export const TAP_SKIPPED_REPORT_MS = 1_000;

/** What a copy is made of: the message as its node publishes it. */
export interface TapFacts {
  /** "" for a broadcast or a Send to a user. */
  readonly channel: string;
  /** The user of a Send to a user; "" otherwise. */
  readonly userId: string;
  readonly event: string;
  readonly id: string;
  readonly payload: Payload;
  /** The sending connection of a client's message; "" for a backend's. */
  readonly origin: string;
}

export interface TapOptions {
  /** Where copies (and skipped reports) are published. */
  readonly broker: Pick<Broker, "publish">;
  /** Told of every copy published and every message skipped (metrics). */
  readonly observer?: Observer;
  /** A copy that could not be published (the broker is away). */
  readonly onError?: (err: unknown) => void;
  /** Default: TAP_COPIES_PER_SECOND and TAP_BURST (tests). */
  readonly perSecond?: number;
  readonly burst?: number;
  /** The clock, ms (tests). */
  readonly now?: () => number;
}

/**
 * One node's side of the tap: copies what the node publishes while the
 * tap is wanted, at most perSecond a second, counting the rest.
 */
export class Tap {
  /** Until when (by this node's clock, ms) copies are wanted; 0: never was. */
  private until = 0;
  /** The rate of copies: one bucket, its state (TokenBucket). */
  private readonly bucket: TokenBucket;
  private bucketState = 0;
  /** Messages skipped since the last report. */
  private skipped = 0;
  private report: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;
  private readonly observer: Observer;

  constructor(private readonly options: TapOptions) {
    this.now = options.now ?? Date.now;
    this.observer = options.observer ?? NOOP_OBSERVER;
    this.bucket = new TokenBucket(options.perSecond ?? TAP_COPIES_PER_SECOND, options.burst ?? TAP_BURST, this.now);
  }

  /** Someone watches: copy for the next forMs (an announcement, Control.tap). Never shortens it. */
  want(forMs: number): void {
    this.until = Math.max(this.until, this.now() + forMs);
  }

  /**
   * Whether copies are wanted now. A publisher asks before it builds the
   * facts of a copy, so that a message costs one clock read while nobody
   * watches.
   */
  get wanted(): boolean {
    return this.until > this.now();
  }

  /** Copies one message, when wanted and within the rate; past it, counts it skipped. Never throws. */
  copy(facts: TapFacts): void {
    if (!this.wanted) return;
    const state = this.bucket.take(this.bucketState);
    if (state === undefined) {
      this.skipped++;
      this.observer.tapped("skipped", 1);
      if (this.report === undefined) {
        this.report = setTimeout(() => this.reportSkipped(), TAP_SKIPPED_REPORT_MS);
        // Owed to the watchers, not a reason to keep the process up (close() ends it).
        this.report.unref?.();
      }
      return;
    }
    this.bucketState = state;
    this.publish({ message: tappedMessage(facts) });
    this.observer.tapped("copied", 1);
  }

  /** Ends the pending skipped report (the node stops). */
  close(): void {
    clearTimeout(this.report);
    this.report = undefined;
  }

  private reportSkipped(): void {
    this.report = undefined;
    if (this.skipped === 0) return;
    const skipped = BigInt(this.skipped);
    this.skipped = 0;
    this.publish({ skipped });
  }

  private publish(response: MessageInitShape<typeof WatchMessagesResponseSchema>): void {
    const bytes = toBinary(WatchMessagesResponseSchema, create(WatchMessagesResponseSchema, response));
    this.options.broker.publish(tapPublication(bytes)).catch((err: unknown) => this.options.onError?.(err));
  }
}

/** The publication of TAP_CHANNEL that carries a WatchMessagesResponse, binary, as its event bytes (no JSON). */
function tapPublication(bytes: Uint8Array): Publication {
  return { channel: TAP_CHANNEL, event: bytes, eventJson: "", origin: "", skipOrigin: false };
}

/** The copy of one message: its facts, its size, and its payload cut to TAP_PREVIEW_BYTES. */
export function tappedMessage(facts: TapFacts): TappedMessage {
  const message = create(TappedMessageSchema, {
    channel: facts.channel,
    userId: facts.userId,
    event: facts.event,
    id: facts.id,
    origin: facts.origin,
    source: facts.origin === "" ? MessageSource.BACKEND : MessageSource.CLIENT,
    acceptedUnixUs: nowUnixUs(),
  });
  const p = facts.payload;
  if (p.case === "binary") {
    message.size = p.value.length;
    message.truncated = p.value.length > TAP_PREVIEW_BYTES;
    message.preview = { case: "binary", value: p.value.subarray(0, TAP_PREVIEW_BYTES) };
  } else if (p.case === "json") {
    const text = Buffer.from(toJsonString(ValueSchema, p.value));
    message.size = text.length;
    message.truncated = text.length > TAP_PREVIEW_BYTES;
    message.preview = { case: "json", value: utf8Prefix(text, TAP_PREVIEW_BYTES) };
  }
  return message;
}

/** The longest prefix of UTF-8 bytes of at most max bytes that ends on a character boundary, as a string. */
export function utf8Prefix(bytes: Buffer, max: number): string {
  if (bytes.length <= max) return bytes.toString("utf8");
  let end = max;
  // Back off the continuation bytes (10xxxxxx) of a character cut in two.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

/**
 * An API node's watchers of the tap: while at least one is open, the tap
 * is announced (announce(TAP_WANTED_MS)) at once and every
 * TAP_ANNOUNCE_MS; when the last closes, the announcements stop.
 */
export class TapDemand {
  private watchers = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  /** announce: tell every node, this one included, that copies are wanted for forMs (ControlPlane.announceTap). */
  constructor(private readonly announce: (forMs: number) => void) {}

  /** One more watcher; returns what ends it (safe to call twice). */
  open(): () => void {
    if (this.watchers++ === 0) {
      this.announce(TAP_WANTED_MS);
      this.timer = setInterval(() => this.announce(TAP_WANTED_MS), TAP_ANNOUNCE_MS);
      this.timer.unref();
    }
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      if (--this.watchers === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Stops announcing (the node stops). */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.watchers = 0;
  }
}
