/**
 * The Broker seam: how an event travels from whoever publishes it (the API,
 * or an edge on behalf of a client) to every edge that must deliver it.
 *
 * Implementations: broker-memory.ts (in one process; the hub of the embedded
 * mode), src/link/broker-link.ts (an edge's view of the hub over TCP), and a
 * Redis implementation beside them. The core depends only on this file.
 */

/**
 * One event on its way to the edges, encoded once by its publisher in both
 * client encodings, so that neither the broker nor an edge encodes anything
 * per recipient. Mirrors realtime.link.v1.Publication.
 */
export interface Publication {
  /** The channel; "" for a broadcast to every connection. */
  readonly channel: string;
  /** The event, realtime.client.v1.Event in protobuf binary. */
  readonly event: Uint8Array;
  /** The same event in protobuf's JSON mapping. */
  readonly eventJson: string;
  /** The connection that caused the event; "" when a backend sent it. */
  readonly origin: string;
  /** True when the origin connection must not receive the event. */
  readonly skipOrigin: boolean;
}

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
