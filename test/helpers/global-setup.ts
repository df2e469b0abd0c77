/**
 * Vitest global setup: marks every process the tests start with this run's
 * id, and after the run kills any that a test file left behind (a file whose
 * hooks timed out never reaches its stop()). Linux /proc only; elsewhere the
 * teardown does nothing.
 *
 * It also finds the run a Redis, once, for the Redis tests (see
 * redis-topology.ts): REALTIME_TEST_REDIS_URL if set (it must answer), else
 * a redis-server of the run's own on a free port (REALTIME_TEST_REDIS_SERVER
 * names the binary, redis-server by default), so that the tests never touch
 * a Redis the machine shares. Without either the Redis tests are skipped,
 * with the reason printed here once (under CI=true they run and fail).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { TestProject } from "vitest/node";
import { answersPing, freePort } from "./net.js";

/** The environment variable that marks a process started by this run's tests. */
export const RUN_ENV = "SWITCHBOARD_TEST_RUN";

/** The Redis of the run, or why there is none. */
export interface TestRedis {
  /** redis://host:port to use, or null: the Redis tests are skipped (run and fail under CI=true). */
  url: string | null;
  /** Why there is no url, or where it came from. */
  note: string;
  /** The redis-server binary, for tests that start, stop and pause a Redis of their own; null: none works. */
  server: string | null;
}

declare module "vitest" {
  export interface ProvidedContext {
    switchboardTestRun: string;
    switchboardRedis: TestRedis;
  }
}

/** How long a redis-server has to listen, and an explicit Redis to answer PING. */
const REDIS_START_TIMEOUT_MS = 10_000;
const REDIS_PING_TIMEOUT_MS = 2_000;

export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const run = randomBytes(8).toString("hex");
  // Only the processes test/helpers/cluster.ts starts carry it, not vitest's own.
  project.provide("switchboardTestRun", run);
  const { redis, server } = await findRedis();
  project.provide("switchboardRedis", redis);
  if (redis.url === null) {
    console.warn(
      `redis: SKIPPED: ${redis.note}; the Redis tests (test/redis-*.test.ts, and one of health-http) are skipped; under CI=true they run and fail instead`,
    );
  } else if (redis.server === null) {
    console.warn(
      `redis: test/redis-outage.test.ts SKIPPED: it starts and stops a redis-server of its own, and ${process.env.REALTIME_TEST_REDIS_SERVER || "redis-server"} cannot be run; under CI=true it runs and fails instead`,
    );
  }
  return async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGKILL");
      await exited;
    }
    killLeftovers(run);
  };
}

async function findRedis(): Promise<{ redis: TestRedis; server?: ChildProcess }> {
  const binary = process.env.REALTIME_TEST_REDIS_SERVER || "redis-server";
  const explicit = process.env.REALTIME_TEST_REDIS_URL;
  const works = await binaryWorks(binary);
  if (explicit) {
    const shown = withoutPassword(explicit);
    return (await answersPing(explicit, REDIS_PING_TIMEOUT_MS))
      ? { redis: { url: explicit, note: `REALTIME_TEST_REDIS_URL=${shown}`, server: works ? binary : null } }
      : {
          redis: {
            url: null,
            note: `REALTIME_TEST_REDIS_URL=${shown} does not answer PING within ${REDIS_PING_TIMEOUT_MS} ms`,
            server: works ? binary : null,
          },
        };
  }
  if (!works)
    return {
      redis: {
        url: null,
        note: `${binary} cannot be run (apt-get install redis-server, or set REALTIME_TEST_REDIS_SERVER to the binary, or REALTIME_TEST_REDIS_URL to a Redis the tests may use)`,
        server: null,
      },
    };
  try {
    const { port, child } = await startRedisServer(binary);
    return {
      redis: { url: `redis://127.0.0.1:${port}`, note: `${binary} of this run`, server: binary },
      server: child,
    };
  } catch (err) {
    return { redis: { url: null, note: `${binary} did not start: ${(err as Error).message}`, server: null } };
  }
}

function binaryWorks(binary: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(binary, ["--version"], { stdio: "ignore" });
    child.once("error", () => resolve(false));
    child.once("exit", (code) => resolve(code === 0));
  });
}

/** A redis-server without persistence on a free port of 127.0.0.1 (another port if that one was taken meanwhile). */
async function startRedisServer(binary: string): Promise<{ port: number; child: ChildProcess }> {
  let last: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    const deadline = Date.now() + REDIS_START_TIMEOUT_MS;
    while (child.exitCode === null && Date.now() < deadline) {
      if (await answersPing(`redis://127.0.0.1:${port}`)) return { port, child };
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGKILL");
    last = new Error(`no answer on 127.0.0.1:${port} within ${REDIS_START_TIMEOUT_MS} ms`);
  }
  throw last!;
}

function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(not a URL)";
  }
}

function killLeftovers(run: string): void {
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`${RUN_ENV}=${run}`)) {
        process.kill(Number(pid), "SIGKILL");
        console.warn(`test teardown: killed process ${pid}, left running by a test`);
      }
    } catch {
      // gone already, or not ours to read
    }
  }
}
