/**
 * What history costs in the Redis mode, on a redis-server of this run's own:
 *
 * 1. Redis memory per history entry (MEMORY USAGE of a channel's keys with
 *    N entries of a typical publication, and INFO memory over many
 *    channels);
 * 2. Redis CPU per publish: INFO commandstats usec_per_call of the history
 *    script (EVALSHA, its inner commands included) against a plain SPUBLISH
 *    of the same bytes;
 * 3. publish -> receive latency through Redis and the Node CPU per publish
 *    (an API node's RedisBroker to an edge's, in this process), with the
 *    channel's history on and off, sequential, medians of RUNS runs.
 *
 *   npx tsx bench/redis-history.ts                (about 40 s)
 *   npx tsx bench/redis-history.ts --redis-only   (1 and 2 only)
 *
 * Prints Markdown; docs/scaling.md quotes it. Small on purpose: the machine
 * has two shared cores.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { performance } from "node:perf_hooks";
import { PublicationSchema } from "../gen/realtime/link/v1/link_pb.js";
import { positionFields, RedisBroker } from "../src/redis/broker-redis.js";
import { closeRedis, connectRedis, openRedis } from "../src/redis/connection.js";
import { RedisHistory } from "../src/redis/history-redis.js";
import { ownRedis } from "./lib/own-redis.js";

const SIZES = [10, 100, 1000];
const CHANNELS_FOR_INFO = 1000;
const PUBLISHES_FOR_CPU = 20_000;
const SENDS = 2_000;
const RUNS = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * A typical publication: a 120-byte binary event and its 160-character JSON
 * (no accept time: no field above the position, which goes at its end).
 */
function typical(channel: string): Buffer {
  return Buffer.from(
    toBinary(
      PublicationSchema,
      create(PublicationSchema, { channel, event: new Uint8Array(120), eventJson: "x".repeat(160), origin: "" }),
    ),
  );
}

async function memory(redis: Redis): Promise<void> {
  const history = new RedisHistory(redis, "bench:", positionFields());
  const bytes = typical("room");
  console.log(`\n### Redis memory per history entry (${bytes.length}-byte publication)\n`);
  console.log("| entries | MEMORY USAGE of the list | per entry | the position key |");
  console.log("|---|---|---|---|");
  for (const size of SIZES) {
    const name = `bench:c:mem${size}`;
    for (let i = 0; i < size; i++) await history.publish(name, bytes, bytes.length, { size, ageMs: 600_000 }, true);
    const [position, list] = history.keys(name);
    const usage = Number(await redis.call("MEMORY", "USAGE", list, "SAMPLES", "0"));
    const meta = Number(await redis.call("MEMORY", "USAGE", position, "SAMPLES", "0"));
    console.log(`| ${size} | ${usage} B | ${(usage / size).toFixed(1)} B | ${meta} B |`);
  }
  // Over many channels of 100 entries: what INFO memory says, per entry.
  await redis.flushall();
  const before = Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
  for (let c = 0; c < CHANNELS_FOR_INFO; c++) {
    const name = `bench:c:info${c}`;
    await Promise.all(
      Array.from({ length: 100 }, () =>
        history.publish(name, bytes, bytes.length, { size: 100, ageMs: 600_000 }, true),
      ),
    );
  }
  const after = Number(/used_memory:(\d+)/.exec(await redis.info("memory"))![1]);
  console.log(
    `\nINFO memory, ${CHANNELS_FOR_INFO} channels x 100 entries: ${((after - before) / 1e6).toFixed(1)} MB, ${((after - before) / (CHANNELS_FOR_INFO * 100)).toFixed(1)} B per entry (position hashes included)`,
  );
  await redis.flushall();
}

