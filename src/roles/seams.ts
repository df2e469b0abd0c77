/**
 * Picks the implementations of the core's seams (Broker, Presence) for a
 * process: the embedded mode's hub and link (the default), or Redis when
 * REALTIME_REDIS_URL is set. The roles (api.ts, edge.ts) build everything
 * else the same way in both modes.
 */
import type { WatchSource } from "../api/watch.js";
import { ConfigError, splitHostPort, type Config } from "../config.js";
import type { Broker, PublicationHandler } from "../core/broker.js";
import { randomBytes } from "node:crypto";
import { MemoryBroker } from "../core/broker-memory.js";
import type { IdempotencyStore } from "../core/idempotency.js";
import { MemoryIdempotencyStore } from "../core/idempotency-memory.js";
import { Membership, type MembershipOptions } from "../core/membership.js";
import type { Observer } from "../core/observer.js";
import type { Member, Presence, PresenceDirectory } from "../core/presence.js";
import { MemoryPresence } from "../core/presence-memory.js";
import type { IdGenerator } from "../core/publication.js";
import { LINK_SETTLE_MS, LinkBroker } from "../link/broker-link.js";
import { LinkRefusedError } from "../link/link-auth.js";
import { LinkServer } from "../link/link-server.js";
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
import { historyRules, parseHistoryRules, type HistoryFor } from "../core/history-rules.js";
import { RedisPresence } from "../redis/presence-redis.js";

/** What an API process publishes through and reads presence from. */
export interface ApiSeams {
  broker: Broker;
  presence: PresenceDirectory;
  /** Where WatchChannel attaches its receivers. */
  watchers: WatchSource;
  /** Where idempotency keys are claimed: this process's memory, or Redis (shared by every API node). */
  idempotency: IdempotencyStore;
  /** The link's address (host:port) that edges connect to; embedded mode only. */
  link?: string;
  /** What the API depends on, for readiness and metrics. */
  backend: "link" | "redis";
  /** The hub's levels (edges linked, channels routed); embedded mode only. */
  levels?: () => { edges: number; channels: number };
  close(): Promise<void>;
}

/** The API's seams: the hub and its link, or Redis. */
export async function startApiSeams(
  config: Config,
  log: Logger,
  eventIds: IdGenerator,
  observer?: Observer,
  /** Redis went up or down (Redis mode only; readiness and metrics). */
  onBackendState?: (up: boolean) => void,
): Promise<ApiSeams> {
  if (config.redisUrl !== "") return startRedisApiSeams(config, log, eventIds, onBackendState, observer);
  const broker = new MemoryBroker(observer, historyOf(config));
  const presence = new MemoryPresence();
  // The API's own view of the hub: it publishes and reads presence; it is not an edge.
  const node = broker.attach(() => {}, false);
  // The hub announces the members it removes by itself; its broker fails
  // only when no edge is attached, and then no one is there to tell.
  const membership = createMembership(log, { broker: node, eventIds, retryAnnouncements: false });
  const link = new LinkServer({
    broker,
    presence,
    graceMs: config.edgeGraceMs,
    announce: (changes) => membership.announce(changes),
    secret: config.linkSecret,
    observer,
    onError: (err, context) =>
      err instanceof LinkRefusedError
        ? log.warn({ reason: err.message }, "link refused")
        : log.warn({ err, context }, "link error"),
    onEdge: (edgeId, connected) => log.info({ edgeId, connected }, connected ? "edge connected" : "edge disconnected"),
  });
  const address = await link.listen(config.linkPort, config.linkHost);
  return {
    broker: node,
    presence: presence.view("api"),
    watchers: (handler) => broker.attach(handler, false),
    idempotency: new MemoryIdempotencyStore({
      windowMs: config.idempotencyWindowMs,
      maxKeys: config.idempotencyMaxKeys,
    }),
    link: `${bracket(address.address)}:${address.port}`,
    backend: "link",
    levels: () => ({ edges: link.edges, channels: broker.channelCount }),
    async close() {
      membership.close();
      node.close();
      broker.close();
      await link.close();
    },
  };
}

async function startRedisApiSeams(
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
  const membership = createMembership(log, { broker: gated, eventIds });
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

/** What an edge needs from its seams, besides the Edge itself. */
export interface EdgeSeamHooks {
  /** Delivers a publication to the edge's connections. */
  deliver: PublicationHandler;
  /** What the edge holds, re-sent by the link after it reconnects. */
  snapshot: () => { channels: string[]; members: { channel: string; member: Member }[] };
  /** The backend (link or Redis) went up or down. */
  onStateChange: (up: boolean) => void;
}

/** An edge's seams: the link to the API, or Redis. */
export interface EdgeSeams {
  broker: Broker;
  presence: Presence;
  /**
   * The edge's membership room over broker and presence: it announces its
   * connections' changes (the Edge) and, with Redis, what its syncs and
   * sweeps change.
   */
  membership: Membership;
  backend: "link" | "redis";
  /** Where the edge connects to, for logs (no password). */
  target: string;
  /** Starts connecting; resolves once connected the first time (it keeps trying meanwhile). */
  start(): Promise<void>;
  connected(): boolean;
  close(): Promise<void>;
}

export function createEdgeSeams(
  config: Config,
  log: Logger,
  edgeId: string,
  eventIds: IdGenerator,
  hooks: EdgeSeamHooks,
): EdgeSeams {
  if (config.redisUrl !== "") return createRedisEdgeSeams(config, log, edgeId, eventIds, hooks);
  let linkedBefore = false;
  const link = new LinkBroker({
    ...splitHostPort(config.linkUrl),
    edgeId,
    secret: config.linkSecret,
    onPublication: hooks.deliver,
    snapshot: hooks.snapshot,
    onStateChange: (up) => {
      // Back after an outage: the API may have restarted, and the other
      // edges re-attach within their backoff; what this edge's members did
      // meanwhile (their channel:leave) is announced once they can hear it.
      if (up && linkedBefore) membership.hold(LINK_SETTLE_MS);
      linkedBefore ||= up;
      hooks.onStateChange(up);
    },
    onError: (err, context) =>
      err instanceof LinkRefusedError
        ? log.error({ link: config.linkUrl, reason: err.message }, "link refused: check REALTIME_LINK_SECRET")
        : log.warn({ err, context }, "link error"),
  });
  const membership = createMembership(log, { broker: link, presence: link, eventIds });
  return {
    broker: link,
    presence: link,
    membership,
    backend: "link",
    target: config.linkUrl,
    start: () => link.start(),
    connected: () => link.isConnected,
    async close() {
      await link.close();
      membership.close();
    },
  };
}

function createRedisEdgeSeams(
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
  const membership = createMembership(log, { broker: gated, presence, eventIds });
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

/** A node's membership room (core/membership.ts); what it drops is logged. */
function createMembership(log: Logger, options: Omit<MembershipOptions, "onError">): Membership {
  return new Membership({ ...options, onError: (err, context) => log.warn({ err, context }, "membership error") });
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

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** What a process of this configuration depends on: the API's link, or Redis. */
export function backendOf(config: Config): "link" | "redis" {
  return config.redisUrl !== "" ? "redis" : "link";
}

/** What each channel keeps, from the history settings (src/config.ts; core/history-rules.ts). */
export function historyOf(config: Config): HistoryFor {
  return historyRules(
    config.historySize,
    config.historyTtlMs,
    parseHistoryRules(config.historyRules, config.historyTtlMs),
  );
}
