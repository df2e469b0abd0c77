/**
 * The Redis mode's seams (REALTIME_REDIS_URL): the connections, the broker,
 * presence, the gate and the idempotency store over Redis. seams.ts loads
 * this module only in the Redis mode, so that an embedded node never loads
 * ioredis.
 */
import { randomBytes } from "node:crypto";
import type { WatchSource } from "../api/watch.js";
import { ConfigError, type Config } from "../config.js";
import type { PublicationHandler } from "../core/broker.js";
import type { Observer } from "../core/observer.js";
import type { IdGenerator } from "../core/publication.js";
import type { Logger } from "../log.js";
import { RedisBroker } from "../redis/broker-redis.js";
import { RedisIdempotencyStore } from "../redis/idempotency-redis.js";
import { ClusterSubscriber, type SubscriberConnection } from "../redis/cluster-subscriber.js";
import {
  closeRedis,
  connectRedis,
  openRedis,
  openRedisCluster,
  redisModeProblem,
  runIdOf,
  type RedisCommands,
} from "../redis/connection.js";
import { gatedBroker, gatedPresence, RedisGate } from "../redis/gate.js";
import { presencePrefix, REDIS_START_WAIT_MS } from "../redis/limits.js";
import { RedisPresence } from "../redis/presence-redis.js";
import { createMembership, historyOf, type ApiSeams, type EdgeSeamHooks, type EdgeSeams } from "./seams.js";

export async function startRedisApiSeams(
  config: Config,
  log: Logger,
  eventIds: IdGenerator,
  onBackendState?: (up: boolean) => void,
  observer?: Observer,
): Promise<ApiSeams> {
  const { command, subscriber, close, stalled, runIds, keys, cluster } = await openPair(
    config,
    log,
    "api",
    onBackendState,
  );
  // Acknowledgements and presence reads wait for every live edge after a restart (gate.ts).
  const gate = new RedisGate({
    command,
    subscriber,
    runIds,
    prefix: keys,
    ttlMs: config.redisEdgeTtlMs,
    onStall: stalled,
    onError: (err, context) => log.debug({ err, context }, "redis gate error"),
  });
  const broker = new RedisBroker({
    command,
    subscriber,
    cluster,
    prefix: config.redisPrefix,
    edge: false,
    history: historyOf(config),
    observer,
    onError: (err, context) => log.warn({ err, context }, "redis broker error"),
  });
  const gated = gatedBroker(broker, gate);
  // This node announces the members its sweeps remove (core/membership.ts).
  const membership = createMembership(log, { broker: gated, eventIds, lifecycle: config.lifecycle });
  const presence = new RedisPresence({
    command,
    prefix: keys,
    ttlMs: config.redisEdgeTtlMs,
    report: (changes) => membership.announce(changes),
    registrationsKey: gate.registrationsKey,
    onError: (err, context) => log.warn({ err, context }, "redis presence error"),
  });
  gate.start();
  await startRedisParts(broker, presence, log);
  const watchers = watchersOf(broker, subscriber);
  return {
    broker: gated,
    presence: gatedPresence(presence, gate),
    watchers: watchers.source,
    idempotency: new RedisIdempotencyStore({
      command,
      prefix: config.redisPrefix,
      windowMs: config.idempotencyWindowMs,
      node: randomBytes(6).toString("base64url"),
    }),
    backend: "redis",
    async close() {
      watchers.close();
      gate.close();
      await presence.close();
      membership.close();
      broker.close();
      await close();
    },
  };
}