async function cpu(redis: Redis): Promise<void> {
  const history = new RedisHistory(redis, "bench:", positionFields());
  const bytes = typical("room");
  await redis.config("RESETSTAT");
  // In flight 64 at a time, like a busy node's pipeline.
  for (let i = 0; i < PUBLISHES_FOR_CPU; i += 64)
    await Promise.all(
      Array.from({ length: 64 }, (_, k) =>
        history.publish(`bench:c:cpu${(i + k) % 20}`, bytes, bytes.length, { size: 100, ageMs: 120_000 }, true),
      ),
    );
  for (let i = 0; i < PUBLISHES_FOR_CPU; i += 64)
    await Promise.all(Array.from({ length: 64 }, (_, k) => redis.spublish(`bench:c:cpu${(i + k) % 20}`, bytes)));
  const stats = await redis.info("commandstats");
  const usec = (cmd: string) => {
    const m = new RegExp(`^cmdstat_${cmd}:calls=(\\d+),usec=(\\d+),usec_per_call=([\\d.]+)`, "m").exec(stats);
    return m ? { calls: Number(m[1]), perCall: Number(m[3]) } : { calls: 0, perCall: NaN };
  };
  const evalsha = usec("evalsha");
  const spublish = usec("spublish");
  console.log(`\n### Redis CPU per publish (${PUBLISHES_FOR_CPU} each, 20 channels, no subscriber)\n`);
  console.log("| command | calls | usec_per_call |");
  console.log("|---|---|---|");
  console.log(`| EVALSHA (history script, inner commands included) | ${evalsha.calls} | ${evalsha.perCall} |`);
  console.log(`| SPUBLISH (history off; inside the script too) | ${spublish.calls} | ${spublish.perCall} |`);
  for (const cmd of ["get", "set", "time", "lpush", "ltrim", "lindex", "pexpire"]) {
    const u = usec(cmd);
    console.log(`| ${cmd.toUpperCase()} (inside the script) | ${u.calls} | ${u.perCall} |`);
  }
  await redis.flushall();
}

/**
 * Publish -> receive through Redis between two RedisBrokers of this process
 * (an API node's and an edge's, each with its own connections), sequential,
 * with the channel's history on or off; and this process's CPU per publish
 * (both ends: encode, the script or SPUBLISH, decode).
 */
async function publishes(url: string, historyOn: boolean): Promise<{ p50: number; cpu: number }> {
  const conns = [0, 1, 2, 3].map((i) => openRedis(url, `bench:${i}`));
  await Promise.all(conns.map((c) => connectRedis(c, 5_000)));
  const history = () => (historyOn ? { size: 100, ageMs: 120_000 } : undefined);
  let waiting: (() => void) | undefined;
  const api = new RedisBroker({ command: conns[0]!, subscriber: conns[1]!, prefix: "bench:", edge: false, history });
  const edge = new RedisBroker({
    command: conns[2]!,
    subscriber: conns[3]!,
    prefix: "bench:",
    edge: true,
    history,
    onPublication: () => waiting?.(),
  });
  await Promise.all([api.start(), edge.start()]);
  await edge.subscribe("lat");
  const bytes = typical("lat");
  const pub = {
    channel: "lat",
    event: bytes.subarray(0, 120),
    eventJson: "x".repeat(160),
    origin: "",
    skipOrigin: false,
  };
  const latencies: number[] = [];
  const one = async () => {
    const got = new Promise<void>((r) => (waiting = r));
    const t = performance.now();
    await api.publish(pub);
    await got;
    latencies.push(performance.now() - t);
  };
  for (let i = 0; i < 200; i++) await one();
  latencies.length = 0;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < SENDS; i++) await one();
  const cpu1 = process.cpuUsage(cpu0);
  api.close();
  edge.close();
  await Promise.all(conns.map((c) => closeRedis(c)));
  return { p50: median(latencies), cpu: (cpu1.user + cpu1.system) / SENDS };
}

async function main(): Promise<void> {
  const own = await ownRedis();
  const redis = new Redis(own.url);
  try {
    await memory(redis);
    await cpu(redis);
    if (process.argv.includes("--redis-only")) return;
    console.log(
      `\n### RedisBroker publish -> receive, sequential, ${SENDS} per run, runs alternating, medians of ${RUNS} runs\n`,
    );
    console.log("| history | p50 latency (per run) | Node CPU per publish, both ends (per run) |");
    console.log("|---|---|---|");
    const runs: Record<string, { p50: number; cpu: number }[]> = { off: [], on: [] };
    for (let r = 0; r < RUNS; r++)
      for (const on of [false, true]) runs[on ? "on" : "off"]!.push(await publishes(own.url, on));
    for (const [name, rs] of Object.entries(runs)) {
      console.log(
        `| ${name} | ${median(rs.map((x) => x.p50)).toFixed(3)} ms (${rs.map((x) => x.p50.toFixed(3)).join(", ")}) | ${median(rs.map((x) => x.cpu)).toFixed(0)} µs (${rs.map((x) => x.cpu.toFixed(0)).join(", ")}) |`,
      );
    }
  } finally {
    redis.disconnect();
    own.child.kill("SIGKILL");
  }
}

await main();
