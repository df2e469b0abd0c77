import * as grpc from "@grpc/grpc-js";
import { Realtime } from "../../gen/realtime/v1/realtime_pb.js";
import type { Config } from "../config.js";
import { MemoryBroker } from "../core/broker-memory.js";
import { REQUEST_OVERHEAD_BYTES, type Limits } from "../core/limits.js";
import { MemoryPresence } from "../core/presence-memory.js";
import { IdGenerator } from "../core/publication.js";
import { addService } from "../api/grpc/adapter.js";
import { createHealth, ServingStatus } from "../api/grpc/health.js";
import { addReflection } from "../api/grpc/reflection.js";
import { createRealtimeService } from "../api/service.js";
import { readMaxBytesFor, serviceEntry } from "../api/connect/adapter.js";
import { startHttpServer } from "../api/connect/server.js";
import { createDashboardHandler } from "../dashboard/serve.js";
import { LinkServer } from "../link/link-server.js";
import type { Logger } from "../log.js";

export interface ApiHandle {
  addresses: { grpc: string; link: string; http: string };
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
  const limits: Limits = {
    maxPayloadBytes: config.maxPayloadBytes,
    maxProfileBytes: config.maxProfileBytes,
    maxChannelsPerConnection: config.maxChannelsPerConnection,
  };
  const eventIds = new IdGenerator();
  const broker = new MemoryBroker();
  const presence = new MemoryPresence();
  const link = new LinkServer({
    broker,
    presence,
    graceMs: config.edgeGraceMs,
    eventIds,
    onError: (err, context) => log.warn({ err, context }, "link error"),
    onEdge: (edgeId, connected) => log.info({ edgeId, connected }, connected ? "edge connected" : "edge disconnected"),
  });
  const linkAddress = await link.listen(config.linkPort, config.linkHost);

  // The API's own view of the hub: it publishes and reads presence; it is not an edge.
  const node = broker.attach(() => {}, false);
  const service = createRealtimeService({
    broker: node,
    presence: presence.view("api"),
    limits,
    eventIds,
    watchers: (handler) => broker.attach(handler, false),
  });

  const server = new grpc.Server({
    "grpc.max_receive_message_length": config.maxPayloadBytes + REQUEST_OVERHEAD_BYTES,
  });
  const shutdown = new AbortController();
  const health = createHealth();
  health.set(Realtime.typeName, ServingStatus.SERVING);
  addService(server, health.service, health.impl, { shutdownSignal: shutdown.signal });
  addReflection(server, [Realtime, health.service], { shutdownSignal: shutdown.signal });
  addService(server, Realtime, service, {
    shutdownSignal: shutdown.signal,
    interceptHandler: async (ctx, next) => {
      try {
        await next();
      } catch (err) {
        log.debug({ method: ctx.method.name, err }, "call failed");
        throw err;
      }
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${bracket(config.grpcHost)}:${config.grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  // The same service over Connect and gRPC-Web, with the dashboard at /.
  const http = await startHttpServer({
    host: config.httpHost,
    port: config.httpPort,
    services: [
      serviceEntry(Realtime, service),
      serviceEntry(health.service, health.impl),
    ],
    readMaxBytes: readMaxBytesFor(config.maxPayloadBytes, REQUEST_OVERHEAD_BYTES),
    corsOrigins: config.corsOrigins,
    fallback: createDashboardHandler(),
    onError: (err, method) => log.debug({ method, err }, "call failed"),
  });
  return {
    addresses: { grpc: `${bracket(config.grpcHost)}:${grpcPort}`, link: `${bracket(linkAddress.address)}:${linkAddress.port}`, http: http.address },
    async stop() {
      health.set("", ServingStatus.NOT_SERVING);
      health.set(Realtime.typeName, ServingStatus.NOT_SERVING);
      const httpStopped = http.stop();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          shutdown.abort();
          server.forceShutdown();
          resolve();
        }, API_SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await httpStopped;
      node.close();
      await link.close();
    },
  };
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
