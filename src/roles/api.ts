import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { create } from "@bufbuild/protobuf";
import { NodeStateSchema } from "../../gen/realtime/link/v1/link_pb.js";
import { Realtime } from "../../gen/realtime/v1/realtime_pb.js";
import { NodeCounters } from "../core/node-counters.js";
import { ControlPlane } from "../core/control.js";
import { Tap, TapDemand } from "../core/tap.js";
import type { Config } from "../config.js";
import { listenError } from "../config-args.js";
import { maxRequestBytes, type Limits } from "../core/limits.js";
import { ApiKeyring, parseApiKeys } from "../auth/api-keys.js";
import { createHostCheck } from "../auth/browser-guards.js";
import { checkExposure, enforceExposure } from "../auth/exposure.js";
import { apiKeyInterceptor } from "../auth/interceptors.js";
import { IdGenerator } from "../core/publication.js";
import { Idempotency } from "../core/idempotency.js";
import { createDrainGate } from "../api/drain-gate.js";
import { startGrpcServer } from "../api/grpc/server.js";
import { createHealth, ServingStatus } from "../api/health.js";
import { chainInterceptors, failureLogInterceptor } from "../api/interceptors.js";
import { createRealtimeService } from "../api/service.js";
import { serviceEntry } from "../api/service-entry.js";
import { REQUEST_DECODERS } from "../wire/request-codec.js";
import { readMaxBytesFor } from "../api/connect/adapter.js";
import { startHttpServer } from "../api/connect/server.js";
import { createDashboardHandler } from "../dashboard/serve.js";
import { createMetrics, createOpsHandler, Readiness, rpcMetricsInterceptor, VERSION } from "../metrics/index.js";
import type { Logger } from "../log.js";
import { readTls } from "../tls.js";
import { backendOf, startApiSeams } from "./seams.js";

export interface ApiHandle {
  /** link: where edges connect, in the embedded mode only (not with Redis). */
  addresses: { grpc: string; link?: string; http: string };
  /** Ready for traffic: started and not draining (/readyz, gRPC health ""). */
  readonly readiness: Readiness;
  /** Finishes calls in flight, closes the link, stops listening. */
  stop(): Promise<void>;
}

/** How long stop() lets calls in flight finish before it cancels them. */
export const API_SHUTDOWN_GRACE_MS = 5_000;

/**
 * Starts the API process of the embedded mode: the hub (broker, presence and
 * the link that edges connect to) and the gRPC server of realtime.v1.Realtime.
 */
