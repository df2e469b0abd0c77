/**
 * RealtimeClient's options, each with its default declared here once.
 */
import { DEFAULT_RECONNECT_INITIAL_DELAY_MS, DEFAULT_RECONNECT_MAX_DELAY_MS, checkBackoffOptions } from "./backoff.js";
import { jsonEncoding, type ClientEncoding } from "./codec.js";

/** How long a call waits for its reply, counted from the call (queueing included). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long the SDK waits from opening a socket to the edge's `connected` frame. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Calls made while not connected that wait for the connection; more are rejected. */
export const DEFAULT_MAX_QUEUED_REQUESTS = 100;
/**
 * The default encoding: JSON, which needs nothing of protobuf-es (the
 * binary encoding, protoEncoding of `@switchboard/client/proto`, does, so
 * it is chosen by importing it).
 */
export const DEFAULT_ENCODING = "json";

/**
 * The part of a WebSocket the SDK uses. The browser's WebSocket and the
 * `ws` package's both fit. Handler events are typed loosely because the two
 * declare different event classes; the SDK reads only `data`, `code` and
 * `reason` from them.
 */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((event: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((event: any) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the browser's, or `ws`'s default export. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** How the SDK reconnects after a connection drops. */
export interface ReconnectOptions {
  /** The ceiling of the first delay, in ms; it doubles per attempt (full jitter). Default 500. */
  initialDelayMs?: number;
  /** The largest delay ceiling, in ms. Default 30 000. */
  maxDelayMs?: number;
  /** Attempts after a disconnect before giving up; undefined (the default) is unlimited. */
  maxAttempts?: number;
}

/** The options of {@link RealtimeClient}. Only `url` is required. */
export interface RealtimeClientOptions {
  /** The edge's WebSocket URL, e.g. "ws://127.0.0.1:8090". Its query string is kept. */
  url: string;
  /**
   * "json" (the default: text frames, readable in devtools) or
   * protoEncoding from `@switchboard/client/proto` (binary frames: smaller,
   * and bytes are not base64-encoded; it brings protobuf-es's runtime,
   * about 88 KB minified, into a bundle, which is why it is imported
   * separately). The string "proto" is refused, saying so.
   */
  encoding?: "json" | ClientEncoding;
  /**
   * The connection's default echo: whether this client receives its own
   * events and system events. Undefined (the default) leaves it to the
   * edge, which defaults to true. Each call's `echo` argument overrides it.
   */
  echo?: boolean;
  /**
   * The client's token (a JWT), sent as the `token` query parameter of
   * every (re)connect: browsers cannot set headers on a WebSocket. A
   * function is called before each attempt, so that a reconnect (after
   * 4003 TokenExpired, say) presents a fresh token; if it throws or
   * rejects, the attempt counts as failed. Undefined (the default): connect
   * anonymously. With a fixed string, an expired token makes every
   * reconnect fail (the edge refuses the upgrade) until close().
   */
  token?: string | (() => string | Promise<string>);
  /**
   * The WebSocket class. Defaults to globalThis.WebSocket; Node 20 has
   * none, so pass `ws`'s: `import WebSocket from "ws"`.
   */
  WebSocket?: WebSocketConstructor;
  /** Reconnect pacing, or false to never reconnect. Default: on, 500 ms to 30 s, unlimited. */
  reconnect?: ReconnectOptions | false;
  /** Reply timeout per call, in ms, counted from the call; 0 disables it. Default 10 000. */
  requestTimeoutMs?: number;
  /**
   * Time allowed from opening a socket to the edge's `connected` frame, in
   * ms; past it the attempt counts as a dropped connection. 0 disables it.
   * Default 10 000.
   */
  connectTimeoutMs?: number;
  /**
   * How many calls made while not connected wait for the connection; the
   * next is rejected with RESOURCE_EXHAUSTED. 0 rejects every call made
   * while not connected (UNAVAILABLE). Default 100.
   */
  maxQueuedRequests?: number;
  /** Whether the constructor calls open(). Default true. */
  autoOpen?: boolean;
  /**
   * Whether a reconnect recovers what was missed. On (the default), the SDK
   * keeps the last position it saw in each channel and re-joins with it:
   * the edge replays every event of the channel published meanwhile, in
   * order and once, before the client is open again; when it cannot (the
   * history no longer holds them), the SDK emits channel:resync. false:
   * re-join without a position; the events of the time away are lost,
   * without channel:resync (which still fires when the edge sends Resync
   * while connected). Default true.
   */
  recover?: boolean;
}

/** Options with every default applied. */
export interface ResolvedOptions {
  url: string;
  token: string | (() => string | Promise<string>) | undefined;
  encoding: ClientEncoding;
  WebSocket: WebSocketConstructor;
  reconnect: { initialDelayMs: number; maxDelayMs: number; maxAttempts: number } | false;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  maxQueuedRequests: number;
  autoOpen: boolean;
  recover: boolean;
}

/**
 * Applies the defaults and checks every option; throws a TypeError naming
 * the option and the rule, so a bad option fails at construction, not at
 * the first reconnect.
 */
export function resolveOptions(options: RealtimeClientOptions): ResolvedOptions {
  if (options === null || typeof options !== "object")
    throw new TypeError("options must be an object with at least `url`");
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(`url ${JSON.stringify(options.url)} is not an absolute URL`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(`url must start with ws:// or wss://, got ${JSON.stringify(options.url)}`);
  }
  if (options.echo !== undefined) url.searchParams.set("echo", String(Boolean(options.echo)));
  // Presence changes coalesced per channel, in the compact form (docs/protocol.md "Presence
  // frames"); the SDK emits one event per change either way. An edge of a version before the
  // compact form refuses the connection (HTTP 400): upgrade edges before clients, or pass
  // ?presence=batch in the url.
  if (!url.searchParams.has("presence")) url.searchParams.set("presence", "compact");
  // Several events in one frame when the edge batches writes (docs/protocol.md "Events frames"); one emit each.
  if (!url.searchParams.has("events")) url.searchParams.set("events", "batch");

  const encoding = resolveEncoding(options.encoding ?? DEFAULT_ENCODING);

  const WebSocketCtor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof WebSocketCtor !== "function") {
    throw new TypeError(
      "there is no global WebSocket (Node 20 has none): pass one as the `WebSocket` option, e.g. the `ws` package's default export",
    );
  }

  let reconnect: ResolvedOptions["reconnect"] = false;
  if (options.reconnect !== false) {
    const r = options.reconnect ?? {};
    reconnect = {
      initialDelayMs: r.initialDelayMs ?? DEFAULT_RECONNECT_INITIAL_DELAY_MS,
      maxDelayMs: r.maxDelayMs ?? Math.max(DEFAULT_RECONNECT_MAX_DELAY_MS, r.initialDelayMs ?? 0),
      maxAttempts: r.maxAttempts ?? Infinity,
    };
    checkBackoffOptions(reconnect);
    if (!(reconnect.maxAttempts >= 0)) throw new TypeError(`reconnect.maxAttempts must be >= 0, got ${r.maxAttempts}`);
  }

  if (url.searchParams.has("token"))
    throw new TypeError("pass the token as the `token` option, not in url: the SDK sets it on every connect");
  const token = options.token;
  if (token !== undefined && typeof token !== "function" && (typeof token !== "string" || token === "")) {
    throw new TypeError("token must be a non-empty string or a function that returns one");
  }

  return {
    url: url.toString(),
    token,
    encoding,
    WebSocket: WebSocketCtor,
    reconnect,
    requestTimeoutMs: nonNegative("requestTimeoutMs", options.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS),
    connectTimeoutMs: nonNegative("connectTimeoutMs", options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    maxQueuedRequests: nonNegative("maxQueuedRequests", options.maxQueuedRequests, DEFAULT_MAX_QUEUED_REQUESTS),
    autoOpen: options.autoOpen ?? true,
    recover: options.recover ?? true,
  };
}

function resolveEncoding(encoding: unknown): ClientEncoding {
  if (encoding === "json") return jsonEncoding;
  if (encoding === "proto")
    throw new TypeError(
      'encoding "proto" needs protobuf-es, which the SDK loads only on request: import { protoEncoding } from "@switchboard/client/proto" and pass encoding: protoEncoding',
    );
  const e = encoding as Partial<ClientEncoding> | null;
  if (
    e === null ||
    typeof e !== "object" ||
    typeof e.subprotocol !== "string" ||
    typeof e.encodeClientFrame !== "function" ||
    typeof e.decodeServerFrame !== "function"
  )
    throw new TypeError(
      `encoding must be "json" or protoEncoding (from "@switchboard/client/proto"), got ${typeof encoding === "string" ? JSON.stringify(encoding) : typeof encoding}`,
    );
  return e as ClientEncoding;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) throw new TypeError(`${name} must be a finite number >= 0, got ${value}`);
  return value;
}
