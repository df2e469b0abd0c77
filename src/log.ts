import { pino, type Logger } from "pino";
import { SECRET_KEYS } from "./config.js";

export type { Logger };

/**
 * Most bytes of log lines that may wait for a slow reader of stderr. Past it
 * new lines are dropped (and counted, see LogSink) instead of held: a reader
 * that stalls costs neither memory without bound nor the event loop.
 */
export const LOG_MAX_PENDING_BYTES = 1024 * 1024;
/** How long a process that stops waits for its last log lines to reach stderr before it exits anyway. */
export const LOG_FLUSH_TIMEOUT_MS = 1_000;

/**
 * Structured JSON logs on stderr (stdout carries only the machine-readable
 * ready lines). Level from the logLevel setting (REALTIME_LOG_LEVEL, default
 * info). Payloads and tokens are never logged: nothing logs them on purpose,
 * and the fields that could carry them are censored should one slip in.
 *
 * Fields an operator filters on: role, pid, version (every line); addresses
 * on "ready"; signal and durationMs on "stopping"/"stopped"; err and context
 * on errors; edgeId on link events.
 *
 * Never blocks the event loop: lines go through process.stderr, which
 * libuv writes without blocking when stderr is a pipe, and a stalled reader
 * costs at most LOG_MAX_PENDING_BYTES. (pino.destination() would flush
 * synchronously at exit, retrying forever while the pipe is full: a process
 * whose stderr nobody read could then never exit, not even at its shutdown
 * deadline, nor on a second SIGTERM, as its handlers never ran again.)
 */
export function createLogger(
  role: string,
  level = process.env.REALTIME_LOG_LEVEL || "info",
  version?: string,
  /** The logFormat setting: "json", "text", or "auto" (text when stderr is a terminal). */
  format = "auto",
): Logger {
  const text = format === "text" || (format === "auto" && process.stderr.isTTY === true);
  const sink = new LogSink(process.stderr, LOG_MAX_PENDING_BYTES, text ? textLine : undefined);
  const logger = pino(
    {
      level,
      base: { role, pid: process.pid, ...(version ? { version } : {}) },
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    },
    sink,
  );
  sink.onDrained((dropped) => logger.warn({ dropped }, "log lines dropped: stderr was not read for a while"));
  return logger;
}

/**
 * Log fields that may hold a secret or a payload, at the top level or one
 * object down: the settings marked secret in the schema (config.ts), and
 * the names a token, a key or a payload goes by.
 */
export const REDACTED_PATHS = [
  ...new Set([...SECRET_KEYS, "token", "authorization", "apiKeys", "jwtSecret", "payload", "data", "password"]),
].flatMap((k) => [k, `*.${k}`]);

/** What LogSink writes to: process.stderr, or any stream of the same shape. */
export interface LogStream {
  write(chunk: string): boolean;
  readonly writableLength: number;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "drain", listener: () => void): unknown;
}

/**
 * The logger's destination: writes each line to a stream unless more than
 * LOG_MAX_PENDING_BYTES already wait there (the line is then dropped and
 * counted), and writes nothing more once the stream failed (EPIPE: its
 * reader is gone). When the stream drains after drops, onDrained hears how
 * many lines were lost.
 */
export class LogSink {
  private dropped = 0;
  private broken = false;
  private drained: ((dropped: number) => void) | undefined;

  constructor(
    private readonly stream: LogStream,
    private readonly maxPendingBytes = LOG_MAX_PENDING_BYTES,
    /** Rewrites each JSON line before it is written (textLine); none: written as is. */
    private readonly rewrite?: (line: string) => string,
  ) {
    stream.on("error", () => (this.broken = true));
    stream.on("drain", () => {
      if (this.dropped === 0 || this.broken) return;
      const dropped = this.dropped;
      this.dropped = 0;
      this.drained?.(dropped);
    });
  }

  write(json: string): void {
    if (this.broken) return;
    const line = this.rewrite ? this.rewrite(json) : json;
    if (this.stream.writableLength + line.length > this.maxPendingBytes) {
      this.dropped++;
      return;
    }
    this.stream.write(line);
  }

  onDrained(listener: (dropped: number) => void): void {
    this.drained = listener;
  }
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
/** Fields every line has, shown in its prefix or not at all in the text format. */
const TEXT_SKIPPED = new Set(["level", "time", "role", "msg", "pid", "version", "hostname"]);

/**
 * One pino JSON line as one line for a person at a terminal:
 * `12:00:01.234 INFO  api  api ready grpc=127.0.0.1:50051 durationMs=32`,
 * then an error's stack on its own lines. A line that is not JSON is
 * returned as is.
 */
export function textLine(json: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = typeof o.time === "number" ? new Date(o.time).toISOString().slice(11, 23) : "";
  const level = (LEVEL_NAMES[o.level as number] ?? String(o.level)).padEnd(5);
  const fields: string[] = [];
  let stack = "";
  for (const [k, v] of Object.entries(o)) {
    if (TEXT_SKIPPED.has(k)) continue;
    if (k === "err" && v && typeof v === "object") {
      const err = v as { message?: string; stack?: string };
      fields.push(`err=${JSON.stringify(err.message ?? "")}`);
      if (err.stack) stack = `\n${err.stack.replace(/^/gm, "    ")}`;
      continue;
    }
    fields.push(`${k}=${typeof v === "string" && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`);
  }
  const text = [time, level, String(o.role ?? ""), String(o.msg ?? ""), ...fields].filter((x) => x !== "").join(" ");
  return `${text}${stack}\n`;
}

/**
 * Makes a failing stdout or stderr harmless: once the process that reads
 * them is gone, writes fail with EPIPE, which would otherwise be thrown
 * from an 'error' event and crash the process in the middle of a clean stop.
 */
export function tolerateClosedStdio(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});
}

/**
 * Resolves once stdout and stderr have written what they hold, or after
 * timeoutMs, whichever is first: call it before process.exit so that the
 * last lines are not lost, without waiting on a reader that stalled.
 */
export function flushStdio(timeoutMs = LOG_FLUSH_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const check = () => {
      const pending = process.stdout.writableLength + process.stderr.writableLength;
      if (pending === 0 || Date.now() >= deadline) resolve();
      else setTimeout(check, 10);
    };
    check();
  });
}
