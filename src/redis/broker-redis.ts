import calculateSlot from "cluster-key-slot";
import { PublicationSchema } from "../../gen/realtime/link/v1/link_pb.js";
import type { Broker, Delivery, HistoryQuery, HistoryResult, Publication, PublicationHandler } from "../core/broker.js";
import type { HistoryFor } from "../core/history-rules.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import type { Observer } from "../core/observer.js";
import { decodePublication, encodePublication, positionIndex } from "../wire/publication.js";
import type { SubscriberConnection } from "./cluster-subscriber.js";
import { redisUnavailable, type RedisCommands } from "./connection.js";
import { RedisHistory, type HistoryLimits, type PositionFields } from "./history-redis.js";

/** Channels per SUBSCRIBE/SSUBSCRIBE command when re-subscribing after a reconnect. */
export const REDIS_RESUBSCRIBE_BATCH = 500;

export interface RedisBrokerOptions {
  /** The connection for PUBLISH/SPUBLISH (shared with presence). */
  command: RedisCommands;
  /** A connection of its own, in subscriber mode (on Redis Cluster, one per master: ClusterSubscriber). */
  subscriber: SubscriberConnection;
  /**
   * Redis Cluster (REALTIME_REDIS_MODE=cluster): sharded pub/sub always
   * (the mode's start check makes sure the cluster has it), each
   * SSUBSCRIBE of one slot's channels, each channel's history on its own
   * shard.
   */
  cluster?: boolean;
  /** Prefix of every Redis key and channel name (REALTIME_REDIS_PREFIX). */
  prefix: string;
  /**
   * An edge subscribes to the broadcast channel and counts as an edge; a
   * non-edge node (the API, to watch channels) receives only what it
   * subscribes to.
   */
  edge: boolean;
  /**
   * The history of each channel (pos's settings): its size and age, or
   * undefined (or size 0) when the channel keeps none. A channel with history
   * is published by one script that numbers it (see history-redis.ts); one
   * without, by a plain PUBLISH, and its events carry no position.
   */
  history?: HistoryFor;
  /** Receives every publication this node subscribed to with subscribe(). */
  onPublication?: PublicationHandler;
  /** Told of each publication routed (as the embedded hub tells it). */
  observer?: Observer;
  /** A publication that could not be decoded, or a failed re-subscription. */
  onError?: (err: unknown, context: string) => void;
  /**
   * Every channel wanted is subscribed on the subscriber's current
   * connection: called once per (re)connect, when its re-subscription is done
   * (the registration gate, gate.ts).
   */
  onSubscribed?: () => void;
}

/**
 * RedisBroker is the Broker seam over Redis pub/sub, for running several
 * API nodes and edges as one service. Each realtime channel is one Redis
 * channel (`<prefix>c:<channel>`), subscribed only by the nodes that have
 * members in it; broadcasts use one more (`<prefix>broadcast`) that every
 * edge subscribes to. A publication travels as realtime.link.v1.Publication
 * in protobuf binary, encoded once per publish, whatever the number of
 * edges: binary-safe, and the same bytes the embedded link carries.
 *
 * Sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+) is used when the server
 * has it, so that on Redis Cluster a channel's traffic stays on the shard
 * that owns it; otherwise PUBLISH/SUBSCRIBE. The choice is made once, at
 * start(), and every node of a deployment makes the same one.
 *
 * A channel with history is published by one Lua script instead
 * (history-redis.ts), which gives the publication its position (offset and
 * epoch, decided in Redis, so the same on every node), stores it in the
 * channel's bounded history and publishes the same bytes; history() reads
 * that history. A channel without history keeps the plain publish: no
 * position, nothing stored.
 *
 * Guarantees: at most once per node (a publication in flight when a
 * connection drops is not re-sent); publications of one publisher to one
 * channel reach each node in the order publish was called (one connection,
 * and Redis keeps a connection's order). While Redis is unreachable publish
 * and subscribe reject at once with UNAVAILABLE; when it is back the node
 * re-subscribes every channel it wants, by itself.
 */
export class RedisBroker implements Broker {
  /** The channels this node wants, whatever the connection's state. */
  private readonly wanted = new Set<string>();
  private sharded = false;
  /** Set once start() chose the pub/sub flavour; re-subscribing waits for it. */
  private started = false;
  private closed = false;
  private readonly broadcastKey: string;
  private readonly channelPrefix: string;
  private readonly onReady = () => this.resubscribe();
  /** The handlers attached with attach(), per channel. */
  private readonly local = new Map<string, { handlers: Set<PublicationHandler>; subscribed: Promise<void> }>();
  private readonly positions: RedisHistory;

