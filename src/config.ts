import { readFileSync } from "node:fs";
import {
  DEFAULT_EDGE_GRACE_MS,
  DEFAULT_MAX_CHANNELS_PER_CONNECTION,
  DEFAULT_MAX_BATCH_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_PROFILE_BYTES,
  DEFAULT_ERROR_BUDGET,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HEARTBEAT_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS_PER_EDGE,
  DEFAULT_MAX_OUTBOUND_BYTES,
  DEFAULT_RATE_LIMIT_BURST,
  DEFAULT_RATE_LIMIT_PER_SECOND,
  DEFAULT_SHUTDOWN_DRAIN_MS,
  DEFAULT_OUTAGE_CLOSE_MS,
  DEFAULT_SHUTDOWN_SPREAD_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  DEFAULT_GRPC_KEEPALIVE_TIME_MS,
  DEFAULT_GRPC_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_WATCH_MAX_STREAMS_PER_KEY,
  MAX_WRITE_DELAY_MS,
} from "./core/limits.js";
import {
  DEFAULT_REDIS_EDGE_TTL_MS,
  DEFAULT_REDIS_PREFIX,
  MAX_REDIS_EDGE_TTL_MS,
  MIN_REDIS_EDGE_TTL_MS,
} from "./redis/limits.js";
import {
  DEFAULT_IDEMPOTENCY_MAX_KEYS,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  MAX_IDEMPOTENCY_WINDOW_MS,
  MIN_IDEMPOTENCY_WINDOW_MS,
} from "./core/idempotency.js";
import {
  DEFAULT_HISTORY_SIZE,
  DEFAULT_HISTORY_TTL_MS,
  MAX_HISTORY_SIZE,
  MAX_HISTORY_TTL_MS,
  parseHistoryRules,
} from "./core/history-rules.js";
import {
  DEFAULT_PRESENCE_EVENTS,
  DEFAULT_PRESENCE_WINDOW_MS,
  MAX_PRESENCE_WINDOW_MS,
  parsePresenceRules,
} from "./core/presence-rules.js";
import { parseApiKeys } from "./auth/api-key-list.js";
import { DEFAULT_HOOK_TIMEOUT_MS } from "./core/hooks.js";
import { GENERATE_SECRET_COMMAND, MIN_HS256_SECRET_LENGTH } from "./auth/secret-command.js";

/**
 * The one configuration schema. Each setting has its environment variable,
 * its default and a line of doc; loadConfig refuses a bad value with a
 * message naming the variable and the rule. The README's configuration
 * table is checked against this list by test/config.test.ts.
 */

interface Setting<T> {
  env: string;
  default: T;
  doc: string;
  /** Which processes read it. */
  roles: readonly ("api" | "edge")[];
  /**
   * The value is a secret (a key, a password, a URL that may hold one):
   * errors and logs name the setting and the rule it broke, never the value
   * nor a part of it, and its parse must not quote the value either.
   */
  secret?: true;
  parse(raw: string): T;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

function integer(min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`must be a whole number from ${min} to ${max}`);
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`must be from ${min} to ${max}`);
    return n;
  };
}
const port = integer(0, 65535);
const text = (raw: string): string => {
  if (raw.trim() === "") throw new Error("must not be empty");
  return raw.trim();
};
const bool = (raw: string): boolean => {
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  throw new Error("must be true or false");
};
const oneOf =
  (values: readonly string[]) =>
  (raw: string): string => {
    const v = raw.trim().toLowerCase();
    if (!values.includes(v)) throw new Error(`must be one of ${values.join(", ")}`);
    return v;
  };
const hostPort = (raw: string): string => {
  const v = raw.trim();
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new Error("must be host:port, for example 127.0.0.1:50052");
  return v;
};