export function createRedisEdgeSeams(
  config: Config,
  log: Logger,
  edgeId: string,
  eventIds: IdGenerator,
  hooks: EdgeSeamHooks,
): EdgeSeams {
  const { command, subscriber, runIds, keys, cluster } = openConnections(config, `switchboard:edge:${edgeId}`);
  const state = watchState(command, subscriber, hooks.onStateChange);
  // Constructed before the broker: its 'ready' listener on the subscriber
  // must run before the broker's (it reads the run id before re-subscribing).
  const gate = new RedisGate({
    command,
    subscriber,
    runIds,
    prefix: keys,
    edgeId,
    ttlMs: config.redisEdgeTtlMs,
    onStall: (stalled) => {
      state.stalled(stalled);
      if (stalled) log.warn({ redis: redactUrl(config.redisUrl) }, "redis stalled");
    },
    onError: (err, context) => log.debug({ err, context }, "redis gate error"),
  });
  const broker = new RedisBroker({
    command,
    subscriber,
    cluster,
    prefix: config.redisPrefix,
    edge: true,
    history: historyOf(config),
    onPublication: hooks.deliver,
    onSubscribed: () => gate.subscribed(),
    onError: (err, context) => log.warn({ err, context }, "redis broker error"),
  });
  const presence = new RedisPresence({
    command,
    prefix: keys,
    edgeId,
    ttlMs: config.redisEdgeTtlMs,
    // Called once started, when membership is set.
    report: (changes) => membership.announce(changes),
    onSynced: () => gate.synced(),
    registrationsKey: gate.registrationsKey,
    onError: (err, context) => log.warn({ err, context }, "redis presence error"),
  });
  // What the edge's clients publish and its own announcements wait for the
  // gate (after a Redis restart, until every live edge is subscribed again).
  const gated = gatedBroker(broker, gate);
  const membership = createMembership(log, { broker: gated, presence, eventIds, lifecycle: config.lifecycle });
  let started: Promise<void> | undefined;
  let stopModeCheck = () => Promise.resolve();
  return {
    broker: gated,
    presence: gatedPresence(presence, gate),
    membership,
    backend: "redis",
    target: redactUrl(config.redisUrl),
    start() {
      started ??= (async () => {
        stopModeCheck = await refuseWrongRedis(config, log);
        const subscribed = connectRedis(subscriber, 2 ** 31 - 1);
        command.connect().catch(() => {});
        gate.start();
        presence.start();
        await broker.start();
        await subscribed;
      })();
      return started;
    },
    connected: () => command.status === "ready" && subscriber.status === "ready",
    async close() {
      gate.close();
      await presence.close();
      membership.close();
      broker.close();
      await Promise.all([closeRedis(command), closeRedis(subscriber), stopModeCheck()]);
    },
  };
}

/** Opens and connects the two connections of a node (waits a while for Redis, then goes on). */
async function openPair(config: Config, log: Logger, role: string, onStateChange?: (up: boolean) => void) {
  // Asked while the node's own connections open, so that the start waits for Redis once, not twice.
  const checking = refuseWrongRedis(config, log);
  checking.catch(() => {}); // awaited below; a refusal must not count as unhandled meanwhile
  const { command, subscriber, runIds, keys, cluster } = openConnections(config, `switchboard:${role}`);
  let down = true;
  const state = watchState(command, subscriber, (up) => {
    onStateChange?.(up);
    if (up) log.info({ redis: redactUrl(config.redisUrl) }, "redis up");
    // A stall ended or began while connected, or the connection itself went.
    else if (!down) log.warn({ redis: redactUrl(config.redisUrl) }, "redis down or stalled; reconnecting");
    down = !up;
  });
  const [ok] = await Promise.all([
    connectRedis(command, REDIS_START_WAIT_MS),
    connectRedis(subscriber, REDIS_START_WAIT_MS),
  ]);
  let stopModeCheck: () => Promise<void>;
  try {
    stopModeCheck = await checking;
  } catch (err) {
    await Promise.all([closeRedis(command), closeRedis(subscriber)]);
    throw err;
  }
  if (!ok)
    log.warn({ redis: redactUrl(config.redisUrl) }, "Redis not reachable yet; calls get UNAVAILABLE until it is");
  return {
    command,
    subscriber,
    runIds,
    keys,
    cluster,
    /** Redis stalled (true) or answers again (false): down meanwhile, for readiness. */
    stalled: state.stalled,
    close: () => Promise.all([closeRedis(command), closeRedis(subscriber), stopModeCheck()]).then(() => {}),
  };
}

/**
 * A node's two connections for REALTIME_REDIS_MODE: one Redis and a
 * subscriber connection to it; or a Cluster client and a ClusterSubscriber
 * (one subscriber connection per master). `keys` is the prefix of the
 * presence and registration keys: on a cluster they carry a hash tag, so
 * that their scripts, which reach keys derived from their arguments, run
 * on one slot (presence.ts's costs are per change, one shard serves them;
 * docs/scaling.md). runIds read the run id of the Redis that holds them;
 * cluster tells the broker which pub/sub to use.
 */
