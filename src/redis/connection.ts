import { Cluster, Redis } from "ioredis";
import { Code, RealtimeError } from "../protocol/errors.js";

/**
 * A command connection: one Redis, or a Redis Cluster (REALTIME_REDIS_MODE),
 * whose client routes each command by the slot of its first key. The code
 * that uses it sends only commands and scripts whose keys lie in one slot.
 */
export type RedisCommands = Redis | Cluster;

/**
 * How long one Redis command may take before it fails with UNAVAILABLE. A
 * publish that times out may still have been delivered: the caller is told
 * it failed (it may retry), never told OK for a publication that was lost.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 3_000;
/** How long one connection attempt may take. */
export const REDIS_CONNECT_TIMEOUT_MS = 2_000;
/** First delay before reconnecting; doubles up to the max, with jitter. */
export const REDIS_RECONNECT_INITIAL_MS = 100;
export const REDIS_RECONNECT_MAX_MS = 2_000;

/**
 * Opens an ioredis connection configured so that Redis being away is
 * visible at once, never hidden: no offline queue (a command while
 * disconnected fails immediately), no retry or re-send of a command that
 * was in flight when the connection dropped (it fails; re-sending a publish
 * could deliver it twice), and no automatic re-subscription (the broker
 * re-subscribes what it wants itself). The connection reconnects forever
 * with jittered backoff; `connect()` is left to the caller.
 */
export function openRedis(url: string, name: string): Redis {
  const redis = new Redis(url, redisOptions(name));
  // Errors surface as rejected commands and 'close'/'ready' events; an
  // unhandled 'error' event would crash the process.
  redis.on("error", () => {});
  return redis;
}

/** The options of every connection to one Redis node (see openRedis). */
function redisOptions(name: string) {
  return {
    ...nodeOptions(name),
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: reconnectDelay,
  } as const;
}

/** What a connection to a node has whatever the mode: nothing re-sent or re-subscribed, commands timed out. */
function nodeOptions(name: string) {
  return {
    connectionName: name,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    keepAlive: 5_000,
  } as const;
}

/** The delay before reconnect attempt `attempt`: doubling up to the max, with jitter. */
function reconnectDelay(attempt: number): number {
  const cap = Math.min(REDIS_RECONNECT_MAX_MS, REDIS_RECONNECT_INITIAL_MS * 2 ** Math.min(attempt, 16));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

/** How often a cluster client re-reads the slot map by itself (besides on MOVED). */
export const REDIS_CLUSTER_SLOTS_REFRESH_MS = 5_000;

/**
 * Opens a Redis Cluster client seeded by url (any node: it learns the rest
 * from CLUSTER SLOTS), its connections to each node configured as
 * openRedis's but for the queue (below): nothing re-sent, commands failing
 * within a reconnect attempt or the command timeout while a slot's master
 * is away. A MOVED reply is followed (the slot map is refreshed); a slot whose master is down fails with the node's error
 * (CLUSTERDOWN, or the connection's). `connect()` is left to the caller.
 */
export function openRedisCluster(url: string, name: string): Cluster {
  const u = new URL(url);
  const { username, password } = u;
  const cluster = new Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], {
    lazyConnect: true,
    // With no queue of its own, the cluster client rejects a command whose
    // node's connection is still opening and retries it on a random node,
    // where it is MOVED back: it then runs after commands sent after it,
    // which presence's order (an add before the remove of the same member,
    // a sync's steps) cannot allow. Queued, it keeps its order; the node
    // connection's queue is flushed with an error each time a reconnect
    // fails (maxRetriesPerRequest 0), and each command times out.
    enableOfflineQueue: true,
    enableReadyCheck: true,
    slotsRefreshInterval: REDIS_CLUSTER_SLOTS_REFRESH_MS,
    retryDelayOnClusterDown: 0,
    retryDelayOnTryAgain: 0,
    maxRedirections: 4,
    clusterRetryStrategy: reconnectDelay,
    // Each node's connection takes these; the cluster client gives it a
    // queue of its own and reconnects it itself.
    redisOptions: {
      ...nodeOptions(name),
      ...(username ? { username: decodeURIComponent(username) } : {}),
      ...(password ? { password: decodeURIComponent(password) } : {}),
      ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    },
  });
  cluster.on("error", () => {});
  cluster.on("node error", () => {});
  return cluster;
}

