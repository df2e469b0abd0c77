/**
 * The Observer seam: what the core reports about its own work, so that an
 * operator can see it. The core calls it and knows nothing of Prometheus;
 * src/metrics/ implements it with prom-client. Every argument comes from a
 * closed set, so no implementation can grow a label per channel or per
 * connection.
 *
 * Contract: every method is cheap, synchronous and never throws; the core
 * calls them on its hot paths (one call per fan-out, not per recipient).
 * Levels (how many connections, channels, members) are not reported here:
 * the metrics read them from the Edge and the hub when they are scraped.
 */

/** Why a client connection ended; one closed set, derived from the close code. */
export type DisconnectReason =
  /** The client closed normally (1000, 1005) or went away itself (1001 from the client). */
  | "client"
  /** The connection dropped without a close frame (1006). */
  | "abnormal"
  /** The edge shut down or restarted (1001 from the edge, 1012, 4000). */
  | "shutdown"
  /** The client read too slowly and its outbound queue overflowed (4001). */
  | "slow_consumer"
  /** The client did not answer heartbeats in time (4002). */
  | "heartbeat"
  /** The token expired (4003). */
  | "auth"
  /** The backend closed it (realtime.v1 Disconnect: 4005, 4505). */
  | "backend"
  /** A limit was exceeded: a message in too many parts (1008), frame too big (1009), error budget (4503). */
  | "limit"
  /** The client broke the protocol (1002, 1007; 1003 from a client). */
  | "protocol"
  /** The edge lost the rest of the service (4004, 1013). */
  | "unavailable"
  /** A code outside the known set (1011 from a client or a proxy, for example). */
  | "error";

/** Every DisconnectReason, for implementations that pre-register label values. */
export const DISCONNECT_REASONS: readonly DisconnectReason[] = [
  "client",
  "abnormal",
  "shutdown",
  "slow_consumer",
  "heartbeat",
  "auth",
  "backend",
  "limit",
  "protocol",
  "unavailable",
  "error",
];

/**
 * The reason for a close code (close-codes.ts). `byEdge` tells whether the
 * edge chose the code: a 1001 from the client means it navigated away, a
 * 1001 from the edge means the edge is going away.
 */
export function disconnectReason(code: number, byEdge: boolean): DisconnectReason {
  switch (code) {
    case 1000:
    case 1005:
      return byEdge ? "shutdown" : "client";
    case 1001:
      return byEdge ? "shutdown" : "client";
    case 1006:
      return "abnormal";
    case 1012:
    case 4000:
      return "shutdown";
    case 4001:
      return "slow_consumer";
    case 4002:
      return "heartbeat";
    case 4003:
      return "auth";
    case 4005:
    case 4505:
      return "backend";
    case 1008:
    case 1009:
    case 4503:
      return "limit";
    case 1002:
    case 1003:
    case 1007:
      return "protocol";
    case 4004:
    case 1013:
      return "unavailable";
    default:
      return "error";
  }
}

/** Why a frame meant for a client was not written; one closed set. */
export type DropReason =
  /** The connection was closing or closed when the frame was due. */
  | "closed"
  /** The connection's outbound queue was full (the client reads too slowly). */
  | "slow_consumer"
  /** The hub dropped an edge's link because the edge fell too far behind. */
  | "edge_backpressure";

/** A hook of realtime.v1.Hooks (core/hooks.ts). */
export type HookName = "connect" | "join" | "send";
/** How a hook call ended: its answer, or why there was none to use (a failed call, an invalid answer). */
export type HookOutcome = "allow" | "deny" | "rewrite" | "error" | "invalid";
/** Every HookName and HookOutcome, for implementations that pre-register label values. */
export const HOOK_NAMES: readonly HookName[] = ["connect", "join", "send"];
export const HOOK_OUTCOMES: readonly HookOutcome[] = ["allow", "deny", "rewrite", "error", "invalid"];

/** Why a request to connect was refused before it became a connection (admission.ts); one closed set. */
export type RefusalReason =
  /** No valid token (HTTP 401/403). */
  | "auth"
  /** The edge holds its most connections (HTTP 503). */
  | "limit"
  /** The edge is shutting down (HTTP 503). */
  | "shutdown"
  /** A bad request: unknown subprotocol, bad query (HTTP 400). */
  | "protocol"
  /** The edge has lost the rest of the service for too long (HTTP 503). */
  | "unavailable"
  /** A browser page from an origin not allowed, or a Host not allowed: DNS rebinding (HTTP 403). */
  | "origin";

/** Every RefusalReason, for implementations that pre-register label values. */
export const REFUSAL_REASONS: readonly RefusalReason[] = [
  "auth",
  "limit",
  "shutdown",
  "protocol",
  "unavailable",
  "origin",
];

/** The kinds of client frames counted; anything else is "invalid" or "other". */
export type MessageInKind =
  "join" | "leave" | "update_profile" | "send" | "broadcast" | "get_members" | "ping" | "other" | "invalid";

/** What became of a message the tap (core/tap.ts) was asked to copy: copied, or skipped past its rate. */
export type TapOutcome = "copied" | "skipped";

/** The shared backends whose reachability is reported. */
export type Backend = "link" | "redis";

export interface Observer {
  /** A client connection was accepted, speaking `encoding` (transport.ts Encoding). */
  connectionOpened(encoding: string): void;
  /** A client connection ended. */
  connectionClosed(reason: DisconnectReason): void;
  /** A request to connect (a WebSocket upgrade) was refused before a connection opened. */
  connectionRefused(reason: RefusalReason): void;
  /** A frame arrived from a client. */
  messageIn(kind: MessageInKind): void;
  /** A client command was answered with an error; `code` is its errors.ts Code (a gRPC code number). */
  commandFailed(code: number): void;
  /** Frames were written to clients: `count` replies, or `count` copies of one event. */
  messageOut(kind: "event" | "reply", count: number): void;
  /** An edge received one publication to fan out to its local connections. */
  publicationReceived(): void;
  /**
   * An edge wrote a live publication the API accepted (one with an accept
   * time, not read from history) to its connections, `seconds` after the
   * API accepted it (never negative). Once per publication and edge, not
   * per recipient; broadcast: the publication was for every connection.
   */
  delivered(broadcast: boolean, seconds: number): void;
  /** `count` frames meant for clients were not written. */
  dropped(reason: DropReason, count: number): void;
  /** The hub routed one publication ("" channel = broadcast) and handed it to `edges` edges. */
  published(broadcast: boolean, edges: number): void;
  /** A shared backend became reachable (up) or not. */
  backendState(backend: Backend, up: boolean): void;
  /** A hook call ended with outcome (core/hooks.ts). */
  hookCalled(hook: HookName, outcome: HookOutcome): void;
  /** A hook call took seconds, answered or not. */
  hookTimed(hook: HookName, seconds: number): void;
  /** The message tap copied `count` messages, or skipped them past its rate (core/tap.ts). */
  tapped(outcome: TapOutcome, count: number): void;
}

/** An Observer that does nothing: the default wherever none is given. */
export const NOOP_OBSERVER: Observer = {
  connectionOpened() {},
  connectionClosed() {},
  connectionRefused() {},
  messageIn() {},
  commandFailed() {},
  messageOut() {},
  publicationReceived() {},
  delivered() {},
  dropped() {},
  published() {},
  backendState() {},
  hookCalled() {},
  hookTimed() {},
  tapped() {},
};
