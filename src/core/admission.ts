/**
 * Admission: whether a request to connect becomes a connection, the same for
 * every transport. The connection policy (connections.ts) runs it; a
 * transport answers a refusal before its handshake completes, with the
 * refusal's HTTP status and message: a refused client never gets a
 * connection. The checks of tokens, Origin and Host are written in
 * src/auth/ and injected (AdmissionOptions); the core does not import them.
 *
 * The order of the checks (the first that fails is the answer):
 *   1. the edge is shutting down                        503 shutdown
 *   2. the Host header (DNS rebinding guard)            403 origin
 *   3. the Origin header (browser pages)                403 origin
 *   4. the edge has lost the rest of the service        503 unavailable
 *   5. the edge holds its most connections              503 limit
 *   6. the transport's own handshake rules (e.g. a
 *      WebSocket subprotocol it does not speak)        400 protocol
 *   7. the request's options (echo, presence, events)   400 protocol
 *   8. authentication (the token)                       the authenticator's
 *                                                        status, 401 by default
 *   9. the edge began shutting down meanwhile           503 shutdown
 * Every refusal is counted under its reason (Observer.connectionRefused),
 * except the requests whose client went away while they were authenticated:
 * those are neither refused nor admitted.
 */
import type { PresenceForm } from "./edge.js";
import type { Identity } from "./identity.js";
import type { RefusalReason } from "./observer.js";

/**
 * What admission reads of a request to connect: its headers, by lowercase
 * name, and its URL's path and query. An http.IncomingMessage fits, whatever
 * the transport that received it.
 */
export interface ConnectRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly url?: string;
}

/**
 * A refused request: the HTTP status a transport answers with, the reason
 * it is counted under, and a one-line message that names what to change.
 */
export interface Refusal {
  readonly status: number;
  readonly reason: RefusalReason;
  readonly message: string;
}

/** The outcome of admission (ConnectionPolicy.admit). */
export type Admission =
  | {
      readonly admitted: true;
      /** Who the connection is: its token's identity, or ANONYMOUS. */
      readonly identity: Identity;
      /** The connection's default for echo (its own events), from the request. */
      readonly echo: boolean;
      /** How it gets system events (presence=single, batch or compact): see PresenceForm. */
      readonly presence: PresenceForm;
      /**
       * It reads events frames (events=batch): the transport may pack its
       * events of one write delay into one frame (REALTIME_WRITE_BATCH).
       */
      readonly eventBatches: boolean;
    }
  /** refusal undefined: the client went away while it was authenticated; nothing to answer. */
  | { readonly admitted: false; readonly refusal: Refusal | undefined };

/** The rules of admission, injected by the role that starts the edge. Each absent: no such check. */
export interface AdmissionOptions {
  /**
   * Who the request's token says it is (auth/client-auth.ts). A rejection
   * with an error that has a numeric `status` (AuthRefusal) is answered with
   * that status and the error's message; any other with 401. Absent: every
   * connection is anonymous.
   */
  authenticate?: (request: ConnectRequest) => Promise<Identity>;
  /**
   * Whether a browser page of this Origin (undefined: no browser) may
   * connect to this Host (auth/browser-guards.ts createOriginCheck); others
   * get 403 naming REALTIME_WS_ORIGINS.
   */
  origins?: (origin: string | undefined, host: string | undefined) => boolean;
  /**
   * Whether a request with this Host header may be served: the DNS rebinding
   * guard of an edge without token keys (auth/browser-guards.ts
   * createHostCheck); others get 403 naming REALTIME_ALLOWED_HOSTS.
   */
  hosts?: (host: string | undefined) => boolean;
  /** Most connections, those being authenticated included; more get 503. */
  maxConnections?: number;
}

/** What admission reads of the edge's state. */
export interface AdmissionState {
  readonly closing: boolean;
  /** Set while the edge refuses for an outage: how long the backend had been down (REALTIME_OUTAGE_CLOSE_MS). */
  readonly unavailableAfterMs: number | undefined;
  /** Open connections plus those being authenticated. */
  readonly connections: number;
}

export const SHUTTING_DOWN: Refusal = {
  status: 503,
  reason: "shutdown",
  message: "this edge is shutting down: connect again (to another edge) after a short delay",
};

/**
 * Checks 1 to 7 (see the module comment): the refusal, or the request's
 * echo default, presence mode and events mode. handshake is the transport's own refusal of the request, if
 * any (check 6).
 */
export function screen(
  request: ConnectRequest,
  options: AdmissionOptions,
  state: AdmissionState,
  handshake: Refusal | undefined,
):
  | { readonly refusal: Refusal }
  | {
      readonly refusal?: undefined;
      readonly echo: boolean;
      readonly presence: PresenceForm;
      readonly eventBatches: boolean;
    } {
  if (state.closing) return { refusal: SHUTTING_DOWN };
  const host = header(request, "host");
  const origin = header(request, "origin");
  if (options.hosts && !options.hosts(host))
    return refuse(
      403,
      "origin",
      `Host ${JSON.stringify(host)} is not allowed: this edge verifies no tokens, so it answers only connections ` +
        "addressed to localhost, an IP address or a name in REALTIME_ALLOWED_HOSTS (a guard against DNS rebinding): " +
        "add the name to REALTIME_ALLOWED_HOSTS, or configure a token key",
    );
  if (options.origins && !options.origins(origin, host))
    return refuse(
      403,
      "origin",
      `origin ${origin} is not allowed to connect: add it to REALTIME_WS_ORIGINS (comma-separated origins, or *)`,
    );
  if (state.unavailableAfterMs !== undefined)
    return refuse(
      503,
      "unavailable",
      `this edge has lost the rest of the service for more than ${state.unavailableAfterMs} ms ` +
        "(REALTIME_OUTAGE_CLOSE_MS): connect to another edge or retry later",
    );
  const max = options.maxConnections;
  if (max !== undefined && state.connections >= max)
    return refuse(
      503,
      "limit",
      `this edge holds ${max} connections, its limit (REALTIME_MAX_CONNECTIONS): connect to another edge or retry later`,
    );
  if (handshake) return { refusal: handshake };
  const query = new URL(request.url ?? "/", "http://edge").searchParams;
  const echo = query.get("echo");
  if (echo !== null && echo !== "true" && echo !== "false")
    return refuse(400, "protocol", `query parameter echo must be true or false, not ${JSON.stringify(echo)}`);
  const presence = query.get("presence");
  if (presence !== null && presence !== "single" && presence !== "batch" && presence !== "compact")
    return refuse(
      400,
      "protocol",
      `query parameter presence must be single, batch or compact, not ${JSON.stringify(presence)}`,
    );
  const events = query.get("events");
  if (events !== null && events !== "single" && events !== "batch")
    return refuse(400, "protocol", `query parameter events must be single or batch, not ${JSON.stringify(events)}`);
  return { echo: echo !== "false", presence: presence ?? "single", eventBatches: events === "batch" };
}

/** Check 8 failed: the refusal for what the authenticator rejected with. */
export function authRefusal(err: unknown): Refusal {
  const status = (err as { status?: unknown } | undefined)?.status;
  return {
    status: typeof status === "number" ? status : 401,
    reason: "auth",
    message: err instanceof Error ? err.message : "unauthorized",
  };
}

function refuse(status: number, reason: RefusalReason, message: string): { refusal: Refusal } {
  return { refusal: { status, reason, message } };
}

/** A header's value (Node joins or drops repeated Host and Origin headers: the first is the one). */
function header(request: ConnectRequest, name: string): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
