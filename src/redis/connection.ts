import { Redis } from "ioredis";
import { Code, RealtimeError } from "../protocol/errors.js";

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
  const redis = new Redis(url, {
    lazyConnect: true,
    connectionName: name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    keepAlive: 5_000,
    retryStrategy: (attempt) => {
      const cap = Math.min(REDIS_RECONNECT_MAX_MS, REDIS_RECONNECT_INITIAL_MS * 2 ** Math.min(attempt, 16));
      return Math.round(cap / 2 + Math.random() * (cap / 2));
    },
  });
  // Errors surface as rejected commands and 'close'/'ready' events; an
  // unhandled 'error' event would crash the process.
  redis.on("error", () => {});
  return redis;
}

/** Starts connecting; resolves true once ready, false after waitMs (it keeps trying). */
export async function connectRedis(redis: Redis, waitMs: number): Promise<boolean> {
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
export async function closeRedis(redis: Redis): Promise<void> {
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
