/**
 * What GetMembers costs as a channel grows, in both modes, read straight
 * through the presence layer (no sockets: 100,000 WebSocket clients would
 * measure the edges, not the read):
 *
 * - Redis mode: one edge's RedisPresence fills a channel of a redis-server
 *   of this run's own; an API node's RedisPresence (no edge id) reads it.
 * - Embedded mode: the hub's MemoryPresence, as the API process reads it.
 *
 * For 1k, 10k and 100k members it times the first page of 100 (what
 * GetMembers with page_size 100 and a client's getMembers read), a page in
 * the middle of the channel, PresenceStats (the counts), and a full read
 * (GetMembers without page_size). Medians of PAGE_RUNS (pages, stats) and
 * FULL_RUNS (full reads) calls, wall time at the caller, decoding included.
 *
 *   npx tsx bench/members-cost.ts            (about 1 minute)
 *   npx tsx bench/members-cost.ts --quick    (1k and 10k only)
 *
 * Prints Markdown; docs/scaling.md quotes it. Small on purpose: the machine
 * has two shared cores.
 */
import { create } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import type { Member, PresenceDirectory } from "../src/core/presence.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { RedisPresence } from "../src/redis/presence-redis.js";
import { ownRedis } from "./lib/own-redis.js";

const SIZES = process.argv.includes("--quick") ? [1_000, 10_000] : [1_000, 10_000, 100_000];
const PAGE = 100;
const PAGE_RUNS = 31;
const FULL_RUNS = 5;
/** Adds in flight at once while filling a Redis channel. */
const FILL_WINDOW = 500;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A typical member: a random connection id, a user (two connections each), a short profile. */
function member(i: number): Member {
  return create(MemberSchema, {
    id: randomBytes(8).toString("hex"),
    userId: `user-${Math.floor(i / 2)}`,
    data: { kind: { case: "stringValue", value: `member number ${i}` } },
  });
}

async function time(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

interface Row {
  size: number;
  first: number;
  middle: number;
  stats: number | undefined;
  full: number;
  /** Redis mode: the page script's own time in Redis (INFO commandstats, EVALSHA usec_per_call). */
  redisUs?: number;
}

/** Times one filled channel through `reader`; `middleId` starts a page halfway. */
async function measure(reader: PresenceDirectory, channel: string, size: number, middleId: string): Promise<Row> {
  // A warm-up read, so that script loading and JIT are not measured.
  await reader.page(channel, "", PAGE);
  const first = await time(PAGE_RUNS, () => reader.page(channel, "", PAGE));
  const middle = await time(PAGE_RUNS, () => reader.page(channel, middleId, PAGE));
  const stats = "stats" in reader ? await time(PAGE_RUNS, () => (reader as Stats).stats(channel)) : undefined;
  const full = await time(FULL_RUNS, () => reader.members(channel));
  const got = await reader.members(channel);
  if (got.length !== size) throw new Error(`${channel}: ${got.length} members listed, ${size} added`);
  // Pages of 1000 read every member once, in id order.
  const paged: string[] = [];
  for (let after = "", more = true; more; after = paged.at(-1) ?? "") {
    const page = await reader.page(channel, after, 1000);
    paged.push(...page.members.map((m) => m.id));
    more = page.more;
  }
  const counts = "stats" in reader ? await (reader as Stats).stats(channel) : undefined;
  if (counts && JSON.stringify(counts) !== JSON.stringify({ connections: size, users: size / 2 }))
    throw new Error(`${channel}: counts ${JSON.stringify(counts)}, ${size} connections of ${size / 2} users added`);
  const sorted = got.map((m) => m.id).sort();
  if (paged.join() !== sorted.join()) throw new Error(`${channel}: the pages do not list every member once in order`);
  return { size, first, middle, stats, full };
}

/** PresenceStats, where the presence layer has it. */
interface Stats {
  stats(channel: string): Promise<unknown>;
}

function print(title: string, rows: Row[]): void {
  const redis = rows.some((r) => r.redisUs !== undefined);
  console.log(`\n### ${title}\n`);
  console.log(
    `| members | first page of 100 |${redis ? " of which in Redis |" : ""} page of 100 in the middle | counts (stats) | full read |`,
  );
  console.log(redis ? "|---|---|---|---|---|---|" : "|---|---|---|---|---|");
  for (const r of rows) {
    const stats = r.stats === undefined ? "n/a" : `${r.stats.toFixed(3)} ms`;
    const inRedis = redis ? ` ${r.redisUs?.toFixed(0)} µs |` : "";
    console.log(
      `| ${r.size.toLocaleString("en")} | ${r.first.toFixed(3)} ms |${inRedis} ${r.middle.toFixed(3)} ms | ${stats} | ${r.full.toFixed(2)} ms |`,
    );
  }
}

/** The mean time in Redis of one first-page script, over PAGE_RUNS calls (EVALSHA usec_per_call). */
async function pageUsInRedis(conn: Redis, reader: PresenceDirectory, channel: string): Promise<number> {
  await conn.config("RESETSTAT");
  for (let r = 0; r < PAGE_RUNS; r++) await reader.page(channel, "", PAGE);
  const stats = await conn.info("commandstats");
  const m = /^cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([\d.]+)/m.exec(stats);
  return m ? Number(m[1]) : NaN;
}

async function redisMode(url: string): Promise<Row[]> {
  const prefix = `bench-members:${randomBytes(4).toString("hex")}:`;
  const edgeConn = new Redis(url);
  const apiConn = new Redis(url);
  const report = async () => {};
  const edge = new RedisPresence({ command: edgeConn, prefix, edgeId: "bench-edge", ttlMs: 60_000, report });
  const api = new RedisPresence({ command: apiConn, prefix, ttlMs: 60_000, report });
  edge.start();
  const rows: Row[] = [];
  try {
    for (const size of SIZES) {
      const channel = `room-${size}`;
      const members = Array.from({ length: size }, (_, i) => member(i));
      for (let i = 0; i < size; i += FILL_WINDOW)
        await Promise.all(members.slice(i, i + FILL_WINDOW).map((m) => edge.add(channel, m)));
      const ids = members.map((m) => m.id).sort();
      const row = await measure(api, channel, size, ids[Math.floor(size / 2)]!);
      rows.push({ ...row, redisUs: await pageUsInRedis(apiConn, api, channel) });
    }
  } finally {
    await edge.close();
    await api.close();
    edgeConn.disconnect();
    apiConn.disconnect();
  }
  return rows;
}

async function embeddedMode(): Promise<Row[]> {
  const hub = new MemoryPresence();
  const reader = hub.view("api");
  const rows: Row[] = [];
  for (const size of SIZES) {
    const channel = `room-${size}`;
    const members = Array.from({ length: size }, (_, i) => member(i));
    for (const m of members) hub.add("edge-1", channel, m);
    const ids = members.map((m) => m.id).sort();
    rows.push(await measure(reader, channel, size, ids[Math.floor(size / 2)]!));
  }
  return rows;
}

async function main(): Promise<void> {
  print("Embedded mode (MemoryPresence, in the API process)", await embeddedMode());
  const own = await ownRedis();
  try {
    print("Redis mode (RedisPresence of an API node, one redis-server 7.0)", await redisMode(own.url));
  } finally {
    own.child.kill("SIGKILL");
  }
}

await main();
