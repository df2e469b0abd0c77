import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stderr (stdout carries only the machine-readable
 * ready lines). Level from REALTIME_LOG_LEVEL (default info). Payloads and
 * tokens are never logged.
 */
export function createLogger(role: string, level = process.env.REALTIME_LOG_LEVEL || "info"): Logger {
  return pino({ level, base: { role, pid: process.pid } }, pino.destination(2));
}
