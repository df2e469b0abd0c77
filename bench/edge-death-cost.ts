/**
 * What an edge's death costs in the Redis mode: an edge holding 50,000
 * memberships (10,000 members in each of 5 channels) stops heartbeating
 * (its liveness dropped, as when it is killed), and an API node's sweep
 * removes them step by step (REDIS_SWEEP_STEP_MEMBERS per script) and
 * announces each leave through its membership room, published with a
 * RedisBroker; a second node subscribed to the 5 channels (an edge's
 * broker) counts the channel:leave publications that reach it.
 *
 * It reports: the time from the death until every leave reached the
 * subscribing edge, the sweep steps, and the longest script Redis ran
 * meanwhile (its SLOWLOG, every command over 1 ms), against
 * REDIS_SCRIPT_BUDGET_MS. A redis-server of the run's own.
 *
 *   npx tsx bench/edge-death-cost.ts                 (about 1 minute)
 *   npx tsx bench/edge-death-cost.ts --members 2000  (a quick one)
 *
 * Prints Markdown; docs/scaling.md quotes it.
 */
import { create } from "@bufbuild/protobuf";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { Membership } from "../src/core/membership.js";
import type { PresenceChange } from "../src/core/presence.js";
import { IdGenerator } from "../src/core/publication.js";
import { isSystemEventBytes } from "../src/wire/event-codec.js";
import { RedisBroker } from "../src/redis/broker-redis.js";
import { REDIS_SCRIPT_BUDGET_MS, REDIS_SWEEP_STEP_MEMBERS } from "../src/redis/limits.js";
import { RedisPresence } from "../src/redis/presence-redis.js";
import { ownRedis } from "./lib/own-redis.js";

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const MEMBERS = arg("members", 10_000);
const CHANNELS = 5;
const TTL_MS = 3_000;
const FILL_WINDOW = 500;

