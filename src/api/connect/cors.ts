/**
 * CORS for the Connect/gRPC-Web port (https://fetch.spec.whatwg.org/#http-cors-protocol),
 * with connect's own lists of the headers its protocols send and read.
 */
import { cors as connectCors } from "@connectrpc/connect";
import type { IncomingMessage, ServerResponse } from "node:http";

/** How long a browser may cache a preflight answer, in seconds. */
export const CORS_MAX_AGE_SECONDS = 7200;

/** Request headers a browser may send: connect's, plus authorization for tokens. */
const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization"].join(", ");
const ALLOWED_METHODS = connectCors.allowedMethods.join(", ");
const EXPOSED_HEADERS = connectCors.exposedHeaders.join(", ");

/** What the server does with a request after {@link applyCors}. */
export type CorsOutcome = "continue" | "answered";

/**
 * The CORS policy of a comma-separated list of origins (REALTIME_CORS_ORIGINS):
 * "*" allows any origin; the server's own origin is always allowed (the
 * dashboard it serves). Decisions:
 * - an allowed origin gets Access-Control-Allow-Origin (its own value, never
 *   "*", with Vary: Origin) and the connect/gRPC-Web headers exposed;
 * - a preflight (OPTIONS with Access-Control-Request-Method) is answered
 *   here: 204 with the methods and headers for an allowed origin, 403 and no
 *   grant otherwise;
 * - any other request with an Origin that is not allowed is refused with 403
 *   before it reaches a handler, so a page on another site cannot even
 *   trigger a side effect (Send) with a "simple" request it cannot read.
 * Requests without an Origin (curl, backends) are not CORS and pass.
 */
export function createCors(origins: string): (req: IncomingMessage, res: ServerResponse) => CorsOutcome {
  const list = origins
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  const any = list.includes("*");
  const allowed = new Set(list.map((o) => o.toLowerCase()));
  const allows = (origin: string, host: string | undefined) => {
    const o = origin.toLowerCase();
    if (any || allowed.has(o)) return true;
    return host !== undefined && (o === `http://${host.toLowerCase()}` || o === `https://${host.toLowerCase()}`);
  };
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined) return "continue";
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    res.setHeader("Vary", "Origin");
    if (!allows(origin, req.headers.host)) {
      const body = `origin ${origin} is not allowed: add it to REALTIME_CORS_ORIGINS\n`;
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return "answered";
    }
    res.setHeader("Access-Control-Allow-Origin", origin);
    if (preflight) {
      res.writeHead(204, {
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": String(CORS_MAX_AGE_SECONDS),
      });
      res.end();
      return "answered";
    }
    res.setHeader("Access-Control-Expose-Headers", EXPOSED_HEADERS);
    return "continue";
  };
}
