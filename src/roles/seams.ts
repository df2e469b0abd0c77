/**
 * Picks the implementations of the core's seams (Broker, Presence) for a
 * process: the embedded mode's hub and link (the default), or Redis when
 * REALTIME_REDIS_URL is set. The roles (api.ts, edge.ts) build everything
 * else the same way in both modes.
 */
import type { WatchSource } from "../api/watch.js";
import { splitHostPort, type Config } from "../config.js";
import type { Broker, PublicationHandler } from "../core/broker.js";
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
import { historyRules, parseHistoryRules, type HistoryFor } from "../core/history-rules.js";

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
  // The Redis parts (and ioredis) are loaded only in the Redis mode: an embedded node does without their memory.
  if (config.redisUrl !== "")
    return (await import("./seams-redis.js")).startRedisApiSeams(config, log, eventIds, onBackendState, observer);
  const broker = new MemoryBroker(observer, historyOf(config));
  const presence = new MemoryPresence();
  // The API's own view of the hub: it publishes and reads presence; it is not an edge.
  const node = broker.attach(() => {}, false);
  // The hub announces the members it removes by itself; its broker fails
  // only when no edge is attached, and then no one is there to tell.
  const membership = createMembership(log, {
    broker: node,
    eventIds,
    retryAnnouncements: false,
    lifecycle: config.lifecycle,
  });
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

export async function createEdgeSeams(
  config: Config,
  log: Logger,
  edgeId: string,
  eventIds: IdGenerator,
  hooks: EdgeSeamHooks,
): Promise<EdgeSeams> {
  if (config.redisUrl !== "")
    return (await import("./seams-redis.js")).createRedisEdgeSeams(config, log, edgeId, eventIds, hooks);
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
  const membership = createMembership(log, { broker: link, presence: link, eventIds, lifecycle: config.lifecycle });
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

/** A node's membership room (core/membership.ts); what it drops is logged. */
export function createMembership(log: Logger, options: Omit<MembershipOptions, "onError">): Membership {
  return new Membership({ ...options, onError: (err, context) => log.warn({ err, context }, "membership error") });
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
