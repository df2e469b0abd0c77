/**
 * The API's gRPC port: grpc-js over HTTP/2, serving the services (by
 * adapter.ts) and server reflection describing them. The HTTP port
 * (src/api/connect/server.ts) takes the same service entries, so both
 * serve one implementation with the same interceptors.
 */
import * as grpc from "@grpc/grpc-js";
import { GRPC_MAX_CONCURRENT_STREAMS, GRPC_MAX_CONNECTION_AGE_GRACE_MS } from "../../core/limits.js";
import type { ServiceEntry } from "../service-entry.js";
import { addService } from "./adapter.js";
import { addReflection } from "./reflection.js";

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The services and, for each, its interceptor (src/api/service-entry.ts). */
  services: readonly ServiceEntry[];
  /** Largest request message, in bytes (grpc.max_receive_message_length); larger is RESOURCE_EXHAUSTED. */
  maxReceiveMessageBytes: number;
  /** Ping an idle connection after this long (grpc.keepalive_time_ms). */
  keepaliveTimeMs: number;
  /** Close a connection whose ping is not answered within this (grpc.keepalive_timeout_ms). */
  keepaliveTimeoutMs: number;
  /**
   * Send GOAWAY to a connection this old, then let its calls finish for
   * GRPC_MAX_CONNECTION_AGE_GRACE_MS (grpc.max_connection_age_ms). 0: never.
   */
  maxConnectionAgeMs: number;
  /** Serve TLS with this PEM certificate chain and key. Default: plaintext (TLS in front). */
  tls?: { cert: Buffer; key: Buffer };
}

export interface GrpcServerHandle {
  /** host:port it listens on (the configured host, the bound port). */
  address: string;
  /**
   * Ends streams (UNAVAILABLE: they never end on their own), lets unary
   * calls finish for up to `graceMs`, then cancels what is left.
   */
  stop(graceMs: number): Promise<void>;
}

/** Starts the gRPC server; resolves once it listens, rejects with grpc-js's error when it cannot bind. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": options.maxReceiveMessageBytes,
    "grpc.keepalive_time_ms": options.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs,
    "grpc.max_concurrent_streams": GRPC_MAX_CONCURRENT_STREAMS,
    ...(options.maxConnectionAgeMs > 0
      ? {
          "grpc.max_connection_age_ms": options.maxConnectionAgeMs,
          "grpc.max_connection_age_grace_ms": GRPC_MAX_CONNECTION_AGE_GRACE_MS,
        }
      : {}),
  });
  const shutdown = new AbortController();
  for (const { service, impl, ...serviceOptions } of options.services) {
    addService(server, service, impl as never, { ...serviceOptions, shutdownSignal: shutdown.signal });
  }
  addReflection(
    server,
    options.services.map((s) => s.service),
    { shutdownSignal: shutdown.signal },
  );
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: options.tls.cert, private_key: options.tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  const host = bracket(options.host);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${options.port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    address: `${host}:${port}`,
    async stop(graceMs) {
      shutdown.abort();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
