/**
 * The API's HTTP port: the Host check first (while it has no API keys),
 * then CORS, then the RPCs (Connect and gRPC-Web, by
 * adapter.ts), then whatever else the port serves (the dashboard). HTTP/1.1,
 * as browsers speak it to a plain-http origin; gRPC proper stays on the
 * gRPC port (grpc-js, HTTP/2: src/api/grpc/server.ts, which takes the same
 * service entries).
 */
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { ServiceEntry } from "../service-entry.js";
import { createConnectHandler } from "./adapter.js";
import { createCors } from "./cors.js";

/** How long stop() lets calls in flight finish before it closes their connections. */
export const HTTP_SHUTDOWN_GRACE_MS = 5_000;

export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The services and, for each, its interceptor (src/api/service-entry.ts). */
  services: readonly ServiceEntry[];
  /** See ConnectHandlerOptions.readMaxBytes. */
  readMaxBytes: number;
  /** REALTIME_CORS_ORIGINS: comma-separated origins, or *. */
  corsOrigins: string;
  /**
   * Host headers a request may carry: the DNS rebinding guard of an API
   * without keys (auth/browser-guards.ts); others get 403 naming
   * REALTIME_ALLOWED_HOSTS before anything else runs. Default: any.
   */
  hosts?: (host: string | undefined) => boolean;
  /** Answers what is not an RPC (GET / and the dashboard's assets). Default: 404. */
  fallback?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Serve HTTPS with this PEM certificate chain and key. Default: plain HTTP (TLS in front). */
  tls?: { cert: Buffer; key: Buffer };
}

export interface HttpServerHandle {
  /** host:port it listens on. */
  address: string;
  /** Ends streams (UNAVAILABLE), lets unary calls finish, then closes every connection. */
  stop(): Promise<void>;
}

/** Starts the HTTP server; resolves once it listens. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const shutdown = new AbortController();
  const cors = createCors(options.corsOrigins);
  const rpc = createConnectHandler(options.services, {
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: shutdown.signal,
    fallback: options.fallback,
  });
  const onRequest: RequestListener = (req, res) => {
    if (options.hosts && !options.hosts(req.headers.host)) return refuseHost(req, res);
    if (cors(req, res) === "answered") return;
    rpc(req, res);
  };
  const server = options.tls ? createHttpsServer(options.tls, onRequest) : createServer(onRequest);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    address: `${address.includes(":") ? `[${address}]` : address}:${port}`,
    async stop() {
      shutdown.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), HTTP_SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(timer);
    },
  };
}

function refuseHost(req: IncomingMessage, res: ServerResponse): void {
  const body =
    `Host ${JSON.stringify(req.headers.host)} is not allowed: this API has no API keys, so it answers only requests ` +
    "addressed to localhost, an IP address or a name in REALTIME_ALLOWED_HOSTS (a guard against DNS rebinding): " +
    "add the name to REALTIME_ALLOWED_HOSTS, or set REALTIME_API_KEYS\n";
  res.writeHead(403, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
