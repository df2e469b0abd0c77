/**
 * The Redis mode's topology as real processes, for tests: API nodes and
 * edges that share one Redis under a key prefix unique to the test, and a
 * redis-server of the test's own when it must stop and restart Redis.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer, Socket } from "node:net";
import { startProcess, type Proc } from "./cluster.js";

/** The machine's Redis that the tests share (each under its own prefix). */
export const SHARED_REDIS_URL = process.env.REALTIME_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export interface Topology {
  apis: Proc[];
  edges: Proc[];
  /** host:port of each API node's gRPC server. */
  grpc: string[];
  /** ws:// URL of each edge. */
  ws: string[];
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** A prefix no other test uses, so that tests can share one Redis. */
export function uniquePrefix(name: string): string {
  return `test:${name}:${randomBytes(4).toString("hex")}:`;
}

/** Starts `apis` API nodes and `edges` edges on one Redis, all on port 0. */
export async function startTopology(apis: number, edges: number, env: NodeJS.ProcessEnv): Promise<Topology> {
  const common = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    ...env,
  };
  const t: Topology = {
    apis: [],
    edges: [],
    grpc: [],
    ws: [],
    env: common,
    async stop() {
      await Promise.all([...t.edges, ...t.apis].map((p) => p.stop()));
    },
  };
  try {
    const started = await Promise.all([
      ...Array.from({ length: apis }, () => startProcess("api", common)),
      ...Array.from({ length: edges }, () => startProcess("edge", common)),
    ]);
    t.apis = started.slice(0, apis);
    t.edges = started.slice(apis);
    t.grpc = t.apis.map((p) => p.ready.grpc!);
    t.ws = t.edges.map((p) => p.ready.ws!);
  } catch (err) {
    await t.stop();
    throw err;
  }
  return t;
}

/** A free TCP port on 127.0.0.1 (free when checked). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A redis-server of the test's own, without persistence, that it can stop and start again. */
export class OwnRedis {
  private child: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error("redis-server did not listen within 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGSTOP: Redis stops answering but keeps its connections and data (a stall). */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  /** SIGCONT: Redis answers again, and runs what was sent to it meanwhile. */
  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** SIGKILL: Redis disappears at once, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.child = undefined;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.connect(port, "127.0.0.1");
  });
}

/** Polls fn until it returns true; throws after timeoutMs. */
export async function eventually(
  fn: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<number> {
  const start = Date.now();
  for (;;) {
    try {
      if (await fn()) return Date.now() - start;
    } catch {
      // not yet
    }
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
