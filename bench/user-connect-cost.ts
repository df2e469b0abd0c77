/**
 * What a user's connection costs at connect now that its edge subscribes to
 * the user's control channel (#user:<id>, core/control-channels.ts) before
 * it sends Connected: CONNECTIONS clients connect to one edge on Redis (one
 * API node, one edge, the local Redis under a prefix of its own), with
 * tokens of CONNECTIONS distinct users (a SUBSCRIBE each), then of one user
 * (one SUBSCRIBE in all), then anonymous (none). Reported per run: the time
 * until every client has its Connected frame, and the edge's CPU per
 * connection over that time (from /proc). The difference between distinct
 * users and one user is the subscription's cost; both verify a JWT.
 *
 *   npx tsx bench/user-connect-cost.ts                   (2,000 connections, 3 runs)
 *   npx tsx bench/user-connect-cost.ts --connections 5000 --runs 1
 *
 * Needs Redis on 127.0.0.1:6379 (REDIS_URL to change); deletes its own keys only.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import WebSocket from "ws";
import { startProcess } from "../test/helpers/cluster.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const CONNECTIONS = arg("connections", 2_000);
const RUNS = arg("runs", 3);
/** Clients connecting at once. */
const CONCURRENCY = 100;
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const SECRET = "user-connect-cost-secret-0123456789abcdef";

/** User + system CPU seconds of a process so far (/proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const token = (sub: string) =>
  new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(SECRET));

async function connectAll(url: string, users: (i: number) => string | undefined): Promise<WebSocket[]> {
  const tokens = await Promise.all(
    Array.from({ length: CONNECTIONS }, (_, i) => {
      const u = users(i);
      return u === undefined ? Promise.resolve(undefined) : token(u);
    }),
  );
  const sockets: WebSocket[] = [];
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < CONNECTIONS) {
      const t = tokens[next++];
      const ws = new WebSocket(t ? `${url}/?token=${t}` : url, "realtime.v1.proto");
      sockets.push(ws);
      await new Promise<void>((resolve, reject) => {
        ws.once("message", () => resolve()); // the first frame is Connected
        ws.once("error", reject);
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, one));
  return sockets;
}

async function main(): Promise<void> {
  const prefix = `bench:user-connect:${randomBytes(4).toString("hex")}:`;
  const env = {
    REALTIME_REDIS_URL: REDIS_URL,
    REALTIME_REDIS_PREFIX: prefix,
    REALTIME_JWT_SECRET: SECRET,
    REALTIME_ALLOW_ANONYMOUS: "true",
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_LOG_LEVEL: "warn",
  };
  const api = await startProcess("api", env);
  const edge = await startProcess("edge", env);
  const url = edge.ready.ws!;
  const cases: [string, (i: number) => string | undefined][] = [
    ["distinct users (a SUBSCRIBE each)", (i) => `user-${i}`],
    ["one user (one SUBSCRIBE)", () => "the-user"],
    ["anonymous (none)", () => undefined],
  ];
  console.log(`| clients (${CONNECTIONS.toLocaleString("en-US")}) | run | all Connected, s | edge CPU µs/connection |`);
  console.log("|---|---|---|---|");
  try {
    for (let run = 1; run <= RUNS; run++) {
      for (const [name, users] of cases) {
        const cpu0 = cpuSeconds(edge.child.pid!);
        const t0 = performance.now();
        const sockets = await connectAll(url, users);
        const seconds = (performance.now() - t0) / 1000;
        const cpu = cpuSeconds(edge.child.pid!) - cpu0;
        console.log(`| ${name} | ${run} | ${seconds.toFixed(2)} | ${((cpu / CONNECTIONS) * 1e6).toFixed(0)} |`);
        for (const ws of sockets) ws.terminate();
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
  } finally {
    await edge.stop();
    await api.stop();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
}

await main();
