import type { Broker, HistoryQuery, HistoryResult, Publication, PublicationHandler } from "./broker.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { NOOP_OBSERVER, type Observer } from "./observer.js";

/**
 * MemoryBroker routes publications between nodes in one process: the hub of
 * the embedded mode. Each edge (or watcher) attaches as a node and gets its
 * own Broker view. Work per publication is per node, never per recipient.
 */
export class MemoryBroker {
  private readonly channels = new Map<string, Set<MemoryNode>>();
  private readonly nodes = new Set<MemoryNode>();
  private edgeCount = 0;

  /** observer is told about every publication routed (metrics). */
  constructor(private readonly observer: Observer = NOOP_OBSERVER) {}

  /**
   * Attaches a node whose handler receives its publications. edge=true
   * counts it as an edge: a broadcast reaches it, and publish fails with
   * UNAVAILABLE when no edge is attached.
   */
  attach(handler: PublicationHandler, edge: boolean): MemoryNode {
    const node = new MemoryNode(this, handler, edge);
    this.nodes.add(node);
    if (edge) this.edgeCount++;
    return node;
  }

  /** The number of edges attached. */
  get edges(): number {
    return this.edgeCount;
  }

  /** The number of channels some node is subscribed to (metrics). */
  get channelCount(): number {
    return this.channels.size;
  }

  /** @internal */
  detach(node: MemoryNode): void {
    if (!this.nodes.delete(node)) return;
    if (node.edge) this.edgeCount--;
    for (const channel of node.channels) this.unsubscribe(node, channel);
  }

  /** @internal */
  subscribe(node: MemoryNode, channel: string): void {
    let set = this.channels.get(channel);
    if (!set) this.channels.set(channel, (set = new Set()));
    set.add(node);
    node.channels.add(channel);
  }

  /** @internal */
  unsubscribe(node: MemoryNode, channel: string): void {
    const set = this.channels.get(channel);
    if (!set) return;
    set.delete(node);
    if (set.size === 0) this.channels.delete(channel);
  }

  /** Delivers synchronously to each subscribed node; returns the edges reached. */
  publish(pub: Publication): number {
    if (this.edgeCount === 0) {
      throw new RealtimeError(Code.Unavailable, "no edge is connected: start an edge (switchboard edge) and try again");
    }
    let edges = 0;
    if (pub.channel === "") {
      for (const node of this.nodes) {
        if (!node.edge) continue;
        node.handler(pub);
        edges++;
      }
      this.observer.published(true, edges);
      return edges;
    }
    const set = this.channels.get(pub.channel);
    if (!set) {
      this.observer.published(false, 0);
      return 0;
    }
    for (const node of set) {
      node.handler(pub);
      if (node.edge) edges++;
    }
    this.observer.published(false, edges);
    return edges;
  }
}

/** One node's view of a MemoryBroker. */
export class MemoryNode implements Broker {
  /** @internal */ readonly channels = new Set<string>();
  constructor(
    private readonly broker: MemoryBroker,
    /** @internal */ readonly handler: PublicationHandler,
    /** @internal */ readonly edge: boolean,
  ) {}

  async publish(pub: Publication): Promise<number> {
    return this.broker.publish(pub);
  }

  async subscribe(channel: string): Promise<void> {
    this.broker.subscribe(this, channel);
  }

  /** Not implemented yet (the seam's first commit; the hub's history follows). */
  async history(_channel: string, _query: HistoryQuery): Promise<HistoryResult> {
    throw new RealtimeError(Code.Unimplemented, "history is not implemented yet");
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    this.broker.unsubscribe(this, channel);
  }

  /** Detaches the node: it receives nothing more. */
  close(): void {
    this.broker.detach(this);
  }
}
