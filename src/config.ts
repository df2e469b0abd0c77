import {
  DEFAULT_EDGE_GRACE_MS,
  DEFAULT_MAX_CHANNELS_PER_CONNECTION,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_PROFILE_BYTES,
} from "./core/limits.js";
import { DEFAULT_REDIS_EDGE_TTL_MS, DEFAULT_REDIS_PREFIX, MAX_REDIS_EDGE_TTL_MS, MIN_REDIS_EDGE_TTL_MS } from "./redis/limits.js";

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
const hostPort = (raw: string): string => {
  const v = raw.trim();
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new Error("must be host:port, for example 127.0.0.1:50052");
  return v;
};

const origins = (raw: string): string => {
  const list = raw.split(",").map((o) => o.trim()).filter((o) => o !== "");
  for (const o of list) {
    if (o !== "*" && !/^https?:\/\/[^/\s]+$/.test(o)) throw new Error(`${JSON.stringify(o)} is not an origin: write scheme://host[:port] with no path, or *`);
  }
  return list.join(",");
};

const redisUrl = (raw: string): string => {
  const v = raw.trim();
  if (!/^rediss?:\/\/[^\s]+$/.test(v)) throw new Error("must be a Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS");
  return v;
};
const redisPrefix = (raw: string): string => {
  if (!/^[^\s]{1,64}$/.test(raw)) throw new Error("must be 1 to 64 characters without spaces, for example myapp:");
  return raw;
};

const setting = <T>(s: Setting<T>): Setting<T> => s;

export const SETTINGS = {
  grpcHost: setting({ env: "REALTIME_GRPC_HOST", default: "127.0.0.1", doc: "Address the gRPC API listens on.", roles: ["api"], parse: text }),
  grpcPort: setting({ env: "REALTIME_GRPC_PORT", default: 50051, doc: "Port of the gRPC API (0 picks a free one).", roles: ["api"], parse: port }),
  httpHost: setting({ env: "REALTIME_HTTP_HOST", default: "127.0.0.1", doc: "Address the API's HTTP server (Connect, gRPC-Web, dashboard) listens on.", roles: ["api"], parse: text }),
  httpPort: setting({ env: "REALTIME_HTTP_PORT", default: 8080, doc: "Port of the API's HTTP server: Connect, gRPC-Web and the dashboard at / (0 picks a free one).", roles: ["api"], parse: port }),
  corsOrigins: setting({ env: "REALTIME_CORS_ORIGINS", default: "", doc: "Browser origins allowed to call the HTTP API besides its own, comma-separated (https://ops.example.com), or * for any.", roles: ["api"], parse: origins }),
  linkHost: setting({ env: "REALTIME_LINK_HOST", default: "127.0.0.1", doc: "Address the API listens on for edges (embedded mode).", roles: ["api"], parse: text }),
  linkPort: setting({ env: "REALTIME_LINK_PORT", default: 50052, doc: "Port the API listens on for edges (0 picks a free one).", roles: ["api"], parse: port }),
  linkUrl: setting({ env: "REALTIME_LINK_URL", default: "127.0.0.1:50052", doc: "Where an edge finds the API's link port, host:port.", roles: ["edge"], parse: hostPort }),
  wsHost: setting({ env: "REALTIME_WS_HOST", default: "127.0.0.1", doc: "Address the edge's WebSocket server listens on.", roles: ["edge"], parse: text }),
  wsPort: setting({ env: "REALTIME_WS_PORT", default: 8090, doc: "Port of the edge's WebSocket server (0 picks a free one).", roles: ["edge"], parse: port }),
  maxPayloadBytes: setting({ env: "REALTIME_MAX_PAYLOAD_BYTES", default: DEFAULT_MAX_PAYLOAD_BYTES, doc: "Largest event, bytes of its protobuf encoding.", roles: ["api", "edge"], parse: integer(1024, 16 * 1024 * 1024) }),
  maxProfileBytes: setting({ env: "REALTIME_MAX_PROFILE_BYTES", default: DEFAULT_MAX_PROFILE_BYTES, doc: "Largest profile, bytes of its protobuf encoding.", roles: ["edge"], parse: integer(64, 1024 * 1024) }),
  maxChannelsPerConnection: setting({ env: "REALTIME_MAX_CHANNELS_PER_CONNECTION", default: DEFAULT_MAX_CHANNELS_PER_CONNECTION, doc: "Most channels one connection may be in.", roles: ["edge"], parse: integer(1, 100_000) }),
  edgeGraceMs: setting({ env: "REALTIME_EDGE_GRACE_MS", default: DEFAULT_EDGE_GRACE_MS, doc: "How long the API keeps an unreachable edge's members before removing them.", roles: ["api"], parse: integer(0, 600_000) }),
  allowClientBroadcast: setting({ env: "REALTIME_ALLOW_CLIENT_BROADCAST", default: true, doc: "Whether clients may broadcast to every connection.", roles: ["edge"], parse: bool }),
  redisUrl: setting({ env: "REALTIME_REDIS_URL", default: "", doc: "Redis to scale out over (redis://host:port): every API node and edge then uses it instead of the API's link; empty: embedded mode.", roles: ["api", "edge"], parse: redisUrl }),
  redisPrefix: setting({ env: "REALTIME_REDIS_PREFIX", default: DEFAULT_REDIS_PREFIX, doc: "Prefix of every Redis key and channel, so that deployments can share one Redis.", roles: ["api", "edge"], parse: redisPrefix }),
  redisEdgeTtlMs: setting({ env: "REALTIME_REDIS_EDGE_TTL_MS", default: DEFAULT_REDIS_EDGE_TTL_MS, doc: "Redis mode: an edge that stops heartbeating counts as dead after this; its members leave GetMembers then and get channel:leave within 4/3 of it.", roles: ["api", "edge"], parse: integer(MIN_REDIS_EDGE_TTL_MS, MAX_REDIS_EDGE_TTL_MS) }),
} as const;

type Settings = typeof SETTINGS;
export type Config = { -readonly [K in keyof Settings]: Settings[K]["default"] extends number ? number : Settings[K]["default"] extends boolean ? boolean : string };

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
      problems.push(`${s.env}=${JSON.stringify(raw)}: ${(err as Error).message} (${s.doc})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return { ...(out as Config), ...overrides };
}

/** Splits "host:port" into its parts. */
export function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  return { host: value.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(value.slice(i + 1)) };
}
