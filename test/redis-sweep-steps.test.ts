/**
 * The Redis sweep of a dead edge in bounded steps: each step removes at
 * most REDIS_SWEEP_STEP_MEMBERS of its memberships (read from the edge's
 * own index, not from whole channels) and its leaves are reported before
 * the next. Real Redis (the run's), real RedisPresence instances: an edge
 * that stops heartbeating (its liveness dropped, as when it is killed) and
 * a node that sweeps.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { memberChanges, type MemberChange } from "../src/core/presence.js";
import { REDIS_SWEEP_STEP_MEMBERS, REDIS_SYNC_STEP_MEMBERS } from "../src/redis/limits.js";
import { connectRedis, openRedis, type RedisCommands } from "../src/redis/connection.js";
import { RedisPresence } from "../src/redis/presence-redis.js";
import { deletePrefix, eventually, NO_REDIS, testRedisUrl, uniquePrefix } from "./helpers/redis-topology.js";

const TTL_MS = 1_000;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** An edge and a sweeping node on a prefix of their own; reports are collected per call (one per step). */
function setup(edgeId = "dead") {
  const prefix = uniquePrefix("sweep-steps");
  const conns = [new Redis(testRedisUrl()), new Redis(testRedisUrl()), new Redis(testRedisUrl())];
  const steps: MemberChange[][] = [];
  const edge = new RedisPresence({ command: conns[0]!, prefix, edgeId, ttlMs: TTL_MS, report: async () => {} });
  const sweeper = new RedisPresence({
    command: conns[1]!,
    prefix,
    ttlMs: TTL_MS,
    report: async (changes) => {
      if (memberChanges(changes).length > 0) steps.push(memberChanges(changes));
    },
  });
  cleanups.push(async () => {
    await edge.close();
    await sweeper.close();
    for (const c of conns) c.disconnect();
    await deletePrefix(prefix);
  });
  edge.start();
  return { prefix, edge, sweeper, steps, redis: conns[2]!, start: () => sweeper.start() };
}

const member = (id: string) => create(MemberSchema, { id, userId: `u${Number(id.slice(1)) % 97}` });

/** Adds n members to each channel, in parallel batches. */
async function fill(edge: RedisPresence, channels: string[], n: number): Promise<void> {
  for (const channel of channels) {
    for (let i = 0; i < n; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => edge.add(channel, member(`m${i + k}`))));
    }
  }
}

/** An edge "e" on a prefix of its own over command, counting its syncs and collecting what it reports. */
function syncingEdge(name: string, command: RedisCommands) {
  const prefix = uniquePrefix(name);
  const redis = new Redis(testRedisUrl());
  const reported: MemberChange[] = [];
  const errors: string[] = [];
  const counts = { syncs: 0 };
  const edge = new RedisPresence({
    command,
    prefix,
    edgeId: "e",
    ttlMs: TTL_MS,
    report: async (changes) => void reported.push(...memberChanges(changes)),
    onSynced: () => void counts.syncs++,
    onError: (_err, context) => void errors.push(context),
  });
  cleanups.push(async () => {
    await edge.close();
    command.disconnect();
    redis.disconnect();
    await deletePrefix(prefix);
  });
  edge.start();
  return { prefix, redis, edge, reported, errors, counts };
}

/** Two entries of edge "e" in channel a that it no longer holds (their removals never reached Redis). */
async function staleEntries(redis: Redis, prefix: string): Promise<void> {
  const stale = (id: string) => Buffer.concat([Buffer.from("e:"), Buffer.from(toBinary(MemberSchema, member(id)))]);
  await redis.hset(`${prefix}m:a`, "gone1", stale("gone1"), "gone2", stale("gone2"));
  await redis.zadd(`${prefix}mi:a`, 0, "gone1", 0, "gone2");
  await redis.sadd(`${prefix}edge:e:members`, "a\0gone1", "a\0gone2");
}

/** After a complete sync: the stale entries left once each, and Redis holds exactly the edge's n members of channel a. */
async function expectExact(s: ReturnType<typeof syncingEdge>, n: number): Promise<void> {
  const { prefix, redis, edge, reported } = s;
  expect(reported.map((c) => [c.kind, c.member.id]).sort()).toEqual([
    ["leave", "gone1"],
    ["leave", "gone2"],
  ]);
  expect((await edge.members("a")).length).toBe(n);
  expect(await edge.stats("a")).toEqual({ connections: n, users: 97 });
  expect(await redis.scard(`${prefix}edge:e:members`)).toBe(n);
  expect(await redis.exists(`${prefix}edge:e:members-old`)).toBe(0);
  expect(await redis.sismember(`${prefix}edges`, "e")).toBe(1);
}