export async function startApi(config: Config, log: Logger): Promise<ApiHandle> {
  // API keys: refuse to start exposed without them (auth/exposure.ts).
  const keyring = new ApiKeyring(parseApiKeys(config.apiKeys));
  const exposure = checkExposure(
    [config.grpcHost, config.httpHost],
    keyring.enabled,
    config.insecure,
    "set REALTIME_API_KEYS (comma-separated keys backends send as authorization: Bearer <key>)",
  );
  if (!exposure.ok) throw new Error(exposure.message);
  if (exposure.mode === "loopback")
    log.warn(
      { grpc: config.grpcHost, http: config.httpHost },
      "no API keys configured (REALTIME_API_KEYS): every call is allowed; listening on loopback only",
    );
  if (exposure.mode === "insecure")
    log.error(
      { grpc: config.grpcHost, http: config.httpHost },
      "REALTIME_INSECURE=true: serving the API to the network WITHOUT API keys; anyone who reaches it can publish; never do this in production",
    );
  if (keyring.enabled) log.info({ keys: keyring.keys.map((k) => k.fingerprint) }, "API keys required");
  if (backendOf(config) === "link") checkLinkExposure(config, log);
  const drain = createDrainGate();
  const limits: Limits = {
    maxPayloadBytes: config.maxPayloadBytes,
    maxProfileBytes: config.maxProfileBytes,
    maxChannelsPerConnection: config.maxChannelsPerConnection,
  };
  const eventIds = new IdGenerator();
  const metrics = createMetrics({ role: "api", version: VERSION });
  const readiness = new Readiness();
  metrics.readiness(() => readiness.status().ready);
  // The hub and the link edges connect to (embedded mode), or Redis (REALTIME_REDIS_URL).
  // Redis mode: not ready while Redis is down (the embedded hub is this process).
  const redis = backendOf(config) === "redis";
  if (redis) {
    readiness.require("redis");
    metrics.declareBackend("redis");
  }
  // Info's running totals of this node (core/node-counters.ts): the hub's drops (edge_backpressure).
  const counters = new NodeCounters();
  const seams = await startApiSeams(config, log, eventIds, counters.observing(metrics.observer), (up) => {
    metrics.observer.backendState("redis", up);
    readiness.set("redis", up);
  }).catch((err: unknown) => {
    throw redis ? err : listenError(err, "linkHost", "linkPort", config);
  });
  if (seams.levels) metrics.hubLevels(seams.levels);

  // The control plane: Disconnect, Subscribe, Unsubscribe and Info reach the nodes through the broker.
  const nodeId = randomBytes(6).toString("base64url");
  const startedUnixMs = Date.now();
  // The message tap (core/tap.ts): this node's copies of what backends publish, while someone watches.
  const tap = new Tap({
    broker: seams.broker,
    observer: metrics.observer,
    onError: (err) => log.debug({ err }, "message tap"),
  });
  const control = new ControlPlane({
    broker: seams.broker,
    attach: seams.watchers,
    nodeId,
    peers: redis,
    tap,
    self: () =>
      create(NodeStateSchema, {
        id: nodeId,
        role: "api",
        version: VERSION,
        startedUnixMs: BigInt(startedUnixMs),
        ...counters.totals(),
      }),
    onError: (err) => log.debug({ err }, "control plane"),
  });
  const tapDemand = new TapDemand((forMs) => control.announceTap(forMs));
  const service = createRealtimeService({
    control,
    broker: seams.broker,
    presence: seams.presence,
    limits,
    eventIds,
    watchers: seams.watchers,
    watchLimits: { maxPerKey: config.watchMaxStreamsPerKey },
    lifecycle: config.lifecycle,
    tap: { copier: tap, demand: tapDemand },
    idempotency: new Idempotency({
      store: seams.idempotency,
      onError: (err, context) => log.warn({ err, context }, "idempotency store error"),
    }),
  });

  const health = createHealth();
  // The overall status follows readiness: NOT_SERVING until started, and from the start of stop().
  health.set("", ServingStatus.NOT_SERVING);
  readiness.onChange((s) => health.set("", s.ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING));
  health.set(Realtime.typeName, ServingStatus.SERVING);
  // Every call of the API is counted, then logged if it fails, then its key
  // checked, then refused while draining: the one chain of both ports.
  const realtime = serviceEntry(Realtime, service, {
    // Hand-written decoders for the publish requests (the hot path); they
    // return what protobuf-es would, and defer to it for anything unusual.
    requestDecoders: REQUEST_DECODERS,
    interceptor: chainInterceptors(
      rpcMetricsInterceptor(metrics),
      failureLogInterceptor(log),
      apiKeyInterceptor(keyring),
      drain.interceptor,
    ),
  });
  // Health needs no key and is not refused while draining (load balancers
  // must see NOT_SERVING). Its calls are counted and their failures logged
  // on the HTTP port only (the gRPC port's probes are not).
  const grpcHealth = serviceEntry(health.service, health.impl);
  const httpHealth = serviceEntry(health.service, health.impl, {
    interceptor: chainInterceptors(rpcMetricsInterceptor(metrics), failureLogInterceptor(log)),
  });
  // TLS in the process when REALTIME_TLS_CERT_FILE/KEY_FILE are set; otherwise plain (TLS in front).
  const tls = readTls(config);
  const grpc = await startGrpcServer({
    host: config.grpcHost,
    port: config.grpcPort,
    services: [realtime, grpcHealth],
    maxReceiveMessageBytes: maxRequestBytes(config.maxPayloadBytes, config.maxBatchBytes),
    keepaliveTimeMs: config.grpcKeepaliveTimeMs,
    keepaliveTimeoutMs: config.grpcKeepaliveTimeoutMs,
    maxConnectionAgeMs: config.grpcMaxConnectionAgeMs,
    tls,
  }).catch((err: unknown) => {
    throw listenError(err, "grpcHost", "grpcPort", config);
  });
  // The same service over Connect and gRPC-Web, with the dashboard at /.
  const http = await startHttpServer({
    host: config.httpHost,
    port: config.httpPort,
    services: [realtime, httpHealth],
    readMaxBytes: readMaxBytesFor(maxRequestBytes(config.maxPayloadBytes, config.maxBatchBytes)),
    corsOrigins: config.corsOrigins,
    hosts: keyring.enabled ? undefined : createHostCheck(config.httpHost, config.allowedHosts),
    tls,
    fallback: withOps(createOpsHandler({ metrics, readiness }), createDashboardHandler()),
  }).catch((err: unknown) => {
    throw listenError(err, "httpHost", "httpPort", config);
  });
  readiness.serving();
  return {
    readiness,
    addresses: {
      grpc: grpc.address,
      ...(seams.link ? { link: seams.link } : {}),
      http: http.address,
    },
    async stop() {
      readiness.draining();
      health.set("", ServingStatus.NOT_SERVING);
      health.set(Realtime.typeName, ServingStatus.NOT_SERVING);
      // New calls get UNAVAILABLE from now on; calls in flight finish. The
      // drain period lets load balancers see NOT_SERVING before we go.
      drain.close();
      if (config.shutdownDrainMs > 0) await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
      const httpStopped = http.stop();
      // Streams (WatchChannel, health Watch) never finish on their own: stop
      // ends them (UNAVAILABLE) so that only unary calls in flight are waited for.
      await grpc.stop(
        Math.max(100, Math.min(API_SHUTDOWN_GRACE_MS, config.shutdownTimeoutMs - config.shutdownDrainMs - 1_000)),
      );
      await httpStopped;
      tapDemand.close();
      tap.close();
      control.close();
      await seams.close();
    },
  };
}

/**
 * The hub's link port is as closed as the API: without REALTIME_LINK_SECRET
 * (anyone who reaches it could publish and add members) it listens on
 * loopback only (auth/exposure.ts).
 */
function checkLinkExposure(config: Config, log: Logger): void {
  enforceExposure(
    [config.linkHost],
    config.linkSecret !== "",
    config.insecure,
    "set REALTIME_LINK_SECRET (32+ characters, the same on the API and every edge) so that edges must authenticate to REALTIME_LINK_HOST",
    log,
    {
      fields: { link: config.linkHost },
      loopback:
        "no link secret configured (REALTIME_LINK_SECRET): any local process may link as an edge; the link listens on loopback only",
      insecure:
        "REALTIME_INSECURE=true: the link accepts edges from the network WITHOUT a secret; anyone who reaches it can publish and add members; never do this in production",
    },
  );
}

/** /metrics, /healthz and /readyz first, then the dashboard. */
function withOps(
  ops: (req: IncomingMessage, res: ServerResponse) => boolean,
  next: (req: IncomingMessage, res: ServerResponse) => void,
) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    if (!ops(req, res)) next(req, res);
  };
}
