import { randomBytes } from "node:crypto";
import type { Config } from "../config.js";
import { Edge } from "../core/edge.js";
import { maxFrameBytes, type Limits } from "../core/limits.js";
import { IdGenerator } from "../core/publication.js";
import { WsEdgeServer } from "../edge/ws-server.js";
import { createMetrics, createOpsHandler, Readiness, VERSION } from "../metrics/index.js";
import type { Logger } from "../log.js";
import { backendOf, createEdgeSeams } from "./seams.js";

/** How long an edge waits for its link at start before it listens anyway. */
export const EDGE_START_LINK_WAIT_MS = 5_000;

export interface EdgeHandle {
  edgeId: string;
  addresses: { ws: string };
  /** Whether the link to the API is up now. */
  linked(): boolean;
  /** Ready for traffic: started, not draining, link up (/readyz). */
  readonly readiness: Readiness;
  /** Closes every client (they leave their channels), then the link. */
  stop(): Promise<void>;
}

/** Starts an edge: a WebSocket server whose connections reach the API over the link. */
export async function startEdge(config: Config, log: Logger): Promise<EdgeHandle> {
  const edgeId = randomBytes(6).toString("base64url");
  const limits: Limits = {
    maxPayloadBytes: config.maxPayloadBytes,
    maxProfileBytes: config.maxProfileBytes,
    maxChannelsPerConnection: config.maxChannelsPerConnection,
  };
  const metrics = createMetrics({ role: "edge", version: VERSION });
  const backend = backendOf(config);
  const readiness = new Readiness().require(backend);
  metrics.readiness(() => readiness.status().ready);
  let edge: Edge | undefined;
  // The link to the API (embedded mode), or Redis (REALTIME_REDIS_URL).
  const eventIds = new IdGenerator();
  const link = createEdgeSeams(config, log, edgeId, eventIds, {
    deliver: (pub) => edge?.deliver(pub),
    snapshot: () => edge?.snapshot() ?? { channels: [], members: [] },
    onStateChange: (up) => {
      metrics.observer.backendState(backend, up);
      readiness.set(backend, up);
      return up ? log.info({ [backend]: link.target }, `${backend} up`) : log.warn({ [backend]: link.target }, `${backend} down; reconnecting`);
    },
  });
  edge = new Edge({
    broker: link.broker,
    presence: link.presence,
    limits,
    connectionIds: new IdGenerator(edgeId),
    eventIds,
    allowClientBroadcast: config.allowClientBroadcast,
    onError: (err) => log.warn({ err }, "edge error"),
    observer: metrics.observer,
  });
  metrics.edgeLevels(() => edge.stats());
  const ws = new WsEdgeServer({
    edge,
    maxFrameBytes: maxFrameBytes(limits),
    onError: (err, context) => log.error({ err, context }, "websocket error"),
    httpHandler: createOpsHandler({ metrics, readiness }),
  });
  const address = await ws.listen(config.wsPort, config.wsHost);
  let timer: NodeJS.Timeout | undefined;
  const waited = await Promise.race([
    link.start().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), EDGE_START_LINK_WAIT_MS))),
  ]);
  clearTimeout(timer);
  if (!waited) log.warn({ [backend]: link.target }, `${backend === "redis" ? "Redis" : "API"} not reachable yet; clients get UNAVAILABLE until it is`);
  readiness.serving();
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    edgeId,
    addresses: { ws: `ws://${host}:${address.port}` },
    linked: () => link.connected(),
    readiness,
    async stop() {
      readiness.draining();
      await ws.close();
      await link.close();
    },
  };
}