describe.skipIf(NO_REDIS)("Redis sweep in steps", () => {
  it("an edge with 3× a step of memberships: every leave reported once, in steps of at most the bound; counts and keys end clean", async () => {
    const { prefix, edge, sweeper, steps, redis, start } = setup();
    const per = Math.ceil((REDIS_SWEEP_STEP_MEMBERS * 3) / 2);
    await fill(edge, ["a", "b"], per);
    // A member of another, live edge stays. That edge sweeps too (every node does, whoever takes the
    // lock): what it reports counts as well.
    const liveConn = new Redis(testRedisUrl());
    const live = new RedisPresence({
      command: liveConn,
      prefix,
      edgeId: "live",
      ttlMs: TTL_MS,
      report: async (changes) => {
        if (memberChanges(changes).length > 0) steps.push(memberChanges(changes));
      },
    });
    cleanups.unshift(async () => {
      await live.close();
      liveConn.disconnect();
    });
    live.start();
    await live.add("a", member("x1"));
    // The edge dies: no more heartbeats, its liveness gone.
    await edge.close();
    await redis.del(`${prefix}edge:dead`);
    start();
    await eventually(() => steps.flat().length >= per * 2, 30_000, "every leave reported");
    await sweeper.sweep();
    const all = steps.flat();
    expect(all.length).toBe(per * 2);
    expect(new Set(all.map((c) => `${c.channel}/${c.member.id}`)).size).toBe(per * 2);
    expect(all.every((c) => c.kind === "leave" && c.member.userId !== "")).toBe(true);
    expect(steps.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...steps.map((s) => s.length))).toBeLessThanOrEqual(REDIS_SWEEP_STEP_MEMBERS);
    expect((await sweeper.members("a")).map((m) => m.id)).toEqual(["x1"]);
    expect(await sweeper.members("b")).toEqual([]);
    expect(await sweeper.stats("a")).toEqual({ connections: 1, users: 1 });
    const left = await redis.keys(`${prefix}edge:dead*`);
    expect(left.filter((k) => !k.endsWith(":swept"))).toEqual([]);
    expect(await redis.smembers(`${prefix}sweeping`)).toEqual([]);
  }, 60_000);

  it("an edge of an earlier version (no members index) is swept channel by channel, each leave once", async () => {
    const { prefix, edge, steps, redis, start } = setup();
    await fill(edge, ["a", "b", "c"], 50);
    await edge.close();
    // What an edge registered before the index leaves in Redis: no index, no mark.
    await redis.del(`${prefix}edge:dead:members`, `${prefix}edge:dead:indexed`, `${prefix}edge:dead`);
    start();
    await eventually(() => steps.flat().length >= 150, 30_000, "every leave reported");
    expect(new Set(steps.flat().map((c) => `${c.channel}/${c.member.id}`)).size).toBe(150);
    expect(steps.map((s) => new Set(s.map((c) => c.channel)).size).every((n) => n === 1)).toBe(true);
  }, 60_000);

  it("an edge that comes back while being swept takes the rest over: all it holds is back, each leave reported once and answered by a join", async () => {
    const prefix = uniquePrefix("sweep-steps");
    const conns = [new Redis(testRedisUrl()), new Redis(testRedisUrl()), new Redis(testRedisUrl())];
    const redis = conns[2]!;
    const leaves: MemberChange[] = [];
    const joins: MemberChange[] = [];
    let synced!: () => void;
    const back = new Promise<void>((resolve) => (synced = resolve));
    let edgeBack = false;
    // Not started: no heartbeats (its first add registers it), so its liveness stays gone once deleted.
    const edge = new RedisPresence({
      command: conns[0]!,
      prefix,
      edgeId: "dead",
      ttlMs: TTL_MS,
      report: async (changes) => void joins.push(...memberChanges(changes)),
      onSynced: () => {
        if (edgeBack) synced();
      },
    });
    const sweeper = new RedisPresence({
      command: conns[1]!,
      prefix,
      ttlMs: TTL_MS,
      report: async (changes) => {
        if (memberChanges(changes).length === 0) return;
        leaves.push(...memberChanges(changes));
        // The first step is reported: the edge comes back (as after a stall) before the next step.
        if (!edgeBack) {
          edgeBack = true;
          edge.start();
          await back;
        }
      },
    });
    cleanups.push(async () => {
      await edge.close();
      await sweeper.close();
      for (const c of conns) c.disconnect();
      await deletePrefix(prefix);
    });
    const n = REDIS_SWEEP_STEP_MEMBERS * 2;
    await fill(edge, ["a"], n);
    await redis.del(`${prefix}edge:dead`);
    sweeper.start();
    await eventually(() => edgeBack, 20_000, "the first step");
    await back;
    await sweeper.sweep();
    expect(leaves.length).toBe(REDIS_SWEEP_STEP_MEMBERS);
    expect(new Set(leaves.map((c) => c.member.id)).size).toBe(leaves.length);
    expect(joins.map((c) => c.member.id).sort()).toEqual(leaves.map((c) => c.member.id).sort());
    expect(joins.every((c) => c.kind === "join")).toBe(true);
    expect((await sweeper.members("a")).length).toBe(n);
    expect(await redis.smembers(`${prefix}sweeping`)).toEqual([]);
    expect(await redis.scard(`${prefix}edge:dead:members`)).toBe(n);
  }, 60_000);

  it("re-registration in steps: an edge whose registration Redis lost writes back all it holds, and removes (as leaves) what it no longer holds", async () => {
    const sync = syncingEdge("sync-steps", new Redis(testRedisUrl()));
    const { prefix, redis, edge, counts } = sync;
    const n = REDIS_SYNC_STEP_MEMBERS * 2 + 200;
    await fill(edge, ["a"], n);
    // Two entries of this edge that it no longer holds, and the profile of one it holds changed meanwhile.
    await staleEntries(redis, prefix);
    await edge.add(
      "a",
      create(MemberSchema, { id: "m7", userId: "u7", data: { kind: { case: "stringValue", value: "new" } } }),
    );
    // Redis forgets the edge's registration: its next heartbeat finds it unregistered and re-syncs.
    const before = counts.syncs;
    await redis.srem(`${prefix}edges`, "e");
    await eventually(() => counts.syncs > before, 10_000, "a sync");
    await expectExact(sync, n);
    expect((await edge.members("a")).find((m) => m.id === "m7")!.data?.kind.value).toBe("new");
  }, 60_000);
});

