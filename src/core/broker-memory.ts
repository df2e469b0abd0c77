import {
  unpositioned,
  type Broker,
  type Delivery,
  type HistoryQuery,
  type HistoryResult,
  type Publication,
  type PublicationHandler,
} from "./broker.js";
import { isControlChannel } from "./control-channels.js";
import { LIFECYCLE_CHANNEL } from "./lifecycle.js";
import { ChannelStreams } from "./history.js";
import { NO_HISTORY, type HistoryFor } from "./history-rules.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { NOOP_OBSERVER, type Observer } from "./observer.js";

/**
 * MemoryBroker routes publications between nodes in one process: the hub of
 * the embedded mode. Each edge (or watcher) attaches as a node and gets its
 * own Broker view. Work per publication is per node, never per recipient.
 * It orders the channels: each publication to a channel that keeps history
 * is numbered and kept (core/history.ts) as it is routed.
 */
export class MemoryBroker {
  private readonly channels = new Map<string, Set<MemoryNode>>();
  private readonly nodes = new Set<MemoryNode>();
  private edgeCount = 0;
  /** Of the channels, those of the control plane (control-channels.ts): not counted as channels. */
  private controlCount = 0;

  /** @internal The channels' positions and history. */
  readonly streams: ChannelStreams;

  /** observer is told about every publication routed (metrics); historyFor says what each channel keeps. */
  constructor(
    private readonly observer: Observer = NOOP_OBSERVER,
    historyFor: HistoryFor = NO_HISTORY,
  ) {
    this.streams = new ChannelStreams(historyFor);
  }

  /** Stops the history's sweep. */
  close(): void {
    this.streams.close();
  }

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

  /** The number of channels some node is subscribed to (metrics), the control plane's not counted. */
  get channelCount(): number {
    return this.channels.size - this.controlCount;
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
    if (!set) {
      this.channels.set(channel, (set = new Set()));
      if (isControlChannel(channel)) this.controlCount++;
    }
    set.add(node);
    node.channels.add(channel);
  }

  /** @internal */
  unsubscribe(node: MemoryNode, channel: string): void {
    const set = this.channels.get(channel);
    if (!set) return;
    set.delete(node);
    if (set.size === 0) {
      this.channels.delete(channel);
      if (isControlChannel(channel)) this.controlCount--;
    }
  }

  /** Numbers pub (when its channel keeps history) and delivers it synchronously to each subscribed node. */
  publish(original: Publication): Delivery {
    // The lifecycle sequence has readers (its history, the API's watchers) without any edge.
    if (this.edgeCount === 0 && original.channel !== LIFECYCLE_CHANNEL) {
      throw new RealtimeError(Code.Unavailable, "no edge is connected: start an edge (switchboard edge) and try again");
    }
    let edges = 0;
    if (original.channel === "") {
      for (const node of this.nodes) {
        if (!node.edge) continue;
        node.handler(original);
        edges++;
      }
      this.observer.published(true, edges);
      return unpositioned(edges);
    }
    const pub = this.streams.assign(original);
    const set = this.channels.get(pub.channel);
    if (set) {
      for (const node of set) {
        node.handler(pub);
        if (node.edge) edges++;
      }
    }
    this.observer.published(false, edges);
    return { edges, offset: pub.offset ?? 0n, epoch: pub.epoch ?? "" };
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

  async publish(pub: Publication): Promise<Delivery> {
    return this.broker.publish(pub);
  }

  async subscribe(channel: string): Promise<void> {
    this.broker.subscribe(this, channel);
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    return this.broker.streams.read(channel, query);
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
