#!/usr/bin/env node
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ConfigError, SETTINGS, type Config } from "./config.js";
import { describeSettings, flagsToEnv, loadConfigWithFlags, parseArgs, type ParsedArgs } from "./config-args.js";
import { createLogger, flushStdio, tolerateClosedStdio } from "./log.js";
import { DEV_CHILD_ENV, isDevChild, watchParent } from "./parent-watch.js";
import { VERSION } from "./metrics/version.js";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";

const USAGE = `Usage: switchboard <command> [flags]

Commands:
  api    the API process: gRPC realtime.v1.Realtime, and the link edges connect to
  edge   an edge process: the WebSocket server clients connect to
  dev    one API process and one edge process, as two OS processes (npm start)

Each process prints one JSON line on stdout when it is ready, for example
  {"ready":"api","grpc":"127.0.0.1:50051","link":"127.0.0.1:50052","http":"127.0.0.1:8080"}
  {"ready":"edge","ws":"ws://127.0.0.1:8090"}
(dev on a terminal prints the addresses for a person instead). Logs go to
stderr: one human line each on a terminal, JSON lines otherwise
(REALTIME_LOG_FORMAT). Every process serves GET /metrics (Prometheus),
/healthz and /readyz: the API on its HTTP port, an edge on its WebSocket port.

Configuration: each setting is a flag or an environment variable (the flag
wins; booleans also take --no-<flag>). A bad value stops the process, exit 2.
${describeSettings()}
`;

