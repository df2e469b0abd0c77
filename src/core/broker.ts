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

export interface Broker {
  /**
   * Hands pub to every edge subscribed to pub.channel, or to every edge for
   * a broadcast, and resolves with how many edges it was handed to.
   *
   * Guaranteed: at most once per edge; publications of one publisher to one
   * channel reach each edge in the order publish was called. Not guaranteed:
   * delivery to an edge whose link fails while the publication is in flight.
   * Rejects with RealtimeError(Unavailable) when no edge can be reached.
   */
  publish(pub: Publication): Promise<number>;

  /**
   * Delivers the channel's publications to this node's handler from now on.
   * Resolves once in effect: a publish that starts after it resolves is
   * delivered. Subscribing twice is the same as once. Broadcasts need no
   * subscription: every edge receives them.
   */
  subscribe(channel: string): Promise<void>;

  /** Stops delivering the channel's publications to this node. */
  unsubscribe(channel: string): Promise<void>;
}
