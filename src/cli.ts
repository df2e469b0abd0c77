#!/usr/bin/env node
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig, SETTINGS } from "./config.js";
import { createLogger } from "./log.js";
import { startApi } from "./roles/api.js";
import { startEdge } from "./roles/edge.js";

const USAGE = `Usage: switchboard <command>

Commands:
  api    the API process: gRPC realtime.v1.Realtime, and the link edges connect to
  edge   an edge process: the WebSocket server clients connect to
  dev    one API process and one edge process, as two OS processes (npm start)

Each process prints one JSON line on stdout when it is ready, for example
  {"ready":"api","grpc":"127.0.0.1:50051","link":"127.0.0.1:50052"}
  {"ready":"edge","ws":"ws://127.0.0.1:8090"}
Logs are JSON lines on stderr.

Configuration (environment variables):
${Object.values(SETTINGS)
  .map((s) => `  ${s.env.padEnd(38)} ${s.doc} Default: ${String(s.default)}.`)
  .join("\n")}
`;

async function main(argv: string[]): Promise<void> {
  const command = argv[0];
  if (!command || command === "--help" || command === "-h" || command === "help") {
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
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchboard: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (command === "dev") return dev();

  const log = createLogger(command);
  const handle = command === "api" ? await startApi(config, log) : await startEdge(config, log);
  process.stdout.write(`${JSON.stringify({ ready: command, ...handle.addresses })}\n`);
  log.info({ ...handle.addresses }, `${command} ready`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, `${command} stopping`);
    await handle.stop();
    log.info(`${command} stopped`);
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

/** Runs one API and one edge as child processes; stops both when either ends. */
async function dev(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const stopAll = (code: number) => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    process.exitCode = code;
  };
  const run = (role: string, env: NodeJS.ProcessEnv) =>
    new Promise<Record<string, string>>((resolve, reject) => {
      const child = spawn(process.execPath, [...process.execArgv, self, role], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
      children.push(child);
      child.on("exit", (code, signal) => {
        reject(new Error(`${role} exited (${signal ?? code}) before it was ready`));
        if (children.every((c) => c.exitCode !== null || c.signalCode !== null)) return;
        process.stderr.write(`switchboard: the ${role} process exited (${signal ?? code}); stopping\n`);
        stopAll(code ?? 1);
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        process.stdout.write(`${line}\n`);
        try {
          const msg = JSON.parse(line) as Record<string, string>;
          if (msg.ready === role) resolve(msg);
        } catch {
          // not a ready line
        }
      });
    });
  process.on("SIGINT", () => stopAll(0));
  process.on("SIGTERM", () => stopAll(0));
  try {
    const api = await run("api", {});
    const edge = await run("edge", { REALTIME_LINK_URL: api.link });
    process.stderr.write(
      `\nSwitchboard is running:\n` +
        `  gRPC API        ${api.grpc}   (realtime.v1.Realtime: Send, Broadcast, GetMembers; reflection on)\n` +
        `  WebSocket edge  ${edge.ws}\n` +
        `Try: npx buf curl --protocol grpc --http2-prior-knowledge -d '{"channel":"lobby","event":"hello","json":{"text":"hi"}}' http://${api.grpc}/realtime.v1.Realtime/Send\n\n`,
    );
  } catch (err) {
    process.stderr.write(`switchboard: ${(err as Error).message}\n`);
    stopAll(1);
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`switchboard: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