/** A comma-separated list (spaces and empty items dropped) whose every item passes check, or "*". */
const listOf =
  (check: (item: string) => string | undefined) =>
  (raw: string): string => {
    const list = raw
      .split(",")
      .map((o) => o.trim())
      .filter((o) => o !== "");
    for (const item of list) {
      const problem = item === "*" ? undefined : check(item);
      if (problem) throw new Error(`${JSON.stringify(item)} ${problem}`);
    }
    return list.join(",");
  };
const origins = listOf((o) =>
  /^https?:\/\/[^/\s]+$/.test(o) ? undefined : "is not an origin: write scheme://host[:port] with no path, or *",
);
const hostNames = listOf((h) =>
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(h)
    ? undefined
    : "is not a host name: write app.example.com, with no scheme or port, or *",
);

const apiKeyList = (raw: string): string => {
  parseApiKeys(raw);
  return raw.trim();
};
const secret = (raw: string): string => {
  if (raw.length < MIN_HS256_SECRET_LENGTH)
    throw new Error(
      `must be at least ${MIN_HS256_SECRET_LENGTH} characters (generate one with: ${GENERATE_SECRET_COMMAND})`,
    );
  return raw;
};
const channelPrefix = (raw: string): string => {
  const v = raw.trim();
  if (!/^[A-Za-z0-9_\-.:@/=+]{1,64}$/.test(v))
    throw new Error("must be 1 to 64 characters from the channel alphabet A-Z a-z 0-9 _ - . : @ / = +");
  return v;
};

/** A comma-separated list of channel prefixes (spaces and empty items dropped). */
const prefixList = (raw: string): string =>
  raw
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "")
    .map(channelPrefix)
    .join(",");

