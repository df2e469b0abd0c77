/**
 * The Redis mode's topology as real processes, for tests: API nodes and
 * edges that share the run's Redis under a key prefix unique to the test,
 * and a redis-server of the test's own when it must stop and restart Redis.
 *
 * The run's Redis is found once by the global setup (global-setup.ts): a
 * redis-server of the run's own, or REALTIME_TEST_REDIS_URL. Without one a
 * Redis suite is skipped (describe.skipIf(NO_REDIS)), the reason printed
 * once; under CI=true it runs and fails instead.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { inject } from "vitest";
import { startProcess, stopAll, type Proc } from "./cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./grpc-client.js";
import { TestClient } from "./ws-client.js";
import { answersPing } from "./net.js";

import { freePort } from "./net.js";

export { freePort };

const IN_CI = process.env.CI === "true";
const TEST_REDIS = inject("switchboardRedis");

/** The run's Redis (each test under its own prefix); throws, with the reason, when there is none. */
export function testRedisUrl(): string {
  if (TEST_REDIS.url === null) throw new Error(`no Redis for the tests: ${TEST_REDIS.note}`);
  return TEST_REDIS.url;
}

/** Skip a suite that needs the run's Redis: there is none, and this is not CI. */
export const NO_REDIS = TEST_REDIS.url === null && !IN_CI;
/** Skip a suite that starts a redis-server of its own: none can be run, and this is not CI. */
export const NO_REDIS_SERVER = TEST_REDIS.server === null && !IN_CI;

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

/**
 * Deletes every key of the run's Redis under prefix (a test's own, from
 * uniquePrefix), so that a test leaves nothing behind; never anything else.
 */
export async function deletePrefix(prefix: string): Promise<void> {
  const redis = new Redis(testRedisUrl());
  try {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
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

/** A redis-server of the test's own, without persistence, that it can stop and start again. */
export class OwnRedis {
  private child: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(
      TEST_REDIS.server ?? "redis-server",
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(this.url, 1_000))) {
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

/**
 * A redis-server of the test's own with `apis` API nodes and `edges` edges
 * on it (under a unique prefix), gRPC clients of the API nodes, and the
 * WebSocket clients the test opens with client(); stop() ends them all.
 */
export interface OwnTopology {
  redis: OwnRedis;
  topology: Topology;
  apis: RealtimeTestClient[];
  /** A JSON WebSocket client of edge number `edge`, closed by stop(). */
  client(edge: number): Promise<TestClient>;
  stop(): Promise<void>;
}

export async function startOwnTopology(
  name: string,
  apis: number,
  edges: number,
  env: NodeJS.ProcessEnv = {},
): Promise<OwnTopology> {
  const redis = new OwnRedis(await freePort());
  await redis.start();
  const clients: TestClient[] = [];
  const own: OwnTopology = {
    redis,
    topology: undefined as unknown as Topology,
    apis: [],
    async client(edge) {
      const c = await TestClient.connect(own.topology.ws[edge]!, "json");
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.close()));
      for (const api of own.apis) api.close();
      await own.topology?.stop();
      await stopAll();
      await redis.kill();
    },
  };
  try {
    own.topology = await startTopology(apis, edges, {
      REALTIME_REDIS_URL: redis.url,
      REALTIME_REDIS_PREFIX: uniquePrefix(name),
      ...env,
    });
  } catch (err) {
    await redis.kill();
    throw err;
  }
  own.apis = own.topology.grpc.map((address) => realtimeClient(address));
  return own;
}
