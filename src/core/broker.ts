/**
 * The Broker seam: how an event travels from whoever publishes it (the API,
 * or an edge on behalf of a client) to every edge that must deliver it.
 *
 * Implementations: broker-memory.ts (in one process; the hub of the embedded
 * mode), src/link/broker-link.ts (an edge's view of the hub over TCP), and a
 * Redis implementation beside them. The core depends only on this file.
 */

import type { Publication } from "../wire/publication.js";

export type { Publication };

/** Receives the publications for the channels a node subscribed to. */
export type PublicationHandler = (pub: Publication) => void;

/**
 * A place in a channel's sequence of publications: the offset of the last
 * one seen (0n: before the first) within an epoch. Offsets are comparable
 * only within one epoch.
 */
export interface StreamPosition {
  readonly offset: bigint;
  readonly epoch: string;
}

/** What history() reads. */
export interface HistoryQuery {
  /** Only the publications after this position; absent: from the oldest kept (newest, with newestFirst). */
  readonly since?: StreamPosition;
  /** The most publications to return (at least 1). */
  readonly limit: number;
  /** Newest first; default oldest first. */
  readonly newestFirst?: boolean;
}

/** What history() returns. */
export interface HistoryResult {
  /** The publications, each with its offset and epoch, in the order asked. */
  readonly publications: Publication[];
  /**
   * The channel's position when read: the offset of its last publication
   * (0n when it has had none) and its epoch ("" when the channel keeps no
   * positions).
   */
  readonly position: StreamPosition;
  /**
   * With since: true iff since.epoch is the channel's epoch and every
   * publication after since.offset is still kept, so that publications are
   * exactly the first of those missed (up to limit; ask again after the
   * last one for more); when false, publications is empty (in every
   * broker: the caller starts over without since). Without since: true.
   */
  readonly complete: boolean;
}

/** What publish() did: the edges reached, and the position the publication was given. */
export interface Delivery {
  /** How many edges the publication was handed to. */
  readonly edges: number;
  /** Its offset in its channel; 0n when it has no position (a broadcast, a channel without history). */
  readonly offset: bigint;
  /** Its channel's epoch; "" when it has no position. */
  readonly epoch: string;
}

/** The Delivery of a publication without position. */
export function unpositioned(edges: number): Delivery {
  return { edges, offset: 0n, epoch: "" };
}

/** pub with the position delivery gave it (pub itself when none). */
export function withPosition(pub: Publication, delivery: Delivery): Publication {
  return delivery.offset === 0n ? pub : { ...pub, offset: delivery.offset, epoch: delivery.epoch };
}

export interface Broker {
  /**
   * Hands pub to every edge subscribed to pub.channel, or to every edge for
   * a broadcast, and resolves with how many edges it was handed to and the
   * position it was given (Delivery).
   *
   * Positions: the broker that orders the channel (the hub's MemoryBroker;
   * Redis, in its publish script) gives a publication to a channel that
   * keeps positions the next offset of the channel and its epoch, and keeps
   * it in the channel's history (bounded by count and age), atomically with
   * handing it on: every edge receives it with offset and epoch set, and
   * publications of one channel reach each edge in offset order. A
   * broadcast has no position. The caller's pub is not changed.
   *
   * Guaranteed: at most once per edge; publications of one publisher to one
   * channel reach each edge in the order publish was called. Not guaranteed:
   * delivery to an edge whose link fails while the publication is in flight.
   * Rejects with RealtimeError(Unavailable) when no edge can be reached.
   */
  publish(pub: Publication): Promise<Delivery>;

  /**
   * Delivers the channel's publications to this node's handler from now on.
   * Resolves once in effect: a publish that starts after it resolves is
   * delivered. Subscribing twice is the same as once. Broadcasts need no
   * subscription: every edge receives them.
   */
  subscribe(channel: string): Promise<void>;

  /** Stops delivering the channel's publications to this node. */
  unsubscribe(channel: string): Promise<void>;

  /**
   * Reads the channel's history (HistoryQuery, HistoryResult). Rejects with
   * RealtimeError(Unavailable) when the broker that keeps it cannot be
   * reached. A channel that keeps no history answers no publications, its
   * position (epoch "" when it keeps no positions either) and complete =
   * false for a since.
   */
  history(channel: string, query: HistoryQuery): Promise<HistoryResult>;
}