describe.skipIf(NO_REDIS)("Redis re-registration aborted half-way", () => {
  it("a sync whose connection drops after its first chunk: the next sync merges what the first set aside, so the end state is exact and each stale entry leaves once", async () => {
    // The edge's connection as production opens it: a command in flight when it drops fails, never re-sent.
    const command = openRedis(testRedisUrl(), "sync-abort-edge");
    await connectRedis(command, 5_000);
    const sync = syncingEdge("sync-abort", command);
    const { prefix, redis, edge, errors, counts } = sync;
    const monitor = await new Redis(testRedisUrl()).monitor();
    cleanups.unshift(async () => monitor.disconnect());
    const n = REDIS_SYNC_STEP_MEMBERS * 10 + 100;
    await fill(edge, ["a"], n);
    await eventually(() => counts.syncs > 0, 10_000, "the first registration");
    await staleEntries(redis, prefix);

    // The first chunk of the next sync writes the members index (inside its script, which MONITOR
    // shows): then the edge's connection is killed, before the sync's last chunk and its end.
    const edgeClient = String(await command.client("ID"));
    let killed = false;
    monitor.on("monitor", (_time: string, args: string[]) => {
      if (killed || args[0]?.toUpperCase() !== "SADD" || args[1] !== `${prefix}edge:e:members`) return;
      killed = true;
      void redis.client("KILL", "ID", edgeClient);
    });
    const before = counts.syncs;
    await redis.srem(`${prefix}edges`, "e");
    await eventually(() => killed, 10_000, "the sync's first chunk");
    await eventually(() => errors.includes("re-registering presence"), 10_000, "the sync aborted");
    expect(counts.syncs).toBe(before);
    // Reconnected, the edge syncs again: its begin merges the index the aborted one set aside.
    await eventually(() => counts.syncs > before, 15_000, "a complete sync");
    await expectExact(sync, n);
  }, 60_000);
});
