import { randomBytes } from "node:crypto";
import type { Config } from "../config.js";
import { listenError } from "../config-args.js";
import { createHostCheck, createOriginCheck } from "../auth/browser-guards.js";
import { createClientAuthenticator } from "../auth/client-auth.js";
import { checkExposure } from "../auth/exposure.js";
import { CloseCode } from "../protocol/close-codes.js";
import { ConnectionPolicy } from "../core/connections.js";
import { Edge } from "../core/edge.js";
import { NodeCounters } from "../core/node-counters.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { ERROR_BUDGET_REFILL_PER_SECOND, maxFrameBytes, type Limits } from "../core/limits.js";
import { IdGenerator } from "../core/publication.js";
import { Hooks } from "../core/hooks.js";
import { Tap } from "../core/tap.js";
import { parsePresenceRules, presenceRules } from "../core/presence-rules.js";
import { WsEdgeServer } from "../edge/ws-server.js";
// Not metrics/index.js: it also exports the API's RPC metrics, which load @connectrpc/connect.
import { createOpsHandler } from "../metrics/http.js";
import { createMetrics } from "../metrics/metrics.js";
import { Readiness } from "../metrics/readiness.js";
import { VERSION } from "../metrics/version.js";
import type { Logger } from "../log.js";
import { readTls } from "../tls.js";
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
  // Client tokens: refuse to start exposed without them (auth/exposure.ts).
  // The JWT library is loaded only when a token key is configured.
  const verifier =
    config.jwtSecret || config.jwtPublicKeyFile || config.jwtJwksFile
      ? (await import("../auth/tokens.js")).loadTokenVerifier(config)
      : undefined;
  const exposure = checkExposure(
    [config.wsHost],
    verifier !== undefined,
    config.insecure,
    "set REALTIME_JWT_SECRET, REALTIME_JWT_PUBLIC_KEY_FILE or REALTIME_JWT_JWKS_FILE so that clients must present tokens",
  );
  if (!exposure.ok) throw new Error(exposure.message);
  if (exposure.mode === "loopback")
    log.warn(
      { host: config.wsHost },
      "no token key configured: every client connection is anonymous; listening on loopback only",
    );
  if (exposure.mode === "insecure")
    log.error(
      { host: config.wsHost },
      "REALTIME_INSECURE=true: accepting anonymous clients from the network without tokens; never do this in production",
    );
  if (verifier)
    log.info({ algorithms: verifier.algorithms, anonymous: config.allowAnonymous }, "client tokens required");
  const limits: Limits = {
    maxPayloadBytes: config.maxPayloadBytes,
    maxProfileBytes: config.maxProfileBytes,
    maxChannelsPerConnection: config.maxChannelsPerConnection,
  };
  const metrics = createMetrics({ role: "edge", version: VERSION });
  // Info's running totals (core/node-counters.ts), counted by the calls that count the metrics.
  const counters = new NodeCounters();
  const observer = counters.observing(metrics.observer);
  const backend = backendOf(config);
  const readiness = new Readiness().require(backend);
  metrics.declareBackend(backend);
  metrics.readiness(() => readiness.status().ready);
  let edge: Edge | undefined;
  let stopping = false;
  let connections: ConnectionPolicy | undefined;
  // The link to the API (embedded mode), or Redis (REALTIME_REDIS_URL).
  const eventIds = new IdGenerator();
  const link = await createEdgeSeams(config, log, edgeId, eventIds, {
    deliver: (pub) => edge?.deliver(pub),
    snapshot: () => edge?.snapshot() ?? { channels: [], members: [] },
    onStateChange: (up) => {
      metrics.observer.backendState(backend, up);
      readiness.set(backend, up);
      connections?.backendState(up);
      if (up) {
        // What was published while it was away may not have reached this edge.
        edge?.recheck();
        return log.info({ [backend]: link.target }, `${backend} up`);
      }
      // While this edge stops, its API stopping too is no outage (switchboard dev, a whole deploy).
      if (stopping) return log.info({ [backend]: link.target }, `${backend} down while stopping`);
      log.warn({ [backend]: link.target }, `${backend} down; reconnecting`);
    },
  });
  const tap = new Tap({
    broker: link.broker,
    observer,
    onError: (err) => log.debug({ err }, "message tap"),
  });
  // The backend's realtime.v1.Hooks, when REALTIME_HOOKS_URL names one (core/hooks.ts).
  // Loaded only when configured: the gRPC client is most of an edge's memory otherwise unused.
  const hooksClient =
    config.hooksUrl === "" ? undefined : (await import("../hooks/grpc-hooks.js")).grpcHooksClient(config.hooksUrl);
  const hooks =
    hooksClient &&
    new Hooks({
      client: hooksClient,
      connect: config.hooksConnect,
      joinPrefixes: prefixesOf(config.hooksJoinPrefixes),
      sendPrefixes: prefixesOf(config.hooksSendPrefixes),
      timeoutMs: config.hooksTimeoutMs,
      failOpen: config.hooksFailOpen,
      limits,
      observer,
      onFailure: (hook, err) => log.warn({ err, hook, hooks: config.hooksUrl }, "hook call failed"),
    });
  edge = new Edge({
    broker: link.broker,
    presence: link.presence,
    membership: link.membership,
    limits,
    connectionIds: new IdGenerator(edgeId),
    eventIds,
    allowClientBroadcast: config.allowClientBroadcast,
    allowClientSend: config.allowClientSend,
    privateChannelPrefix: config.privateChannelPrefix,
    presenceEvents: presenceRules(config.presenceEvents, parsePresenceRules(config.presenceRules)),
    presenceWindowMs: config.presenceWindowMs,
    verifyToken: verifier && ((token) => verifier.verify(token)),
    rateLimit: {
      perSecond: config.rateLimitPerSecond,
      burst: config.rateLimitBurst,
      errorBudget: config.errorBudget,
      errorRefillPerSecond: ERROR_BUDGET_REFILL_PER_SECOND,
    },
    // UNAVAILABLE: the backend is down, logged once as such ("link down"), not
    // once per channel of every client that leaves meanwhile (4004 closes all).
    onError: (err) =>
      err instanceof RealtimeError && err.code === Code.Unavailable
        ? log.debug({ err }, "edge error while the backend is down")
        : log.warn({ err }, "edge error"),
    observer,
    node: { id: edgeId, version: VERSION, startedUnixMs: Date.now(), totals: () => counters.totals() },
    hooks,
    // Its clients' messages copied while an API node announces a watcher (core/tap.ts).
    tap,
  });
  metrics.edgeLevels(() => edge.stats());
  const tls = readTls(config);
  // One policy for every connection of this edge, whatever its transport (core/connections.ts).
  connections = new ConnectionPolicy({
    edge,
    observer,
    authenticate: createClientAuthenticator({ verifier, allowAnonymous: config.allowAnonymous, hooks, edgeId }),
    origins: createOriginCheck(config.wsOrigins),
    // Without token keys anyone who reaches the port is in: refuse DNS-rebound names (auth/browser-guards.ts).
    hosts: verifier ? undefined : createHostCheck(config.wsHost, config.allowedHosts),
    maxConnections: config.maxConnections,
    maxOutboundBytes: config.maxOutboundBytes,
    heartbeat: { intervalMs: config.heartbeatIntervalMs, timeoutMs: config.heartbeatTimeoutMs },
    outage: { afterMs: config.outageCloseMs, spreadMs: config.shutdownSpreadMs },
  });
  const ws = new WsEdgeServer({
    connections,
    maxFrameBytes: maxFrameBytes(limits),
    onError: (err, context) => log.error({ err, context }, "websocket error"),
    httpHandler: createOpsHandler({ metrics, readiness }),
    tls,
    writeDelayMs: config.writeDelayMs,
    writeBatch: config.writeBatch,
  });
  // Down until the backend says otherwise: one that never comes up counts as an outage too.
  connections.backendState(link.connected());
  const address = await ws.listen(config.wsPort, config.wsHost).catch((err: unknown) => {
    throw listenError(err, "wsHost", "wsPort", config);
  });
  let timer: NodeJS.Timeout | undefined;
  const waited = await Promise.race([
    link.start().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), EDGE_START_LINK_WAIT_MS))),
  ]);
  clearTimeout(timer);
  if (!waited)
    log.warn(
      { [backend]: link.target },
      `${backend === "redis" ? "Redis" : "API"} not reachable yet; clients get UNAVAILABLE until it is`,
    );
  readiness.serving();
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    edgeId,
    addresses: { ws: `${tls ? "wss" : "ws"}://${host}:${address.port}` },
    linked: () => link.connected(),
    readiness,
    async stop() {
      stopping = true;
      readiness.draining();
      // /readyz answers 503 for the drain period, while the edge still listens,
      // so that load balancers stop sending new clients before it goes.
      if (config.shutdownDrainMs > 0) await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
      // Clients are closed with 4000 (reconnect after a jittered delay),
      // spread over shutdownSpreadMs; whatever is left at the deadline is cut.
      let deadline: NodeJS.Timeout | undefined;
      const closed = ws.close(CloseCode.Shutdown, "edge shutting down: reconnect", config.shutdownSpreadMs);
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<true>(
          (resolve) =>
            (deadline = setTimeout(
              () => resolve(true),
              Math.max(0, config.shutdownTimeoutMs - config.shutdownDrainMs - 1_000),
            )),
        ),
      ]);
      clearTimeout(deadline);
      if (timedOut) {
        log.warn({ timeoutMs: config.shutdownTimeoutMs }, "shutdown deadline: cutting the remaining clients");
        connections.terminateAll();
      }
      tap.close();
      await link.close();
      hooksClient?.close();
    },
  };
}

/** A comma-separated setting's prefixes. */
function prefixesOf(list: string): string[] {
  return list === "" ? [] : list.split(",");
}