  constructor(private readonly options: RedisBrokerOptions) {
    this.broadcastKey = `${options.prefix}broadcast`;
    this.channelPrefix = `${options.prefix}c:`;
    this.positions = new RedisHistory(options.command, options.prefix, positionFields(), options.cluster === true);
    const deliver = (_channel: Buffer, message: Buffer) => {
      let pub: Publication;
      try {
        pub = decodePublication(message);
      } catch (err) {
        options.onError?.(err, "decoding a publication from Redis");
        return;
      }
      options.onPublication?.(pub);
      const local = this.local.get(pub.channel);
      if (local) for (const handler of local.handlers) handler(pub);
    };
    options.subscriber.on("messageBuffer", deliver);
    options.subscriber.on("smessageBuffer", deliver);
    options.subscriber.on("ready", this.onReady);
  }

  /**
   * Chooses sharded or classic pub/sub by asking the server, then
   * subscribes what is wanted. Waits for the command connection as long as
   * it takes (Redis may be down when the process starts).
   */
  async start(): Promise<void> {
    const { command } = this.options;
    while (!this.closed) {
      if (command.status !== "ready") {
        await new Promise<void>((resolve) => {
          const done = () => {
            command.off("ready", done);
            command.off("end", done);
            resolve();
          };
          command.on("ready", done);
          command.on("end", done);
        });
        continue;
      }
      if (this.options.cluster) {
        this.sharded = true;
        break;
      }
      try {
        // Redis before 7 answers [nil] for a command it does not know.
        const info = (await command.call("COMMAND", "INFO", "spublish")) as unknown[];
        this.sharded = Array.isArray(info) && info[0] != null;
        break;
      } catch {
        // The connection dropped while asking: ask again once it is back.
      }
    }
    if (this.closed) return;
    if (this.options.edge) this.wanted.add("");
    this.started = true;
    if (this.options.subscriber.status === "ready") await this.resubscribe();
  }

  /** Stops receiving; the connections are closed by their owner. */
  close(): void {
    this.closed = true;
    this.options.subscriber.off("ready", this.onReady);
    this.wanted.clear();
  }

  async publish(pub: Publication): Promise<Delivery> {
    // Until start() chose the flavour, a publish could use the other one
    // than the subscribers and reach no one.
    if (!this.started) throw new RealtimeError(Code.Unavailable, "not connected to Redis yet; try again shortly");
    const key = this.key(pub.channel);
    const bytes = encodePublication(pub);
    const limits = this.limits(pub.channel);
    let receivers: number;
    let offset = 0n;
    let epoch = "";
    try {
      if (limits) {
        ({ receivers, offset, epoch } = await this.positions.publish(
          key,
          bytes,
          positionIndex(pub, bytes),
          limits,
          this.sharded,
        ));
      } else {
        receivers = Number(
          this.sharded
            ? await this.options.command.spublish(key, bytes)
            : await this.options.command.publish(key, bytes),
        );
      }
    } catch (err) {
      throw redisUnavailable(err, pub.channel === "" ? "Broadcast" : "Send");
    }
    if (pub.channel === "" && receivers === 0) {
      // Mirrors the embedded hub: a broadcast with no edge at all fails
      // rather than succeeding with no one to receive it.
      throw new RealtimeError(
        Code.Unavailable,
        "no edge is connected to Redis: start an edge (switchboard edge) and try again",
      );
    }
    this.options.observer?.published(pub.channel === "", receivers);
    return { edges: receivers, offset, epoch };
  }