/**
 * Whether the Redis that conn reaches can serve mode: undefined when it
 * can, else what is wrong and the setting that fixes it. A node of a
 * Redis Cluster says cluster_enabled:1 in INFO cluster (and refuses
 * multi-slot scripts with CROSSSLOT, so standalone mode cannot run on it);
 * cluster mode needs Redis 7 for sharded pub/sub.
 */
export async function redisModeProblem(conn: RedisCommands, mode: string): Promise<string | undefined> {
  // INFO's default sections hold both Server (redis_version) and Cluster (cluster_enabled).
  const info = await conn.info();
  const clustered = /^cluster_enabled:1/m.test(info);
  const version = /^redis_version:(\d+)/m.exec(info)?.[1];
  if (mode !== "cluster" && clustered)
    return "the Redis at REALTIME_REDIS_URL is a Redis Cluster node (cluster_enabled:1); set REALTIME_REDIS_MODE=cluster";
  if (mode === "cluster" && !clustered)
    return "the Redis at REALTIME_REDIS_URL is not a Redis Cluster node (cluster_enabled:0); set REALTIME_REDIS_MODE=standalone, or point it at a cluster";
  if (mode === "cluster" && version !== undefined && Number(version) < 7)
    return `REALTIME_REDIS_MODE=cluster needs Redis 7 or later for sharded pub/sub (SSUBSCRIBE); this one is ${version}`;
  return undefined;
}

/** The run id (INFO server) of the Redis conn is connected to; undefined when it does not say. */
export async function runIdOf(conn: Redis): Promise<string | undefined> {
  return /^run_id:(\w+)/m.exec(await conn.info("server"))?.[1];
}

/** Starts connecting; resolves true once ready, false after waitMs (it keeps trying). */
/** What connectRedis and closeRedis need of a connection: ioredis's Redis and Cluster, or a ClusterSubscriber. */
export interface Connectable {
  readonly status: string;
  connect(): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: "ready" | "end", listener: () => void): unknown;
  off(event: "ready" | "end", listener: () => void): unknown;
}

export async function connectRedis(redis: Connectable, waitMs: number): Promise<boolean> {
  if (redis.status === "ready") return true;
  let done!: (ok: boolean) => void;
  const ready = new Promise<boolean>((resolve) => (done = resolve));
  const onReady = () => done(true);
  const onEnd = () => done(false);
  redis.on("ready", onReady);
  redis.on("end", onEnd);
  const timer = setTimeout(() => done(false), waitMs);
  timer.unref();
  if (redis.status === "wait") redis.connect().catch(() => {});
  const ok = await ready;
  clearTimeout(timer);
  redis.off("ready", onReady);
  redis.off("end", onEnd);
  return ok;
}

/** Closes the connection without waiting for Redis if it is away. */
export async function closeRedis(redis: Connectable): Promise<void> {
  if (redis.status === "ready") {
    await Promise.race([redis.quit().catch(() => {}), new Promise((r) => setTimeout(r, 1_000).unref())]);
  }
  redis.disconnect();
}

/**
 * Any failure of a Redis command as the core's error. Every failure is
 * UNAVAILABLE: the connection is down or timed out, or Redis refused for a
 * reason of its own state (LOADING, READONLY, OOM, BUSY), all of which pass.
 */
export function redisUnavailable(err: unknown, what: string): RealtimeError {
  if (err instanceof RealtimeError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new RealtimeError(Code.Unavailable, `${what} failed: Redis is unavailable (${reason}); try again shortly`);
}
