/**
 * The operator endpoints every role serves over plain HTTP, as one handler
 * any node:http server can call first (the edge's WebSocket server, the
 * API's admin server, a Connect server):
 *   GET /metrics  Prometheus text exposition (format 0.0.4)
 *   GET /healthz  200 while the process is alive and its event loop turns
 *   GET /readyz   200 when ready for traffic; 503 with the reason while
 *                 starting, draining, or cut off from a dependency
 * Query strings are ignored; HEAD is answered like GET without a body.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Metrics } from "./metrics.js";
import type { Readiness } from "./readiness.js";

export const OPS_PATHS = ["/metrics", "/healthz", "/readyz"] as const;

export interface OpsHandlerOptions {
  metrics: Metrics;
  readiness: Readiness;
}

/** Returns true when it answered the request (the path was one of OPS_PATHS). */
export type OpsHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export function createOpsHandler({ metrics, readiness }: OpsHandlerOptions): OpsHandler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (!(OPS_PATHS as readonly string[]).includes(path!)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      reply(req, res, 405, "text/plain; charset=utf-8", `${req.method} is not allowed: use GET\n`, {
        allow: "GET, HEAD",
      });
      return true;
    }
    switch (path) {
      case "/healthz":
        reply(req, res, 200, "text/plain; charset=utf-8", "ok\n");
        break;
      case "/readyz": {
        const { ready, reason } = readiness.status();
        reply(req, res, ready ? 200 : 503, "text/plain; charset=utf-8", ready ? "ready\n" : `not ready: ${reason}\n`);
        break;
      }
      case "/metrics":
        metrics.scrape().then(
          (text) => reply(req, res, 200, metrics.registry.contentType, text),
          (err: unknown) =>
            reply(req, res, 500, "text/plain; charset=utf-8", `collecting metrics failed: ${(err as Error).message}\n`),
        );
        break;
    }
    return true;
  };
}

function reply(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(status, {
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    ...extra,
  });
  res.end(req.method === "HEAD" ? undefined : body);
}