async function main(argv: string[]): Promise<void> {
  tolerateClosedStdio();
  let args: ParsedArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`switchboard: ${err.message}\n`);
    process.exit(2);
  }
  const command = args.positional[0];
  if (!command || args.help || command === "help") {
    process.stdout.write(USAGE);
    return;
  }
  if (command !== "api" && command !== "edge" && command !== "dev") {
    process.stderr.write(`switchboard: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  let config;
  try {
    config = loadConfigWithFlags(args.values);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchboard: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (command === "dev") return dev(flagsToEnv(args.values), config);

  const log = createLogger(command, config.logLevel, VERSION, config.logFormat);
  const started = Date.now();
  log.info({ node: process.version, settings: startupFields(config, command) }, `${command} starting`);
  process.on("uncaughtException", (err) => {
    log.fatal({ err }, `${command} crashed`);
    process.exit(1);
  });
  // Each role loads only its own modules (an edge needs no gRPC server, an API no WebSocket server): less memory.
  const starting: Promise<{ addresses: object; stop(): Promise<void> }> =
    command === "api"
      ? import("./roles/api.js").then(({ startApi }) => startApi(config, log))
      : import("./roles/edge.js").then(({ startEdge }) => startEdge(config, log));
  // Signals are handled from before the start: one that comes before the
  // ready line stops the process cleanly too (without a handler, Node's
  // default action would kill it on the spot).
  let stopping: string | undefined;
  const stop = async (cause: string) => {
    const fields = cause.startsWith("SIG") ? { signal: cause } : { reason: cause };
    if (stopping !== undefined) {
      // A second signal: the operator does not want to wait for the drain or the deadline.
      log.warn({ ...fields, first: stopping }, `${command} got ${cause} again while stopping; exiting now`);
      process.exit(1);
    }
    stopping = cause;
    const stopStarted = Date.now();
    log.info(fields, `${command} stopping`);
    // The deadline (REALTIME_SHUTDOWN_TIMEOUT_MS): exit whatever is still
    // pending. Nothing can hold it off: logs never block the event loop, nor
    // flush synchronously at exit (log.ts).
    setTimeout(() => {
      log.error(
        { timeoutMs: config.shutdownTimeoutMs },
        `${command} did not stop before the shutdown deadline; exiting`,
      );
      process.exit(1);
    }, config.shutdownTimeoutMs).unref();
    const handle = await starting.catch(() => undefined);
    if (!handle) return; // it failed to start: that path exits
    await handle.stop();
    log.info({ ...fields, durationMs: Date.now() - stopStarted }, `${command} stopped`);
    await flushStdio();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  // Under switchboard dev, Ctrl-C is dev's to handle: it reaches the whole
  // process group, and dev stops the edge first, then the API.
  if (isDevChild()) process.on("SIGINT", () => log.debug("SIGINT: left to switchboard dev, which stops this process"));
  else process.on("SIGINT", () => void stop("SIGINT"));
  // The parent that started this process may die without telling it (parent-watch.ts).
  watchParent((why) => {
    log.warn({ reason: why }, `${command}: ${why}; stopping`);
    void stop("parent gone");
  });
  let handle;
  try {
    handle = await starting;
  } catch (err) {
    log.fatal({ err, durationMs: Date.now() - started }, `${command} failed to start`);
    // One plain line for the person at the terminal, beside the JSON log.
    process.stderr.write(`switchboard ${command}: ${err instanceof Error ? err.message : String(err)}\n`);
    // A setting that does not fit what it points at is a bad value too (exit 2, as USAGE says).
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
  if (stopping !== undefined) return; // stopped before it was ready: no ready line
  process.stdout.write(`${JSON.stringify({ ready: command, ...handle.addresses })}\n`);
  log.info({ ...handle.addresses, durationMs: Date.now() - started }, `${command} ready`);
}

/** How long past a child's own shutdown deadline `switchboard dev` waits before it SIGKILLs the child. */
export const DEV_KILL_GRACE_MS = 2_000;

/**
 * Runs one API and one edge as child processes; stops both when either
 * ends, when dev gets SIGTERM or SIGINT (a second one: SIGKILL, at once),
 * or when its own parent is gone. It stops the edge first, then the API,
 * as in a deploy: the edge closes its clients and its link while the hub
 * is still there. Each child has an IPC channel to dev: should dev be
 * killed, they see it close and stop (parent-watch.ts).
 * flagEnv: the command line's settings, passed on to both.
 */
async function dev(flagEnv: Record<string, string>, config: Config): Promise<void> {
  const http = config.tlsCertFile !== "" ? "https" : "http";
  // For a person at a terminal: the banner, without the ready lines meant for programs.
  const human = config.logFormat === "text" || (config.logFormat === "auto" && process.stdout.isTTY === true);
  const self = fileURLToPath(import.meta.url);
  // The edge authenticates to the API's link with a secret of this run's
  // own (unless one is configured), passed to both by env: never printed.
  const linkSecret =
    flagEnv.REALTIME_LINK_SECRET || process.env.REALTIME_LINK_SECRET || randomBytes(32).toString("base64url");
  const children = new Map<"api" | "edge", ChildProcess>();
  const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
  let stopping = false;
  let failed = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    if (code !== 0) failed = true;
    for (const role of ["edge", "api"] as const) {
      const child = children.get(role);
      if (!child || !running(child)) continue;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), config.shutdownTimeoutMs + DEV_KILL_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    await flushStdio();
    process.exit(failed ? 1 : 0);
  };
  const onSignal = () => {
    if (!stopping) return void stopAll(0);
    for (const child of children.values()) if (running(child)) child.kill("SIGKILL");
    process.exit(1);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  watchParent((why) => {
    process.stderr.write(`switchboard dev: ${why}; stopping\n`);
    void stopAll(0);
  });
  const run = (role: "api" | "edge", env: NodeJS.ProcessEnv) =>
    new Promise<Record<string, string>>((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, self, role], {
        env: { ...process.env, ...flagEnv, REALTIME_LINK_SECRET: linkSecret, ...env, [DEV_CHILD_ENV]: "1" },
        stdio: ["ignore", "pipe", "inherit", "ipc"],
      });
      children.set(role, child);
      child.on("exit", (code, signal) => {
        reject(new Error(`${role} exited (${signal ?? code}) before it was ready`));
        if (code !== 0) failed = true;
        if (stopping) return;
        process.stderr.write(`switchboard: the ${role} process exited (${signal ?? code}); stopping\n`);
        void stopAll(code ?? 1);
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!human) process.stdout.write(`${line}\n`);
        try {
          const msg = JSON.parse(line) as Record<string, string>;
          if (msg.ready === role) resolve(msg);
        } catch {
          // not a ready line
        }
      });
    });
  try {
    const started = Date.now();
    const step = (text: string) => process.stderr.write(`switchboard dev: ${text}\n`);
    step("starting the API process…");
    const api = await run("api", {});
    step(`API ready in ${Date.now() - started} ms (gRPC ${api.grpc}, HTTP ${api.http}); starting an edge…`);
    const edge = await run("edge", api.link ? { REALTIME_LINK_URL: api.link } : {});
    step(`edge ready in ${Date.now() - started} ms (${edge.ws})`);
    if (!human)
      process.stdout.write(`${JSON.stringify({ ready: "dev", grpc: api.grpc, http: api.http, ws: edge.ws })}\n`);
    const edgeHttp = edge.ws?.replace(/^ws/, "http");
    const methods = Realtime.methods.map((m) => m.name).join(", ");
    process.stderr.write(
      `\nSwitchboard is running:\n` +
        `  gRPC API        ${api.grpc}   (realtime.v1.Realtime: ${methods}; reflection on)\n` +
        `  HTTP API        ${http}://${api.http}   (Connect, gRPC-Web, dashboard; /metrics /healthz /readyz)\n` +
        `  WebSocket edge  ${edge.ws}   (${edgeHttp}/metrics /healthz /readyz)\n` +
        `Try: npx buf curl --protocol grpc ${http === "https" ? "" : "--http2-prior-knowledge "}-d '{"channel":"lobby","event":"hello","json":{"text":"hi"}}' ${http}://${api.grpc}/realtime.v1.Realtime/Send\n\n`,
    );
  } catch (err) {
    if (stopping) return;
    process.stderr.write(`switchboard: ${(err as Error).message}\n`);
    void stopAll(1);
  }
}

/**
 * The settings worth a glance in the start line: where it listens and which
 * mode, never a secret (keys, token secrets and Redis URLs with passwords
 * are left out).
 */
function startupFields(config: Config, role: "api" | "edge"): Record<string, unknown> {
  const safe = new Set([
    "grpcHost",
    "grpcPort",
    "httpHost",
    "httpPort",
    "linkHost",
    "linkPort",
    "linkUrl",
    "wsHost",
    "wsPort",
    "logLevel",
    "maxPayloadBytes",
    "maxChannelsPerConnection",
    "maxConnections",
    "insecure",
  ]);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const s = (SETTINGS as Record<string, { roles: readonly string[]; secret?: true }>)[key];
    if (safe.has(key) && !s?.secret && s?.roles.includes(role)) out[key] = value;
  }
  out.mode = config.redisUrl ? "redis" : "embedded";
  return out;
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`switchboard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
