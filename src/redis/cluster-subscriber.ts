import { EventEmitter } from "node:events";
import calculateSlot from "cluster-key-slot";
import type { Cluster, Redis } from "ioredis";
import { closeRedis, openRedis, REDIS_CLUSTER_SLOTS_REFRESH_MS, runIdOf } from "./connection.js";

/**
 * What the broker and the gate use of a subscriber connection: one Redis
 * connection (ioredis), or a ClusterSubscriber standing for one per master.
 */
export interface SubscriberConnection {
  readonly status: string;
  on(event: "ready" | "close" | "end", listener: () => void): unknown;
  on(event: "messageBuffer" | "smessageBuffer", listener: (channel: Buffer, message: Buffer) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the listeners registered with on()
  off(event: string, listener: (...args: any[]) => void): unknown;
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
}

/** One master: where its subscriber connection goes, and what it says of itself. */
interface Shard {
  key: string;
  conn: Redis;
  ready: boolean;
  /** The master's run id (INFO server), read on each 'ready' before anything is subscribed. */
  runId: string | undefined;
}

/**
 * The subscriber side of the Redis Cluster mode: one plain connection per
 * master (openRedis's settings: no offline queue, no automatic
 * re-subscription), each SSUBSCRIBE sent to the master that owns the
 * channels' slot (the caller groups channels by slot; see slotOf), so a
 * channel's traffic is read from its own shard only.
 *
 * It looks like one connection to the broker and the gate: 'ready' once
 * every master's connection is ready (the broker then re-subscribes all it
 * wants, which lands each channel on its owner again), 'close' when any of
 * them drops (what was subscribed there is gone; watchers end, as on one
 * Redis). The slot map is read from the command connection (CLUSTER SLOTS)
 * at connect and every REDIS_CLUSTER_SLOTS_REFRESH_MS; when it changed (a
 * failover, a resharding), the connections follow it and the broker
 * re-subscribes through a 'close' then 'ready', so a moved slot's channels
 * reach their new owner within one refresh.
 */
export class ClusterSubscriber extends EventEmitter implements SubscriberConnection {
  status = "wait";
  /** The master of each slot, by node key ("host:port"). */
  private owners: string[] = [];
  private readonly shards = new Map<string, Shard>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private readonly onCommandReady = () => void this.refresh().catch(() => {});

  constructor(
    private readonly command: Cluster,
    /** The URL the cluster was seeded with: its credentials and scheme are every node's. */
    private readonly seedUrl: string,
    private readonly name: string,
  ) {
    super();
  }

  /**
   * Reads the slot map (once the command connection is ready: at once, or
   * when it is) and connects to every master; resolves at once (the
   * connections keep trying; 'ready' says when they are all up).
   */
  connect(): Promise<void> {
    if (this.status !== "wait") return Promise.resolve();
    this.status = "connecting";
    this.command.on("ready", this.onCommandReady);
    this.onCommandReady();
    this.refreshTimer = setInterval(this.onCommandReady, REDIS_CLUSTER_SLOTS_REFRESH_MS);
    this.refreshTimer.unref();
    return Promise.resolve();
  }

  /** The run id of the master that owns key's slot, as read when its connection became ready. */
  runIdFor(key: string): string | undefined {
    const shard = this.shards.get(this.owners[calculateSlot(key)] ?? "");
    return shard?.ready ? shard.runId : undefined;
  }

  subscribe(): Promise<unknown> {
    return Promise.reject(new Error("Redis Cluster mode subscribes with SSUBSCRIBE only"));
  }

  unsubscribe(): Promise<unknown> {
    return this.subscribe();
  }

  /** Subscribes channels that all lie in one slot, on that slot's master. */
  ssubscribe(...channels: string[]): Promise<unknown> {
    return this.shardOf(channels).conn.ssubscribe(...channels);
  }

  sunsubscribe(...channels: string[]): Promise<unknown> {
    return this.shardOf(channels).conn.sunsubscribe(...channels);
  }

  async quit(): Promise<void> {
    this.closed = true;
    clearInterval(this.refreshTimer);
    this.command.off("ready", this.onCommandReady);
    await Promise.all([...this.shards.values()].map((s) => closeRedis(s.conn)));
    this.shards.clear();
    this.setStatus("end");
  }

  disconnect(): void {
    void this.quit();
  }

  private shardOf(channels: string[]): Shard {
    const slot = calculateSlot(channels[0]!);
    for (const c of channels)
      if (calculateSlot(c) !== slot) throw new Error("channels of one SSUBSCRIBE must lie in one slot");
    const shard = this.shards.get(this.owners[slot] ?? "");
    if (!shard?.ready) throw new Error(`the master of slot ${slot} is not connected`);
    return shard;
  }

  /** Re-reads the slot map; connects to new masters, drops old ones. */
  private async refresh(): Promise<void> {
    if (this.closed || this.command.status !== "ready") return;
    const ranges = await this.command.cluster("SLOTS");
    const owners: string[] = new Array<string>(16_384).fill("");
    for (const [from, to, master] of ranges) {
      if (!master) continue;
      const key = `${master[0]}:${master[1]}`;
      for (let slot = from; slot <= to; slot++) owners[slot] = key;
    }
    const changed = owners.some((key, slot) => this.owners[slot] !== key);
    if (!changed || this.closed) return;
    const wasReady = this.status === "ready";
    this.owners = owners;
    const masters = new Set(owners.filter((k) => k !== ""));
    for (const [key, shard] of this.shards)
      if (!masters.has(key)) {
        this.shards.delete(key);
        void closeRedis(shard.conn);
      }
    for (const key of masters) if (!this.shards.has(key)) this.open(key);
    // Every channel must be subscribed again where its slot is now.
    if (wasReady) this.setStatus("connecting");
    this.check();
  }

  private open(key: string): void {
    const url = new URL(this.seedUrl);
    const at = key.lastIndexOf(":");
    url.hostname = key.slice(0, at);
    url.port = key.slice(at + 1);
    const conn = openRedis(url.toString(), this.name);
    const shard: Shard = { key, conn, ready: false, runId: undefined };
    this.shards.set(key, shard);
    conn.on("ready", () => {
      // A fresh connection subscribes nothing yet, so it can still send INFO.
      runIdOf(conn).then(
        (runId) => {
          if (this.shards.get(key) !== shard) return;
          shard.runId = runId;
          shard.ready = true;
          this.check();
        },
        () => conn.disconnect(true),
      );
    });
    conn.on("close", () => {
      shard.ready = false;
      shard.runId = undefined;
      this.check();
    });
    for (const event of ["messageBuffer", "smessageBuffer"] as const)
      conn.on(event, (channel: Buffer, message: Buffer) => this.emit(event, channel, message));
    conn.connect().catch(() => {});
  }

  /** 'ready' when every master's connection is, 'close' when one of them went. */
  private check(): void {
    if (this.closed) return;
    const all = this.shards.size > 0 && [...this.shards.values()].every((s) => s.ready);
    if (all && this.status !== "ready") this.setStatus("ready");
    else if (!all && this.status === "ready") this.setStatus("connecting");
  }

  private setStatus(status: string): void {
    const was = this.status;
    this.status = status;
    if (status === "ready") this.emit("ready");
    else if (was === "ready") this.emit("close");
    if (status === "end") this.emit("end");
  }
}
