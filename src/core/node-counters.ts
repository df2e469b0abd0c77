/**
 * A node's running totals, as the control plane reports them (Info's
 * NodeInfo, WatchStats' rates): plain numbers kept in this process, fed by
 * the same Observer calls that feed the metrics, so that the API can read
 * them without scraping Prometheus text.
 *
 * Contract: the totals only grow while the process runs, and start from 0
 * when it starts (a reader that sees one go down knows the node restarted).
 * The maps are keyed by the Observer's closed sets (DropReason,
 * DisconnectReason), so they stay small whatever the traffic.
 */
import type { DisconnectReason, DropReason, Observer } from "./observer.js";

/** What a node has counted since it started. */
export interface NodeTotals {
  /** Client frames received (every kind, valid or not). */
  readonly messagesIn: bigint;
  /** Event frames written to clients, one per recipient. */
  readonly deliveries: bigint;
  /** Frames meant for clients that were not written, by reason. */
  readonly drops: Readonly<Record<string, bigint>>;
  /** Client connections that ended, by reason. */
  readonly disconnects: Readonly<Record<string, bigint>>;
}

/**
 * The counting side of a node. observing() wraps the Observer the node
 * already reports to, so that one call counts in both.
 */
export class NodeCounters {
  private messagesIn = 0;
  private deliveries = 0;
  private readonly drops = new Map<DropReason, number>();
  private readonly disconnects = new Map<DisconnectReason, number>();

  /** An Observer that counts here, then calls inner (every method delegated: inner may be a class). */
  observing(inner: Observer): Observer {
    return {
      connectionOpened: (encoding) => inner.connectionOpened(encoding),
      connectionRefused: (reason) => inner.connectionRefused(reason),
      commandFailed: (code) => inner.commandFailed(code),
      publicationReceived: () => inner.publicationReceived(),
      delivered: (broadcast, seconds) => inner.delivered(broadcast, seconds),
      published: (broadcast, edges) => inner.published(broadcast, edges),
      backendState: (backend, up) => inner.backendState(backend, up),
      hookCalled: (hook, outcome) => inner.hookCalled(hook, outcome),
      hookTimed: (hook, seconds) => inner.hookTimed(hook, seconds),
      tapped: (outcome, count) => inner.tapped(outcome, count),
      messageIn: (kind) => {
        this.messagesIn++;
        inner.messageIn(kind);
      },
      messageOut: (kind, count) => {
        if (kind === "event") this.deliveries += count;
        inner.messageOut(kind, count);
      },
      dropped: (reason, count) => {
        this.drops.set(reason, (this.drops.get(reason) ?? 0) + count);
        inner.dropped(reason, count);
      },
      connectionClosed: (reason) => {
        this.disconnects.set(reason, (this.disconnects.get(reason) ?? 0) + 1);
        inner.connectionClosed(reason);
      },
    };
  }

  /** The totals now (a copy). */
  totals(): NodeTotals {
    return {
      messagesIn: BigInt(this.messagesIn),
      deliveries: BigInt(this.deliveries),
      drops: bigints(this.drops),
      disconnects: bigints(this.disconnects),
    };
  }
}

function bigints(m: ReadonlyMap<string, number>): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const [k, v] of m) out[k] = BigInt(v);
  return out;
}
