/**
 * Starts the real processes on port 0 for end-to-end tests, and stops them.
 * Each process runs `src/cli.ts` under tsx, so tests exercise the source.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";
import { RUN_ENV } from "./global-setup.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));
const READY_TIMEOUT_MS = 20_000;

export interface Proc {
  child: ChildProcess;
  /** The fields of the process's ready line. */
  ready: Record<string, string>;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** SIGTERM, then SIGKILL after a while; resolves when it exited. */
  stop(): Promise<void>;
  /** SIGKILL: no cleanup. */
  kill(): Promise<void>;
}

const running = new Set<Proc>();

/** The test run's marker for the processes it starts; outside vitest (a bench script) there is no run: "bench". */
export function runMarker(): string {
  try {
    return inject("switchboardTestRun");
  } catch {
    return "bench";
  }
}

/** Starts `switchboard <role>` with env and waits for its ready line. */
export async function startProcess(role: "api" | "edge", env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, role], {
    cwd: ROOT,
    env: { ...process.env, REALTIME_LOG_LEVEL: "warn", [RUN_ENV]: runMarker(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${role} not ready after ${READY_TIMEOUT_MS} ms:\n${stderr}`)),
      READY_TIMEOUT_MS,
    );
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited with ${code} before it was ready:\n${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as Record<string, string>;
        if (msg.ready === role) {
          clearTimeout(timer);
          resolve(msg);
        }
      } catch {
        // not a ready line
      }
    });
  });
  const proc: Proc = {
    child,
    ready,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 8_000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(proc);
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      running.delete(proc);
    },
  };
  running.add(proc);
  return proc;
}

export interface Cluster {
  api: Proc;
  edges: Proc[];
  /** host:port of the gRPC API. */
  grpc: string;
  /** host:port of the API's HTTP port (Connect, gRPC-Web, dashboard). */
  http: string;
  /** ws:// URL of each edge. */
  ws: string[];
  /** Starts one more edge linked to the API (wsPort 0 unless given). */
  addEdge(env?: NodeJS.ProcessEnv): Promise<Proc>;
  stop(): Promise<void>;
}

/** One API process and `edges` edge processes, all on port 0. */
export async function startCluster(edges = 1, env: NodeJS.ProcessEnv = {}): Promise<Cluster> {
  const api = await startProcess("api", {
    REALTIME_GRPC_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    ...env,
  });
  const cluster: Cluster = {
    api,
    edges: [],
    grpc: api.ready.grpc!,
    http: api.ready.http!,
    ws: [],
    async addEdge(extra = {}) {
      const edge = await startProcess("edge", {
        REALTIME_LINK_URL: api.ready.link,
        REALTIME_WS_PORT: "0",
        ...env,
        ...extra,
      });
      cluster.edges.push(edge);
      cluster.ws.push(edge.ready.ws!);
      return edge;
    },
    async stop() {
      await Promise.all(cluster.edges.map((e) => e.stop()));
      await api.stop();
    },
  };
  try {
    for (let i = 0; i < edges; i++) await cluster.addEdge();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Stops every process a test file started and did not stop (afterAll safety net). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill()));
}