function openConnections(config: Config, name: string) {
  if (config.redisMode !== "cluster") {
    const command = openRedis(config.redisUrl, name);
    const subscriber = openRedis(config.redisUrl, `${name}:sub`);
    return {
      command: command as RedisCommands,
      subscriber: subscriber as SubscriberConnection & Parameters<typeof closeRedis>[0],
      runIds: { command: () => runIdOf(command), subscriber: () => runIdOf(subscriber) },
      keys: config.redisPrefix,
      cluster: false,
    };
  }
  const command = openRedisCluster(config.redisUrl, name);
  const subscriber = new ClusterSubscriber(command, config.redisUrl, `${name}:sub`);
  const keys = presencePrefix(config.redisPrefix);
  const registrations = `${keys}registrations`;
  command.defineCommand("rtRunId", {
    numberOfKeys: 1,
    lua: "return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')",
  });
  const runId = command as unknown as { rtRunId(key: string): Promise<string | null> };
  return {
    command: command as RedisCommands,
    subscriber: subscriber as SubscriberConnection & Parameters<typeof closeRedis>[0],
    runIds: {
      command: async () => (await runId.rtRunId(registrations)) ?? undefined,
      subscriber: () => Promise.resolve(subscriber.runIdFor(registrations)),
    },
    keys,
    cluster: true,
  };
}

/**
 * Refuses to start (ConfigError: exit 2, the reason on stderr) when the
 * Redis at REALTIME_REDIS_URL cannot serve REALTIME_REDIS_MODE: a cluster
 * node in standalone mode (its scripts would fail with CROSSSLOT, its
 * publishes reach one shard), a standalone Redis in cluster mode, a
 * cluster without sharded pub/sub. Asked of the URL's node over a
 * connection of its own. A Redis that does not answer within
 * REDIS_START_WAIT_MS is asked when it first answers: the node has
 * started meanwhile, so then it exits, 2, with the same line (nothing it
 * did on a Redis of the wrong kind worked). Returns what stops that wait.
 */
async function refuseWrongRedis(config: Config, log: Logger): Promise<() => Promise<void>> {
  const probe = openRedis(config.redisUrl, "switchboard:mode-check");
  const ask = async () => {
    const problem = await redisModeProblem(probe, config.redisMode).catch(() => undefined);
    await closeRedis(probe);
    return problem;
  };
  if (await connectRedis(probe, REDIS_START_WAIT_MS)) {
    const problem = await ask();
    if (problem !== undefined) throw new ConfigError(problem);
    return () => Promise.resolve();
  }
  log.warn({ redis: redactUrl(config.redisUrl) }, "Redis not reachable at start: its mode is checked once it answers");
  probe.once("ready", () => {
    void ask().then((problem) => {
      if (problem === undefined) return;
      log.fatal({ redis: redactUrl(config.redisUrl), reason: problem }, "refusing to run on this Redis");
      process.stderr.write(`switchboard: ${problem}\n`);
      process.exit(2);
    });
  });
  return () => closeRedis(probe);
}

/** Starts the broker (waiting for Redis at most REDIS_START_WAIT_MS) and the presence. */
async function startRedisParts(broker: RedisBroker, presence: RedisPresence, log: Logger): Promise<void> {
  presence.start();
  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([
    broker.start().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), REDIS_START_WAIT_MS))),
  ]);
  clearTimeout(timer);
  if (!started) log.warn("the Redis broker starts once Redis is reachable");
}

/**
 * Reports up when both connections are ready and Redis is not stalled
 * (gate.ts, REDIS_STALL_MS), down when either drops or Redis stalls.
 */
function watchState(
  command: RedisCommands,
  subscriber: SubscriberConnection,
  onStateChange: (up: boolean) => void,
): { stalled(stalled: boolean): void } {
  let up = false;
  let stalled = false;
  const check = () => {
    const now = command.status === "ready" && subscriber.status === "ready" && !stalled;
    if (now !== up) {
      up = now;
      onStateChange(up);
    }
  };
  for (const conn of [command, subscriber]) {
    conn.on("ready", check);
    conn.on("close", check);
  }
  return {
    stalled(value) {
      stalled = value;
      check();
    },
  };
}

/**
 * Where an API node's watchers attach: the broker's local receivers, each
 * told when the subscriber connection drops (its subscriptions are gone,
 * and what is published until it re-subscribes is missed: the watch ends,
 * api/watch.ts). One listener on the connection for all of them.
 */
function watchersOf(broker: RedisBroker, subscriber: SubscriberConnection) {
  const lost = new Set<(why: string) => void>();
  const onClose = () => {
    for (const listener of [...lost]) listener("this API node's Redis subscriber connection dropped");
  };
  subscriber.on("close", onClose);
  const source: WatchSource = (handler: PublicationHandler) => {
    const node = broker.attach(handler);
    let listener: ((why: string) => void) | undefined;
    return {
      subscribe: (channel) => node.subscribe(channel),
      onLost(l) {
        listener = l;
        lost.add(l);
      },
      close() {
        if (listener) lost.delete(listener);
        node.close();
      },
    };
  };
  return { source, close: () => subscriber.off("close", onClose) };
}

/** The URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "redis";
  }
}