const { url, child } = await ownRedis({ args: ["--slowlog-log-slower-than", "1000", "--slowlog-max-len", "10000"] });
const conns: Redis[] = [];
const redis = () => {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  conns.push(r);
  return r;
};
const prefix = "death:";
try {
  const channels = Array.from({ length: CHANNELS }, (_, i) => `room-${i}`);
  const edge = new RedisPresence({ command: redis(), prefix, edgeId: "doomed", ttlMs: TTL_MS, report: async () => {} });
  edge.start();
  const t0 = performance.now();
  for (const channel of channels) {
    for (let i = 0; i < MEMBERS; i += FILL_WINDOW) {
      await Promise.all(
        Array.from({ length: Math.min(FILL_WINDOW, MEMBERS - i) }, (_, k) =>
          edge.add(
            channel,
            create(MemberSchema, {
              id: `conn-${i + k}`,
              userId: `user-${i + k}`,
              data: { kind: { case: "stringValue", value: `member ${i + k}` } },
            }),
          ),
        ),
      );
    }
  }
  const fillMs = performance.now() - t0;

  // Re-registration: Redis loses everything (this run's own redis-server); the edge's next
  // heartbeat finds itself unregistered and writes back all it holds, in steps.
  const probe = redis();
  await probe.slowlog("RESET");
  const lost = performance.now();
  await probe.flushall();
  const counts = async () => {
    let sum = 0;
    for (const channel of channels) sum += (await edge.stats(channel)).connections;
    return sum;
  };
  while ((await counts()) < MEMBERS * CHANNELS) await new Promise((r) => setTimeout(r, 20));
  const resyncMs = performance.now() - lost;
  const syncLog = (await probe.slowlog("GET", 10_000)) as [number, number, number, string[]][];
  // The FLUSHALL that stands for the loss is not the sync's.
  const syncLongest =
    syncLog.filter((e) => e[3][0]?.toLowerCase() !== "flushall").reduce((max, e) => Math.max(max, e[2]), 0) / 1000;

  // The subscribing edge: counts the leaves that reach it.
  let leaves = 0;
  let allIn: () => void;
  const done = new Promise<void>((resolve) => (allIn = resolve));
  const total = MEMBERS * CHANNELS;
  const watcher = new RedisBroker({
    command: redis(),
    subscriber: redis(),
    prefix,
    edge: true,
    onPublication: (pub) => {
      if (isSystemEventBytes(pub.event) && ++leaves === total) allIn();
    },
  });
  await watcher.start();
  for (const channel of channels) await watcher.subscribe(channel);

  // The API node: sweeps, announces through its membership room.
  const apiCommand = redis();
  const broker = new RedisBroker({ command: apiCommand, subscriber: redis(), prefix, edge: false });
  await broker.start();
  const membership = new Membership({ broker, eventIds: new IdGenerator() });
  const steps: number[] = [];
  const sweeper = new RedisPresence({
    command: apiCommand,
    prefix,
    ttlMs: TTL_MS,
    report: async (changes: readonly PresenceChange[]) => {
      if (changes.length > 0) steps.push(changes.length);
      await membership.announce(changes);
    },
  });
  // The sweeps before the death (a first attempt starts the stall grace of one TTL).
  sweeper.start();
  await new Promise((r) => setTimeout(r, TTL_MS + 500));
  await redis().slowlog("RESET");

  const died = performance.now();
  await edge.close(); // it holds members: it drops its liveness, unregistering nothing
  await done;
  const allMs = performance.now() - died;

  const slow = (await redis().slowlog("GET", 10_000)) as [number, number, number, string[]][];
  const isSweep = (e: (typeof slow)[number]) => e[3].includes(`${prefix}sweep-lock`);
  const ms = (es: typeof slow) => es.reduce((max, e) => Math.max(max, e[2]), 0) / 1000;
  const longestSweep = ms(slow.filter(isSweep));
  const sweepMs = slow
    .filter(isSweep)
    .map((e) => e[2] / 1000)
    .sort((a, b) => a - b);
  const medianSweep = sweepMs[Math.floor(sweepMs.length / 2)] ?? 0;
  const longestOther = ms(slow.filter((e) => !isSweep(e)));
  console.log(`### An edge with ${(MEMBERS * CHANNELS).toLocaleString("en")} memberships re-registers (Redis mode)\n`);
  console.log("| all back after Redis lost them | longest command meanwhile (but the FLUSHALL) | budget |");
  console.log("|---|---|---|");
  console.log(
    `| ${(resyncMs / 1000).toFixed(1)} s (up to a heartbeat, ${Math.round(TTL_MS / 3)} ms, to notice) | ${syncLongest.toFixed(1)} ms | ${REDIS_SCRIPT_BUDGET_MS} ms |\n`,
  );
  console.log(`### An edge with ${total.toLocaleString("en")} memberships dies (Redis mode)\n`);
  console.log(
    `${MEMBERS.toLocaleString("en")} members in each of ${CHANNELS} channels, filled in ${(fillMs / 1000).toFixed(1)} s; liveness TTL ${TTL_MS} ms; sweep steps of at most ${REDIS_SWEEP_STEP_MEMBERS}.\n`,
  );
  console.log(
    "| leaves | all at the subscribing edge after the death | sweep steps | leaves/s | commands over 1 ms | sweep step median / longest | longest other command | budget |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${leaves} | ${(allMs / 1000).toFixed(1)} s (of which up to ${TTL_MS / 1000} s waiting for the TTL) | ${steps.length} | ${Math.round(total / (allMs / 1000)).toLocaleString("en")} | ${slow.length} | ${medianSweep.toFixed(1)} / ${longestSweep.toFixed(1)} ms | ${longestOther.toFixed(1)} ms | ${REDIS_SCRIPT_BUDGET_MS} ms |`,
  );
  await sweeper.close();
  membership.close();
  broker.close();
  watcher.close();
} finally {
  for (const c of conns) c.disconnect();
  child.kill("SIGKILL");
}
