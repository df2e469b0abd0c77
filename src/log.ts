import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout carries only the machine-readable
 * ready lines). Level from the logLevel setting (REALTIME_LOG_LEVEL, default
 * info). Payloads and tokens are never logged: nothing logs them on purpose,
 * and the fields that could carry them are censored should one slip in.
 *
 * Fields an operator filters on: role, pid, version (every line); addresses
 * on "ready"; signal and durationMs on "stopping"/"stopped"; err and context
 * on errors; edgeId on link events.
 */
export function createLogger(role: string, level = process.env.REALTIME_LOG_LEVEL || "info", version?: string): Logger {
  return pino(
    {
      level,
      base: { role, pid: process.pid, ...(version ? { version } : {}) },
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    },
    pino.destination(2),
  );
}

/** Log fields that may hold a secret or a payload, at the top level or one object down. */
export const REDACTED_PATHS = [
  "token",
  "authorization",
  "apiKeys",
  "jwtSecret",
  "linkSecret",
  "payload",
  "data",
  "password",
].flatMap((k) => [k, `*.${k}`]);
