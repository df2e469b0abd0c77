/**
 * Command-line flags for the settings of the one schema (config.ts): each
 * setting's flag is derived from its key (grpcPort -> --grpc-port), so a
 * setting added to SETTINGS has a flag, a line in --help and a row in the
 * README without further work. A flag wins over its environment variable.
 *
 * Forms: `--grpc-port 0`, `--grpc-port=0`; a boolean setting also takes a
 * bare `--insecure` (true) or `--no-insecure` (false).
 */
import { ConfigError, loadConfig, SETTINGS, shownValue, type Config } from "./config.js";

type Key = keyof typeof SETTINGS;

/** The flag of a setting key: grpcPort -> --grpc-port. */
export function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

const BY_FLAG = new Map<string, Key>((Object.keys(SETTINGS) as Key[]).map((k) => [flagOf(k), k]));

function isBoolean(key: Key): boolean {
  return typeof SETTINGS[key].default === "boolean";
}

export interface ParsedArgs {
  /** Arguments that are not flags, in order (the command). */
  positional: string[];
  /** --help or -h was given. */
  help: boolean;
  /** The raw value of each setting given as a flag. */
  values: Map<Key, { raw: string; flag: string }>;
}

/** Splits argv into the command, --help and setting flags. Throws ConfigError on an unknown flag or a missing value. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const out: ParsedArgs = { positional: [], help: false, values: new Map() };
  const problems: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    if (!arg.startsWith("--")) {
      out.positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    let flag = eq === -1 ? arg : arg.slice(0, eq);
    let raw: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    let key = BY_FLAG.get(flag);
    if (!key && flag.startsWith("--no-") && raw === undefined) {
      const positive = `--${flag.slice(5)}`;
      const k = BY_FLAG.get(positive);
      if (k && isBoolean(k)) {
        key = k;
        flag = positive;
        raw = "false";
      }
    }
    if (!key) {
      problems.push(`${flag}: unknown flag (switchboard --help lists them)`);
      continue;
    }
    if (raw === undefined) {
      const next = argv[i + 1];
      if (
        isBoolean(key) &&
        (next === undefined || next.startsWith("-") || !/^(true|false|1|0|yes|no|on|off)$/i.test(next))
      )
        raw = "true";
      else if (next === undefined || (next.startsWith("--") && next !== "--")) {
        problems.push(`${flag}: needs a value (${SETTINGS[key].doc})`);
        continue;
      } else raw = argv[++i]!;
    }
    out.values.set(key, { raw, flag });
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return out;
}

/**
 * The configuration from environment and flags (flags win). Throws
 * ConfigError naming every bad flag or variable, the rule it broke and what
 * the setting is for.
 */
export function loadConfigWithFlags(values: ParsedArgs["values"], env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const fromFlags: Record<string, unknown> = {};
  const rest: NodeJS.ProcessEnv = { ...env };
  for (const [key, { raw, flag }] of values) {
    const s = SETTINGS[key];
    delete rest[s.env];
    try {
      fromFlags[key] = (s.parse as (raw: string) => unknown)(raw);
    } catch (err) {
      problems.push(`${flag}${shownValue(s, raw, " ")}: ${(err as Error).message} (${s.doc})`);
    }
  }
  let config: Config | undefined;
  try {
    config = loadConfig(rest, fromFlags as Partial<Config>);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(
      ...err.message
        .split("\n")
        .slice(1)
        .map((l) => l.trim()),
    );
  }
  if (config && Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
    problems.push(
      `${config.tlsCertFile ? "REALTIME_TLS_KEY_FILE (--tls-key-file)" : "REALTIME_TLS_CERT_FILE (--tls-cert-file)"}: must be set too: TLS needs both the certificate and its key`,
    );
  }
  if (problems.length > 0 || !config) throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  return config;
}

/** The flags as environment variables, for child processes (switchboard dev). */
export function flagsToEnv(values: ParsedArgs["values"]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, { raw }] of values) env[SETTINGS[key].env] = raw;
  return env;
}

/** Every setting for --help: flag, variable, roles, default and doc. */
export function describeSettings(): string {
  return (Object.keys(SETTINGS) as Key[])
    .map((key) => {
      const s = SETTINGS[key];
      const value = isBoolean(key) ? "" : typeof s.default === "number" ? " <n>" : " <value>";
      const def = s.default === "" ? "(empty)" : String(s.default);
      return `  ${flagOf(key)}${value}\n      env ${s.env}, default ${def}, ${s.roles.join(" and ")}\n      ${s.doc}`;
    })
    .join("\n");
}

/** The listen failures that a setting can fix, and what to tell the person who runs the process. */
const LISTEN_FAILURES: Record<string, (where: string, host: string, port: string) => string> = {
  EADDRINUSE: (where, _host, port) => `${where} is in use: set ${port} to a free port, or 0 (any free one)`,
  EACCES: (where, _host, port) =>
    `${where} needs privileges this process lacks: set ${port} to 1024 or above, or 0 (any free one)`,
  EADDRNOTAVAIL: (where, host) =>
    `${where}: the host is not an address of this machine: set ${host} to one of its addresses, 127.0.0.1 or 0.0.0.0`,
  ENOTFOUND: (where, host) => `${where}: the host name does not resolve: set ${host} to an address of this machine`,
};

/**
 * A failure to listen on a host/port setting pair, as an Error that names
 * the setting to change, for example
 * `127.0.0.1:50051 is in use: set REALTIME_GRPC_PORT (--grpc-port) to a free port, or 0 (any free one)`;
 * the original error is its cause. Any other error is returned unchanged.
 */
export function listenError(err: unknown, hostKey: Key, portKey: Key, config: Config): unknown {
  if (!(err instanceof Error)) return err;
  const e = err as NodeJS.ErrnoException;
  // grpc-js's bindAsync reports the errno only in its message ("No address
  // added out of total 1 resolved errors: [listen EADDRINUSE: ...]").
  const code =
    e.code && (e.syscall === "listen" || e.syscall === "bind" || e.syscall === "getaddrinfo")
      ? e.code
      : /\b(?:listen|bind) (E[A-Z]+)\b/.exec(e.message)?.[1];
  const explain = code ? LISTEN_FAILURES[code] : undefined;
  if (!explain) return err;
  const host = String(config[hostKey]);
  const where = `${host.includes(":") ? `[${host}]` : host}:${String(config[portKey])}`;
  const name = (key: Key) => `${SETTINGS[key].env} (${flagOf(key)})`;
  return new Error(explain(where, name(hostKey), name(portKey)), { cause: err });
}