const redisUrl = (raw: string): string => {
  const v = raw.trim();
  if (!/^rediss?:\/\/[^\s]+$/.test(v))
    throw new Error("must be a Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS");
  return v;
};
const pemFile = (raw: string): string => {
  const path = raw.trim();
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(
      `cannot read ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (!text.includes("-----BEGIN ")) throw new Error(`${JSON.stringify(path)} is not a PEM file (no -----BEGIN line)`);
  return path;
};
const redisPrefix = (raw: string): string => {
  if (!/^[^\s]{1,64}$/.test(raw)) throw new Error("must be 1 to 64 characters without spaces, for example myapp:");
  return raw;
};

const setting = <T>(s: Setting<T>): Setting<T> => s;

export const SETTINGS = {
  grpcHost: setting({
    env: "REALTIME_GRPC_HOST",
    default: "127.0.0.1",
    doc: "Address the gRPC API listens on.",
    roles: ["api"],
    parse: text,
  }),
  grpcPort: setting({
    env: "REALTIME_GRPC_PORT",
    default: 50051,
    doc: "Port of the gRPC API (0 picks a free one).",
    roles: ["api"],
    parse: port,
  }),
  httpHost: setting({
    env: "REALTIME_HTTP_HOST",
    default: "127.0.0.1",
    doc: "Address the API's HTTP server (Connect, gRPC-Web, dashboard) listens on.",
    roles: ["api"],
    parse: text,
  }),
  httpPort: setting({
    env: "REALTIME_HTTP_PORT",
    default: 8080,
    doc: "Port of the API's HTTP server: Connect, gRPC-Web and the dashboard at / (0 picks a free one).",
    roles: ["api"],
    parse: port,
  }),
  corsOrigins: setting({
    env: "REALTIME_CORS_ORIGINS",
    default: "",
    doc: "Browser origins allowed to call the HTTP API besides its own, comma-separated (https://ops.example.com), or * for any.",
    roles: ["api"],
    parse: origins,
  }),
  linkHost: setting({
    env: "REALTIME_LINK_HOST",
    default: "127.0.0.1",
    doc: "Address the API listens on for edges (embedded mode).",
    roles: ["api"],
    parse: text,
  }),
  linkPort: setting({
    env: "REALTIME_LINK_PORT",
    default: 50052,
    doc: "Port the API listens on for edges (0 picks a free one).",
    roles: ["api"],
    parse: port,
  }),
  linkUrl: setting({
    env: "REALTIME_LINK_URL",
    default: "127.0.0.1:50052",
    doc: "Where an edge finds the API's link port, host:port.",
    roles: ["edge"],
    parse: hostPort,
  }),
  linkSecret: setting({
    env: "REALTIME_LINK_SECRET",
    default: "",
    doc: "Secret (32+ characters) edges prove they hold to the API's link, the same on the API and every edge; empty: the link stays on loopback.",
    roles: ["api", "edge"],
    secret: true,
    parse: secret,
  }),
  wsHost: setting({
    env: "REALTIME_WS_HOST",
    default: "127.0.0.1",
    doc: "Address the edge's WebSocket server listens on.",
    roles: ["edge"],
    parse: text,
  }),
  wsPort: setting({
    env: "REALTIME_WS_PORT",
    default: 8090,
    doc: "Port of the edge's WebSocket server (0 picks a free one).",
    roles: ["edge"],
    parse: port,
  }),
  wsOrigins: setting({
    env: "REALTIME_WS_ORIGINS",
    default: "",
    doc: "Browser origins whose pages may connect to an edge besides its own host, comma-separated (https://app.example.com), or * for any; clients that send no Origin (apps, servers) always may.",
    roles: ["edge"],
    parse: origins,
  }),
  allowedHosts: setting({
    env: "REALTIME_ALLOWED_HOSTS",
    default: "",
    doc: "Host names (besides loopback names and IP addresses) that the API's HTTP port answers while it has no API keys, and an edge while it has no token key: a guard against DNS rebinding; comma-separated, or * for any.",
    roles: ["api", "edge"],
    parse: hostNames,
  }),
  maxPayloadBytes: setting({
    env: "REALTIME_MAX_PAYLOAD_BYTES",
    default: DEFAULT_MAX_PAYLOAD_BYTES,
    doc: "Largest event: bytes of its protobuf encoding without the id the service adds (channel, event name, payload).",
    roles: ["api", "edge"],
    parse: integer(1024, 16 * 1024 * 1024),
  }),
  maxBatchBytes: setting({
    env: "REALTIME_MAX_BATCH_BYTES",
    default: DEFAULT_MAX_BATCH_BYTES,
    doc: "Largest SendBatch request in bytes; the API reads no request larger than this or one event at the payload limit.",
    roles: ["api"],
    parse: integer(1024, 64 * 1024 * 1024),
  }),
  maxProfileBytes: setting({
    env: "REALTIME_MAX_PROFILE_BYTES",
    default: DEFAULT_MAX_PROFILE_BYTES,
    doc: "Largest profile, bytes of its protobuf encoding.",
    roles: ["edge"],
    parse: integer(64, 1024 * 1024),
  }),
  maxChannelsPerConnection: setting({
    env: "REALTIME_MAX_CHANNELS_PER_CONNECTION",
    default: DEFAULT_MAX_CHANNELS_PER_CONNECTION,
    doc: "Most channels one connection may be in.",
    roles: ["edge"],
    parse: integer(1, 100_000),
  }),
  watchMaxStreamsPerKey: setting({
    env: "REALTIME_WATCH_MAX_STREAMS_PER_KEY",
    default: DEFAULT_WATCH_MAX_STREAMS_PER_KEY,
    doc: "WatchChannel, WatchStats, WatchLifecycle and WatchMessages streams one API key may hold open at once, over both ports (callers without a key count as one); more get RESOURCE_EXHAUSTED.",
    roles: ["api"],
    parse: integer(1, 1_000_000),
  }),
  idempotencyWindowMs: setting({
    env: "REALTIME_IDEMPOTENCY_WINDOW_MS",
    default: DEFAULT_IDEMPOTENCY_WINDOW_MS,
    doc: "How long after a successful Send, Broadcast or Publish request with an idempotency_key a retry with that key is answered with its result (duplicate: true) instead of being delivered again.",
    roles: ["api"],
    parse: integer(MIN_IDEMPOTENCY_WINDOW_MS, MAX_IDEMPOTENCY_WINDOW_MS),
  }),
  idempotencyMaxKeys: setting({
    env: "REALTIME_IDEMPOTENCY_MAX_KEYS",
    default: DEFAULT_IDEMPOTENCY_MAX_KEYS,
    doc: "Embedded mode: idempotency keys the API remembers at once (about 300 bytes each); past it, requests with a new key get RESOURCE_EXHAUSTED and are not delivered. Redis mode: Redis holds them, each expiring after the window.",
    roles: ["api"],
    parse: integer(1, 100_000_000),
  }),
  historySize: setting({
    env: "REALTIME_HISTORY_SIZE",
    default: DEFAULT_HISTORY_SIZE,
    doc: "Events each channel keeps for recovery and GetHistory (0: none; a channel without history has no positions and costs nothing). Per channel prefix: REALTIME_HISTORY_RULES.",
    roles: ["api", "edge"],
    parse: integer(0, MAX_HISTORY_SIZE),
  }),
  historyTtlMs: setting({
    env: "REALTIME_HISTORY_TTL_MS",
    default: DEFAULT_HISTORY_TTL_MS,
    doc: "How long a channel keeps each event in its history (0: until pushed out by newer ones). A client that reconnects within it recovers what it missed.",
    roles: ["api", "edge"],
    parse: integer(0, MAX_HISTORY_TTL_MS),
  }),
  historyRules: setting({
    env: "REALTIME_HISTORY_RULES",
    default: "",
    doc: "History per channel prefix, overriding the two above: comma-separated prefix=size or prefix=size/ttl_ms, longest prefix first, e.g. chat:=1000/600000,tmp:=0.",
    roles: ["api", "edge"],
    parse: (raw: string): string => {
      parseHistoryRules(raw, 0);
      return raw.trim();
    },
  }),
  presenceEvents: setting({
    env: "REALTIME_PRESENCE_EVENTS",
    default: DEFAULT_PRESENCE_EVENTS,
    doc: "Whether members receive channel:join, channel:leave and channel:update (off: GetMembers, WatchChannel and history still have them). Per channel prefix: REALTIME_PRESENCE_RULES.",
    roles: ["edge"],
    parse: bool,
  }),
  presenceRules: setting({
    env: "REALTIME_PRESENCE_RULES",
    default: "",
    doc: "Presence events per channel prefix, overriding the one above: comma-separated prefix=on or prefix=off, longest prefix first, e.g. lobby:=off,lobby:vip:=on.",
    roles: ["edge"],
    parse: (raw: string): string => {
      parsePresenceRules(raw);
      return raw.trim();
    },
  }),
  presenceWindowMs: setting({
    env: "REALTIME_PRESENCE_WINDOW_MS",
    default: DEFAULT_PRESENCE_WINDOW_MS,
    doc: "How long an edge gathers a channel's presence events before sending them as one presence frame to each member that connected with presence=batch or compact (the SDK does); a channel with many members on the edge gets longer (members / 10,000 seconds when that is longer, up to 1 s); 0: only those that arrive together. Other clients get each at once.",
    roles: ["edge"],
    parse: integer(0, MAX_PRESENCE_WINDOW_MS),
  }),
  logLevel: setting({
    env: "REALTIME_LOG_LEVEL",
    default: "info",
    doc: "Least severe log level written: fatal, error, warn, info, debug, trace or silent.",
    roles: ["api", "edge"],
    parse: oneOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
  }),
  logFormat: setting({
    env: "REALTIME_LOG_FORMAT",
    default: "auto",
    doc: "How log lines on stderr read: json (one JSON object a line, for collectors), text (one human line: time, level, role, message, fields), or auto: text when stderr is a terminal, else json.",
    roles: ["api", "edge"],
    parse: oneOf(["auto", "json", "text"]),
  }),
  lifecycle: setting({
    env: "REALTIME_LIFECYCLE",
    default: true,
    doc: "Whether the service keeps the lifecycle sequence that WatchLifecycle streams (channel occupied and vacated, member joined and left, connection opened and closed, edge lost): one more publish per join, leave and connection, kept for resuming. Set it the same on every node; off, WatchLifecycle is FAILED_PRECONDITION.",
    roles: ["api", "edge"],
    parse: bool,
  }),
  edgeGraceMs: setting({
    env: "REALTIME_EDGE_GRACE_MS",
    default: DEFAULT_EDGE_GRACE_MS,
    doc: "How long the API keeps an unreachable edge's members before removing them.",
    roles: ["api"],
    parse: integer(0, 600_000),
  }),
  allowClientBroadcast: setting({
    env: "REALTIME_ALLOW_CLIENT_BROADCAST",
    default: false,
    doc: "Whether clients may broadcast to every connection (off: only backends broadcast).",
    roles: ["edge"],
    parse: bool,
  }),
  // --- Trust (docs/security.md) ---
  apiKeys: setting({
    env: "REALTIME_API_KEYS",
    default: "",
    doc: "API keys backends must send (authorization: Bearer <key>), comma-separated, each KEY or KEY:scope+scope (publish, presence, control, a method name). Empty: no keys, loopback only.",
    roles: ["api"],
    secret: true,
    parse: apiKeyList,
  }),
  insecure: setting({
    env: "REALTIME_INSECURE",
    default: false,
    doc: "Let the API listen beyond loopback without API keys, and an edge without token keys. Never in production.",
    roles: ["api", "edge"],
    parse: bool,
  }),
  jwtSecret: setting({
    env: "REALTIME_JWT_SECRET",
    default: "",
    doc: "HS256 secret that client tokens are signed with (32+ characters).",
    roles: ["edge"],
    secret: true,
    parse: secret,
  }),
  jwtPublicKeyFile: setting({
    env: "REALTIME_JWT_PUBLIC_KEY_FILE",
    default: "",
    doc: "PEM public key (RSA for RS256, EC P-256 for ES256) that client tokens are signed with.",
    roles: ["edge"],
    parse: text,
  }),
  jwtJwksFile: setting({
    env: "REALTIME_JWT_JWKS_FILE",
    default: "",
    doc: "JSON Web Key Set file of RS256/ES256 keys that client tokens are signed with (picked by kid).",
    roles: ["edge"],
    parse: text,
  }),
  jwtIssuer: setting({
    env: "REALTIME_JWT_ISSUER",
    default: "",
    doc: "Required iss claim of client tokens; empty: not checked.",
    roles: ["edge"],
    parse: text,
  }),
  jwtAudience: setting({
    env: "REALTIME_JWT_AUDIENCE",
    default: "",
    doc: "Required aud claim of client tokens; empty: not checked.",
    roles: ["edge"],
    parse: text,
  }),
  allowAnonymous: setting({
    env: "REALTIME_ALLOW_ANONYMOUS",
    default: false,
    doc: "With token keys set: let clients without a token in, anonymous (public channels only).",
    roles: ["edge"],
    parse: bool,
  }),
  privateChannelPrefix: setting({
    env: "REALTIME_PRIVATE_CHANNEL_PREFIX",
    default: "private:",
    doc: "Channels whose name starts with this need a grant in the client's token (channels claim).",
    roles: ["edge"],
    parse: channelPrefix,
  }),
  allowClientSend: setting({
    env: "REALTIME_ALLOW_CLIENT_SEND",
    default: true,
    doc: "Whether clients may send events to the channels they joined (off: only backends send).",
    roles: ["edge"],
    parse: bool,
  }),
  writeDelayMs: setting({
    env: "REALTIME_WRITE_DELAY_MS",
    default: 0,
    doc: "Opt-in batching: a connection's frames wait up to this long, ms, to leave in one write (one syscall for many events); 0: at the end of each event-loop turn.",
    roles: ["edge"],
    parse: integer(0, MAX_WRITE_DELAY_MS),
  }),
  writeBatch: setting({
    env: "REALTIME_WRITE_BATCH",
    default: false,
    doc: "With REALTIME_WRITE_DELAY_MS above 0 (refused without): the events a connection gets within one delay go in one events frame, to clients that ask for it (events=batch; the SDK does).",
    roles: ["edge"],
    parse: bool,
  }),
  hooksUrl: setting({
    env: "REALTIME_HOOKS_URL",
    default: "",
    doc: "The backend's realtime.v1.Hooks gRPC server (host:port, plaintext) that the edges ask; empty: no hooks. Which hooks: the three settings below.",
    roles: ["edge"],
    parse: (raw: string): string => (raw.trim() === "" ? "" : hostPort(raw)),
  }),
  hooksConnect: setting({
    env: "REALTIME_HOOKS_CONNECT",
    default: false,
    doc: "Ask OnConnect about every WebSocket upgrade without a token (every upgrade when no token key is set), with its headers and cookies.",
    roles: ["edge"],
    parse: bool,
  }),
  hooksJoinPrefixes: setting({
    env: "REALTIME_HOOKS_JOIN_PREFIXES",
    default: "",
    doc: "Ask OnJoin about joins (and server-side Subscribes) of channels under these prefixes, comma-separated; empty: none.",
    roles: ["edge"],
    parse: prefixList,
  }),
  hooksSendPrefixes: setting({
    env: "REALTIME_HOOKS_SEND_PREFIXES",
    default: "",
    doc: "Ask OnClientSend about client sends to channels under these prefixes, comma-separated; empty: none.",
    roles: ["edge"],
    parse: prefixList,
  }),
  hooksTimeoutMs: setting({
    env: "REALTIME_HOOKS_TIMEOUT_MS",
    default: DEFAULT_HOOK_TIMEOUT_MS,
    doc: "Deadline of each hook call, ms; past it the call counts as failed (see REALTIME_HOOKS_FAIL_OPEN).",
    roles: ["edge"],
    parse: integer(10, 60_000),
  }),
  hooksFailOpen: setting({
    env: "REALTIME_HOOKS_FAIL_OPEN",
    default: false,
    doc: "When a hook call fails (error, deadline, an invalid answer): false refuses (connection HTTP 503, join/send UNAVAILABLE); true allows (a connection as anonymous).",
    roles: ["edge"],
    parse: bool,
  }),
  maxConnections: setting({
    env: "REALTIME_MAX_CONNECTIONS",
    default: DEFAULT_MAX_CONNECTIONS_PER_EDGE,
    doc: "Most client connections per edge; more are refused with HTTP 503.",
    roles: ["edge"],
    parse: integer(1, 10_000_000),
  }),
  rateLimitPerSecond: setting({
    env: "REALTIME_RATE_LIMIT_PER_SECOND",
    default: DEFAULT_RATE_LIMIT_PER_SECOND,
    doc: "Client commands per second per connection, on average; excess commands get RESOURCE_EXHAUSTED.",
    roles: ["edge"],
    parse: integer(1, 1_000_000),
  }),
  rateLimitBurst: setting({
    env: "REALTIME_RATE_LIMIT_BURST",
    default: DEFAULT_RATE_LIMIT_BURST,
    doc: "Client commands per connection allowed in a burst.",
    roles: ["edge"],
    parse: integer(1, 1_000_000),
  }),
  errorBudget: setting({
    env: "REALTIME_ERROR_BUDGET",
    default: DEFAULT_ERROR_BUDGET,
    doc: "Error replies a connection may earn in a burst (refilled 1/s) before it is closed with 4503.",
    roles: ["edge"],
    parse: integer(1, 1_000_000),
  }),
  maxOutboundBytes: setting({
    env: "REALTIME_MAX_OUTBOUND_BYTES",
    default: DEFAULT_MAX_OUTBOUND_BYTES,
    doc: "Bytes that may wait to be written to one client; past it the client is closed with 4001 (slow consumer).",
    roles: ["edge"],
    parse: integer(16 * 1024, 1024 * 1024 * 1024),
  }),
  heartbeatIntervalMs: setting({
    env: "REALTIME_HEARTBEAT_INTERVAL_MS",
    default: DEFAULT_HEARTBEAT_INTERVAL_MS,
    doc: "How often an edge pings its clients.",
    roles: ["edge"],
    parse: integer(50, 3_600_000),
  }),
  heartbeatTimeoutMs: setting({
    env: "REALTIME_HEARTBEAT_TIMEOUT_MS",
    default: DEFAULT_HEARTBEAT_TIMEOUT_MS,
    doc: "How long a client has to answer a ping before it is dropped.",
    roles: ["edge"],
    parse: integer(50, 3_600_000),
  }),
  shutdownSpreadMs: setting({
    env: "REALTIME_SHUTDOWN_SPREAD_MS",
    default: DEFAULT_SHUTDOWN_SPREAD_MS,
    doc: "On SIGTERM, the window over which an edge closes its clients (4000), so they do not all reconnect at once.",
    roles: ["edge"],
    parse: integer(0, 600_000),
  }),
  outageCloseMs: setting({
    env: "REALTIME_OUTAGE_CLOSE_MS",
    default: DEFAULT_OUTAGE_CLOSE_MS,
    doc: "How long an edge keeps its clients while its link to the API (or Redis) is down; then it closes them with 4004 (spread over REALTIME_SHUTDOWN_SPREAD_MS) and refuses new ones with 503 until it is back; 0: never.",
    roles: ["edge"],
    parse: integer(0, 86_400_000),
  }),
  shutdownTimeoutMs: setting({
    env: "REALTIME_SHUTDOWN_TIMEOUT_MS",
    default: DEFAULT_SHUTDOWN_TIMEOUT_MS,
    doc: "On SIGTERM, the deadline by which the process exits, whatever is left.",
    roles: ["api", "edge"],
    parse: integer(100, 3_600_000),
  }),
  shutdownDrainMs: setting({
    env: "REALTIME_SHUTDOWN_DRAIN_MS",
    default: DEFAULT_SHUTDOWN_DRAIN_MS,
    doc: "On SIGTERM, how long a process reports not ready (/readyz 503, gRPC health NOT_SERVING) before it stops listening, so load balancers take it out first; meanwhile the API answers new calls UNAVAILABLE and an edge keeps its clients.",
    roles: ["api", "edge"],
    parse: integer(0, 600_000),
  }),
  grpcKeepaliveTimeMs: setting({
    env: "REALTIME_GRPC_KEEPALIVE_TIME_MS",
    default: DEFAULT_GRPC_KEEPALIVE_TIME_MS,
    doc: "How often the gRPC server pings an idle client connection.",
    roles: ["api"],
    parse: integer(1_000, 86_400_000),
  }),
  grpcKeepaliveTimeoutMs: setting({
    env: "REALTIME_GRPC_KEEPALIVE_TIMEOUT_MS",
    default: DEFAULT_GRPC_KEEPALIVE_TIMEOUT_MS,
    doc: "How long the gRPC server waits for a ping answer before it drops the connection.",
    roles: ["api"],
    parse: integer(1_000, 3_600_000),
  }),
  grpcMaxConnectionAgeMs: setting({
    env: "REALTIME_GRPC_MAX_CONNECTION_AGE_MS",
    default: 0,
    doc: "Close gRPC client connections older than this (with a grace period for calls in flight) so that clients rebalance; 0: never.",
    roles: ["api"],
    parse: integer(0, 86_400_000 * 30),
  }),
  redisUrl: setting({
    env: "REALTIME_REDIS_URL",
    default: "",
    doc: "Redis to scale out over (redis://host:port): every API node and edge then uses it instead of the API's link; empty: embedded mode.",
    roles: ["api", "edge"],
    secret: true,
    parse: redisUrl,
  }),
  redisMode: setting({
    env: "REALTIME_REDIS_MODE",
    default: "standalone",
    doc: "What REALTIME_REDIS_URL points at: standalone (one Redis, or one address in front of a failover pair) or cluster (any node of a Redis Cluster of Redis 7 or later: sharded pub/sub, keys hashed per channel). A node refuses to start, exit 2, when the Redis it reaches is the other kind.",
    roles: ["api", "edge"],
    parse: oneOf(["standalone", "cluster"]),
  }),
  redisPrefix: setting({
    env: "REALTIME_REDIS_PREFIX",
    default: DEFAULT_REDIS_PREFIX,
    doc: "Prefix of every Redis key and channel, so that deployments can share one Redis.",
    roles: ["api", "edge"],
    parse: redisPrefix,
  }),
  redisEdgeTtlMs: setting({
    env: "REALTIME_REDIS_EDGE_TTL_MS",
    default: DEFAULT_REDIS_EDGE_TTL_MS,
    doc: "Redis mode: an edge that stops heartbeating counts as dead after this; its members leave GetMembers then and get channel:leave within 4/3 of it.",
    roles: ["api", "edge"],
    parse: integer(MIN_REDIS_EDGE_TTL_MS, MAX_REDIS_EDGE_TTL_MS),
  }),
  // --- TLS in the process (docs/operations.md#tls) ---
  tlsCertFile: setting({
    env: "REALTIME_TLS_CERT_FILE",
    default: "",
    doc: "PEM certificate chain: with REALTIME_TLS_KEY_FILE, the gRPC, HTTP and WebSocket ports serve TLS (the link stays plain); empty: plain, TLS in front.",
    roles: ["api", "edge"],
    parse: pemFile,
  }),
  tlsKeyFile: setting({
    env: "REALTIME_TLS_KEY_FILE",
    default: "",
    doc: "PEM private key of REALTIME_TLS_CERT_FILE's certificate.",
    roles: ["api", "edge"],
    parse: pemFile,
  }),
} as const;

type Settings = typeof SETTINGS;
export type Config = {
  -readonly [K in keyof Settings]: Settings[K]["default"] extends number
    ? number
    : Settings[K]["default"] extends boolean
      ? boolean
      : string;
};

/**
 * Reads the configuration from env, then applies overrides (used by tests
 * and the CLI). Throws ConfigError naming every bad key and why.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, s] of Object.entries(SETTINGS) as [keyof Config, Setting<unknown>][]) {
    const raw = env[s.env];
    if (raw === undefined || raw === "") {
      out[key] = s.default;
      continue;
    }
    try {
      out[key] = s.parse(raw);
    } catch (err) {
      problems.push(`${s.env}${shownValue(s, raw, "=")}: ${(err as Error).message} (${s.doc})`);
    }
  }
  const config = { ...(out as Config), ...overrides };
  // Events are packed per write delay: without one there is nothing to pack, and a setting that does nothing is a mistake.
  if (config.writeBatch && config.writeDelayMs === 0)
    problems.push(
      `${SETTINGS.writeBatch.env}=true: needs ${SETTINGS.writeDelayMs.env} above 0 (events are packed into one frame per write delay): set a delay, or leave ${SETTINGS.writeBatch.env} unset`,
    );
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return config;
}

/** The keys of the settings marked secret: never printed, censored in logs (log.ts). */
export const SECRET_KEYS: readonly string[] = Object.entries(SETTINGS as Record<string, Setting<unknown>>)
  .filter(([, s]) => s.secret)
  .map(([key]) => key);

/**
 * How an error shows the value a setting was given: `=` or ` ` and the
 * value quoted, or for a secret a note that it is not shown.
 */
export function shownValue(s: { secret?: true }, raw: string, separator: "=" | " "): string {
  return s.secret ? " (value not shown: it is secret)" : `${separator}${JSON.stringify(raw)}`;
}

/** Splits "host:port" into its parts. */
export function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  return { host: value.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(value.slice(i + 1)) };
}
