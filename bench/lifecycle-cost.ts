/**
 * What the lifecycle sequence (REALTIME_LIFECYCLE, core/lifecycle.ts)
 * costs: CLIENTS anonymous clients on one edge each join and then leave
 * CHANNELS channels of their own (so that every join occupies and every
 * leave vacates: the dearest case, 4 lifecycle events per join and leave),
 * in the Redis mode (one API node, one edge, the local Redis under a prefix
 * of its own) and the embedded mode, with the setting on and off. Reported
 * per run: the edge's CPU per join+leave pair (from /proc), the API's (the
 * hub's, embedded), and Redis's CPU per pair (INFO cpu, the whole server:
 * noisy when others use it).
 *
 *   npx tsx bench/lifecycle-cost.ts                     (500 clients x 4 channels, 3 runs)
 *   npx tsx bench/lifecycle-cost.ts --clients 200 --runs 1
 *
 * Needs Redis on 127.0.0.1:6379 (REDIS_URL to change); deletes its own keys only.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../gen/realtime/client/v1/client_pb.js";
import { startProcess, type Proc } from "../test/helpers/cluster.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const CLIENTS = arg("clients", 500);
const CHANNELS = arg("channels", 4);
const RUNS = arg("runs", 3);
/** Clients running their commands at once. */
const CONCURRENCY = 50;
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/** User + system CPU seconds of a process so far (/proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function redisCpu(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const get = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)![1]);
  return get("used_cpu_sys") + get("used_cpu_user");
}

/** Connects, joins and leaves each of its channels in turn, one command at a time. */
async function client(url: string, n: number): Promise<void> {
  const ws = new WebSocket(`${url}/?echo=false`, "realtime.v1.proto");
  let wake: (() => void) | undefined;
  ws.on("message", (data: Buffer) => {
    const f = fromBinary(ServerFrameSchema, data);
    if (f.frame.case === "connected" || f.frame.case === "reply") wake?.();
  });
  const next = () => new Promise<void>((resolve) => (wake = resolve));
  await next();
  let id = 1;
  const command = async (init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => {
    const answered = next();
    ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ...init, id: id++ })));
    await answered;
  };
  for (let c = 0; c < CHANNELS; c++) {
    await command({ command: { case: "join", value: { channel: `lc-${n}-${c}` } } });
    await command({ command: { case: "leave", value: { channel: `lc-${n}-${c}` } } });
  }
  ws.close();
}

async function runAll(url: string): Promise<void> {
  let next = 0;
  const one = async () => {
    while (next < CLIENTS) await client(url, next++);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, one));
}

async function main(): Promise<void> {
  const redis = new Redis(REDIS_URL);
  const prefix = `bench:lifecycle:${randomBytes(4).toString("hex")}:`;
  console.log(`| mode | REALTIME_LIFECYCLE | run | edge µs/pair | API µs/pair | Redis µs/pair |`);
  console.log("|---|---|---|---|---|---|");
  try {
    for (const mode of ["redis", "embedded"] as const) {
      for (const lifecycle of ["true", "false"]) {
        const env = {
          ...(mode === "redis" ? { REALTIME_REDIS_URL: REDIS_URL, REALTIME_REDIS_PREFIX: prefix } : {}),
          REALTIME_LIFECYCLE: lifecycle,
          REALTIME_GRPC_PORT: "0",
          REALTIME_HTTP_PORT: "0",
          REALTIME_WS_PORT: "0",
          REALTIME_LINK_PORT: "0",
          REALTIME_LOG_LEVEL: "warn",
        };
        const api: Proc = await startProcess("api", env);
        const edge: Proc = await startProcess(
          "edge",
          mode === "embedded" ? { ...env, REALTIME_LINK_URL: api.ready.link! } : env,
        );
        try {
          for (let run = 1; run <= RUNS; run++) {
            const e0 = cpuSeconds(edge.child.pid!);
            const a0 = cpuSeconds(api.child.pid!);
            const r0 = await redisCpu(redis);
            await runAll(edge.ready.ws!);
            const pairs = CLIENTS * CHANNELS;
            const us = (s: number) => ((s / pairs) * 1e6).toFixed(0);
            const r = mode === "redis" ? us((await redisCpu(redis)) - r0) : "-";
            console.log(
              `| ${mode} | ${lifecycle} | ${run} | ${us(cpuSeconds(edge.child.pid!) - e0)} | ${us(cpuSeconds(api.child.pid!) - a0)} | ${r} |`,
            );
            await new Promise((res) => setTimeout(res, 1_000));
          }
        } finally {
          await edge.stop();
          await api.stop();
        }
      }
    }
  } finally {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
}

await main();