  /**
   * The channel's position and part of its history, from Redis, in one
   * script (bounded by query.limit). A channel without history has no
   * position either in Redis: no publications, position {0n, ""}, complete
   * only without since.
   */
  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    const limits = this.limits(channel);
    if (!limits) return { publications: [], position: { offset: 0n, epoch: "" }, complete: !query.since };
    let read;
    try {
      read = await this.positions.read(this.key(channel), limits, query);
    } catch (err) {
      throw redisUnavailable(err, `reading the history of channel ${JSON.stringify(channel)}`);
    }
    const publications: Publication[] = [];
    for (const entry of read.entries) {
      try {
        publications.push(decodePublication(entry));
      } catch (err) {
        // Not ours (another version's bytes): the history cannot be trusted whole.
        this.options.onError?.(err, "decoding a publication from the history in Redis");
        throw redisUnavailable(err, `reading the history of channel ${JSON.stringify(channel)}`);
      }
    }
    if (!query.newestFirst) publications.reverse();
    return {
      publications,
      position: { offset: read.top, epoch: read.epoch },
      complete: query.since ? read.complete : true,
    };
  }

  async subscribe(channel: string): Promise<void> {
    this.wanted.add(channel);
    if (!this.started)
      throw new RealtimeError(Code.Unavailable, "the Redis broker is not started yet; try again shortly");
    try {
      await this.sub([this.key(channel)]);
    } catch (err) {
      throw redisUnavailable(err, `subscribing to channel ${JSON.stringify(channel)}`);
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    if (!this.wanted.delete(channel)) return;
    const { subscriber } = this.options;
    if (subscriber.status !== "ready") return; // not subscribed anywhere now; not re-subscribed later
    const key = this.key(channel);
    try {
      await (this.sharded ? subscriber.sunsubscribe(key) : subscriber.unsubscribe(key));
    } catch {
      // The connection dropped: nothing is subscribed any more.
    }
  }

  /**
   * Attaches a local receiver (an API node's WatchChannel): its handler gets
   * the publications of the channels it subscribes to, and no broadcasts.
   * Any number of receivers share one Redis subscription per channel, and
   * each publication object is handed to all of them. Its subscribe
   * resolves once in effect, like Broker.subscribe.
   */
  attach(handler: PublicationHandler): { subscribe(channel: string): Promise<void>; close(): void } {
    const mine = new Set<string>();
    let detached = false;
    const drop = (channel: string) => {
      mine.delete(channel);
      const entry = this.local.get(channel);
      if (!entry || !entry.handlers.delete(handler) || entry.handlers.size > 0) return;
      this.local.delete(channel);
      void this.unsubscribe(channel);
    };
    return {
      subscribe: async (channel) => {
        if (detached || mine.has(channel)) return;
        let entry = this.local.get(channel);
        if (!entry) {
          entry = { handlers: new Set(), subscribed: this.subscribe(channel) };
          this.local.set(channel, entry);
        }
        entry.handlers.add(handler);
        mine.add(channel);
        try {
          await entry.subscribed;
        } catch (err) {
          drop(channel);
          throw err;
        }
      },
      close: () => {
        detached = true;
        for (const channel of [...mine]) drop(channel);
      },
    };
  }

  /** The channel's history limits, or undefined when it keeps none (and broadcasts). */
  private limits(channel: string): HistoryLimits | undefined {
    if (channel === "") return undefined;
    const limits = this.options.history?.(channel);
    return limits && limits.size > 0 ? limits : undefined;
  }

  private key(channel: string): string {
    return channel === "" ? this.broadcastKey : this.channelPrefix + channel;
  }

  private async sub(keys: string[]): Promise<void> {
    const { subscriber } = this.options;
    await (this.sharded ? subscriber.ssubscribe(...keys) : subscriber.subscribe(...keys));
  }

  /** After every (re)connect of the subscriber: subscribe everything wanted. */
  private async resubscribe(): Promise<void> {
    if (!this.started) return;
    for (const batch of this.batches([...this.wanted].map((c) => this.key(c)))) {
      try {
        await this.sub(batch);
      } catch (err) {
        // The connection dropped again; its next 'ready' retries.
        this.options.onError?.(err, "re-subscribing after a reconnect");
        return;
      }
    }
    this.options.onSubscribed?.();
  }

  /** keys in batches of REDIS_RESUBSCRIBE_BATCH; on Redis Cluster, each batch within one slot. */
  private *batches(keys: string[]): Generator<string[]> {
    const groups = new Map<number, string[]>();
    if (this.options.cluster)
      for (const key of keys) {
        const slot = calculateSlot(key);
        const group = groups.get(slot);
        if (group) group.push(key);
        else groups.set(slot, [key]);
      }
    else groups.set(0, keys);
    for (const group of groups.values())
      for (let i = 0; i < group.length; i += REDIS_RESUBSCRIBE_BATCH) yield group.slice(i, i + REDIS_RESUBSCRIBE_BATCH);
  }
}

/**
 * The tags the history script writes into a publication: its offset (a
 * varint) and its epoch (a string), by their numbers in
 * realtime.link.v1.Publication, which must be consecutive, offset first,
 * and below 16 (one-byte tags), so that writing them at positionIndex
 * (between the fields below and above them) is what protobuf-es writes.
 */
export function positionFields(): PositionFields {
  const offset = PublicationSchema.field.offset!.number;
  const epoch = PublicationSchema.field.epoch!.number;
  if (epoch !== offset + 1 || epoch > 15)
    throw new Error("realtime.link.v1.Publication: offset and epoch must be consecutive fields below 16, offset first");
  return { offsetTag: (offset << 3) | 0, epochTag: (epoch << 3) | 2 };
}
