/**
 * GetMembers pages and PresenceStats over a large-ish channel, in both
 * modes, against real processes with real grpc-js (and Connect) clients:
 * pages list every member once in id order, counts follow joins, leaves,
 * users with several connections and the death of an edge, and GetMembers
 * is still never partial. The members are written through the presence
 * layer (a fake edge on the link; RedisPresence edges in this process),
 * not by thousands of WebSockets. What a page costs is measured by
 * bench/members-cost.ts, not here (docs/scaling.md).
 */
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { RedisPresence } from "../src/redis/presence-redis.js";
import { REDIS_MEMBERS_SCAN_MAX } from "../src/redis/limits.js";
import { stopAll } from "./helpers/cluster.js";
import { TestClient } from "./helpers/ws-client.js";
import { FakeEdge } from "./helpers/fake-edge.js";
import { useCluster } from "./helpers/fixture.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import {
  deletePrefix,
  eventually,
  NO_REDIS,
  startTopology,
  testRedisUrl,
  uniquePrefix,
  type Topology,
} from "./helpers/redis-topology.js";

/** Members of edge A: 2 connections for each of 1000 users. */
const A_MEMBERS = 2_000;
/** Members of edge B: users u0..u249 again (already counted on A), and 250 anonymous. */
const B_MEMBERS = 500;
const userOfA = (n: number) => `u${n % 1000}`;
const userOfB = (n: number) => (n < 250 ? `u${n}` : "");
const idOf = (prefix: string, n: number) => `${prefix}${String(n).padStart(6, "0")}`;
/** A's and B's ids interleave in id order ("a…" < "b…" < "c…": half of A on each side of B). */
const aIds = Array.from({ length: A_MEMBERS }, (_, n) => idOf(n % 2 === 0 ? "a" : "c", n));
const bIds = Array.from({ length: B_MEMBERS }, (_, n) => idOf("b", n));
const sorted = (ids: readonly string[]) => [...ids].sort();

/** Walks GetMembers in pages of pageSize; returns the ids in the order listed. */
async function walk(api: RealtimeTestClient, channel: string, pageSize: number): Promise<string[]> {
  const out: string[] = [];
  let pageToken = "";
  do {
    const res = await api.getMembers({ channel, pageSize, pageToken });
    expect(res.members.length).toBeLessThanOrEqual(pageSize);
    out.push(...res.members.map((m) => m.id));
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out;
}

describe("embedded mode: GetMembers pages and PresenceStats of 2,500 members", () => {
  const GRACE_MS = 1_000;
  const f = useCluster(0, { REALTIME_EDGE_GRACE_MS: String(GRACE_MS) });
  const fakes: FakeEdge[] = [];
  afterAll(() => fakes.forEach((e) => e.close()));

  it("lists every member once in id order, counts users once, follows leaves and an edge's death, never partial", async () => {
    const a = await FakeEdge.connect(f.cluster.api.ready.link!, "fake-a");
    const b = await FakeEdge.connect(f.cluster.api.ready.link!, "fake-b");
    fakes.push(a, b);
    // FakeEdge numbers ids itself: A's in two halves, so that they sort around B's.
    await a.addMembers(["big"], A_MEMBERS / 2, "a", undefined, (n) => userOfA(2 * n));
    await a.addMembers(["big"], A_MEMBERS / 2, "c", undefined, (n) => userOfA(2 * n + 1));
    await b.addMembers(["big"], B_MEMBERS, "b", undefined, userOfB);
    const all = [
      ...Array.from({ length: A_MEMBERS / 2 }, (_, n) => idOf("a", n)),
      ...bIds,
      ...Array.from({ length: A_MEMBERS / 2 }, (_, n) => idOf("c", n)),
    ];
    for (const size of [100, 1000, 7]) expect(await walk(f.api, "big", size)).toEqual(sorted(all));

    const connect = createClient(
      Realtime,
      createConnectTransport({ baseUrl: `http://${f.cluster.http}`, httpVersion: "1.1" }),
    );
    for (const stats of [
      await f.api.presenceStats({ channel: "big" }),
      await connect.presenceStats({ channel: "big" }),
    ])
      expect(stats).toMatchObject({ connections: 2_500, users: 1_000 });
    expect(await f.api.presenceStats({ channel: "nobody" })).toMatchObject({ connections: 0, users: 0 });
    // ListChannels carries the same counts, over gRPC and Connect.
    for (const page of [await f.api.listChannels({ prefix: "big" }), await connect.listChannels({ prefix: "big" })])
      expect(page.channels.map((c) => [c.name, c.members, c.users])).toEqual([["big", 2_500, 1_000]]);

    // B's users u0..u99 leave with one connection: A still holds them.
    await b.removeMembers("big", bIds.slice(0, 100));
    expect(await f.api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_400, users: 1_000 });

    // B dies: within its grace GetMembers refuses (never partial), counts still answer; then B's members are gone.
    b.close();
    await eventually(
      async () => {
        try {
          await f.api.getMembers({ channel: "big", pageSize: 100 });
          return false;
        } catch (err) {
          return (err as { code?: number }).code === 14;
        }
      },
      GRACE_MS,
      "GetMembers UNAVAILABLE while B is unreachable",
    );
    expect(await f.api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_400 });
    await eventually(
      async () => (await f.api.presenceStats({ channel: "big" })).connections === A_MEMBERS,
      GRACE_MS * 3,
      "B's members removed after its grace",
    );
    expect(await f.api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_000, users: 1_000 });
    expect(await walk(f.api, "big", 100)).toEqual(sorted(all.filter((id) => !id.startsWith("b"))));
  }, 30_000);
});

describe.skipIf(NO_REDIS)("Redis mode: GetMembers pages and PresenceStats of 2,500 members", () => {
  const TTL_MS = 1_500;
  const prefix = uniquePrefix("members-scale");
  let topology: Topology;
  let api: RealtimeTestClient;
  const conns: Redis[] = [];
  const edges: RedisPresence[] = [];

  /** An edge of this process: RedisPresence with an edge id, heartbeating. */
  function edge(id: string): RedisPresence {
    const command = new Redis(testRedisUrl());
    conns.push(command);
    const p = new RedisPresence({ command, prefix, edgeId: id, ttlMs: TTL_MS, report: async () => {} });
    p.start();
    edges.push(p);
    return p;
  }

  beforeAll(async () => {
    topology = await startTopology(1, 1, {
      REALTIME_REDIS_URL: testRedisUrl(),
      REALTIME_REDIS_PREFIX: prefix,
      REALTIME_REDIS_EDGE_TTL_MS: String(TTL_MS),
    });
    api = realtimeClient(topology.grpc[0]!);
  }, 60_000);

  afterAll(async () => {
    api?.close();
    await Promise.all(edges.map((e) => e.close()));
    conns.forEach((c) => c.disconnect());
    await topology?.stop();
    await stopAll();
    await deletePrefix(prefix);
  }, 60_000);

  it("lists every member once in id order, counts users once, follows leaves and an edge's death", async () => {
    const a = edge("edge-a");
    const b = edge("edge-b");
    const add = (p: RedisPresence, id: string, userId: string) => p.add("big", create(MemberSchema, { id, userId }));
    await Promise.all(aIds.map((id, n) => add(a, id, userOfA(n))));
    await Promise.all(bIds.map((id, n) => add(b, id, userOfB(n))));
    for (const size of [100, 1000, 7]) expect(await walk(api, "big", size)).toEqual(sorted([...aIds, ...bIds]));
    expect(await api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_500, users: 1_000 });

    // A client of a real edge process reads the same pages with its getMembers (anonymous: no user more).
    const c = await TestClient.connect(topology.ws[0]!, "proto");
    try {
      await c.ok({ command: { case: "join", value: { channel: "big" } } });
      const seen: string[] = [];
      let pageToken = "";
      do {
        const reply = await c.ok({
          command: { case: "getMembers", value: { channel: "big", pageSize: 1000, pageToken } },
        });
        seen.push(...reply.members.map((m) => m.id));
        pageToken = reply.nextPageToken;
      } while (pageToken !== "");
      expect(seen).toEqual(sorted([...aIds, ...bIds, c.id]));
      expect(await api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_501, users: 1_000 });
      await c.ok({ command: { case: "leave", value: { channel: "big" } } });
    } finally {
      await c.close();
    }

    // A profile update is no new connection; B's users u0..u99 leave with one connection (A holds them).
    await add(b, bIds[300]!, "");
    await Promise.all(bIds.slice(0, 100).map((id) => b.remove("big", id)));
    expect(await api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_400, users: 1_000 });
    expect((await api.listChannels({ prefix: "big" })).channels.map((c) => [c.name, c.members, c.users])).toEqual([
      ["big", 2_400, 1_000],
    ]);

    // B dies: its connection to Redis is cut, it heartbeats no more. Within
    // the TTL its members leave GetMembers; the API node's sweep removes
    // them and the counts follow.
    conns[1]!.disconnect();
    await eventually(
      async () => (await api.presenceStats({ channel: "big" })).connections === A_MEMBERS,
      Math.ceil((TTL_MS * 4) / 3) + 2_000,
      "B's members swept",
    );
    expect(await api.presenceStats({ channel: "big" })).toMatchObject({ connections: 2_000, users: 1_000 });
    expect(await walk(api, "big", 100)).toEqual(sorted(aIds));
    // Both connections of users u0..u499 leave.
    await Promise.all(aIds.filter((_, n) => n % 1000 < 500).map((id) => a.remove("big", id)));
    expect(await api.presenceStats({ channel: "big" })).toMatchObject({ connections: 1_000, users: 500 });
  }, 30_000);
});

describe.skipIf(NO_REDIS)("RedisPresence pages: dead edges, the scan bound, keys of the previous version", () => {
  const prefix = uniquePrefix("members-pages-redis");
  const conns: Redis[] = [];
  afterAll(async () => {
    await deletePrefix(prefix);
    conns.forEach((c) => c.disconnect());
  });

  /**
   * Not started: no heartbeat and no sweep (so no grace either). Ready
   * before its first add, which then registers the edge: its liveness lasts
   * a minute.
   */
  async function presence(edgeId?: string): Promise<RedisPresence> {
    const command = new Redis(testRedisUrl());
    conns.push(command);
    await command.ping();
    return new RedisPresence({ command, prefix, edgeId, ttlMs: 60_000, report: async () => {} });
  }

  async function walkPages(p: RedisPresence, channel: string, limit: number): Promise<string[]> {
    const out: string[] = [];
    for (let after = "", more = true; more; after = out.at(-1) ?? "") {
      const page = await p.page(channel, after, limit);
      if (more && page.more) expect(page.members.length).toBeGreaterThan(0);
      out.push(...page.members.map((m) => m.id));
      more = page.more;
    }
    return out;
  }

  it(`skips a dead edge's members that are not swept yet, more than REDIS_MEMBERS_SCAN_MAX (${REDIS_MEMBERS_SCAN_MAX}) in a row`, async () => {
    const alive = await presence("alive");
    const dead = await presence("dead");
    const reader = await presence();
    const deadIds = Array.from({ length: REDIS_MEMBERS_SCAN_MAX + 1_000 }, (_, n) => idOf("b", n));
    await Promise.all(["a1", "a2", "c1", "c2", "c3"].map((id) => alive.add("room", create(MemberSchema, { id }))));
    await Promise.all(deadIds.map((id) => dead.add("room", create(MemberSchema, { id, userId: "ghost" }))));
    expect((await reader.page("room", "a2", 2)).members.map((m) => m.id)).toEqual(["b000000", "b000001"]);
    // The dead edge's liveness expires (as a TTL would): its members leave pages at once, before any sweep.
    await conns[1]!.del(`${prefix}edge:dead`);
    expect(await reader.page("room", "", 2)).toMatchObject({ members: [{ id: "a1" }, { id: "a2" }], more: true });
    expect(await reader.page("room", "a2", 2)).toMatchObject({ members: [{ id: "c1" }, { id: "c2" }], more: true });
    expect(await walkPages(reader, "room", 2)).toEqual(["a1", "a2", "c1", "c2", "c3"]);
    expect(await walkPages(reader, "room", 1000)).toEqual(["a1", "a2", "c1", "c2", "c3"]);
    // Counts include them until the sweep (as ListChannels' do).
    expect(await reader.stats("room")).toEqual({ connections: 5 + deadIds.length, users: 1 });
  }, 30_000);

  it("reads user ids from the stored bytes in Lua: long profiles (multi-byte lengths), non-ASCII users, all removed", async () => {
    const edge = await presence("bytes");
    const reader = await presence();
    const users = ["ünï", "用户", "a:b", "x".repeat(300), "🙂"];
    const members = Array.from({ length: 40 }, (_, n) =>
      create(MemberSchema, {
        id: idOf("p", n),
        userId: users[n % users.length],
        data: { kind: { case: "stringValue", value: "é".repeat((n * 97) % 3000) } },
      }),
    );
    await Promise.all(members.map((m) => edge.add("bytes", m)));
    expect(await reader.stats("bytes")).toEqual({ connections: 40, users: users.length });
    // A profile update keeps the counts.
    await edge.add("bytes", create(MemberSchema, { id: idOf("p", 0), userId: users[0], data: undefined }));
    expect(await reader.stats("bytes")).toEqual({ connections: 40, users: users.length });
    await Promise.all(members.map((m) => edge.remove("bytes", m.id)));
    expect(await reader.stats("bytes")).toEqual({ connections: 0, users: 0 });
    expect(await conns[0]!.exists(`${prefix}mu:bytes`, `${prefix}mi:bytes`, `${prefix}m:bytes`)).toBe(0);
  });

  it("indexes a channel written by the previous version (a hash without index) on the first read", async () => {
    const writer = await presence("old");
    const reader = await presence();
    const ids = Array.from({ length: 300 }, (_, n) => idOf("m", (n * 7) % 300));
    await Promise.all(ids.map((id, n) => writer.add("legacy", create(MemberSchema, { id, userId: `u${n % 30}` }))));
    // What the previous version wrote: the hash only.
    await conns[0]!.del(`${prefix}mi:legacy`, `${prefix}mu:legacy`);
    expect(await reader.stats("legacy")).toEqual({ connections: 300, users: 30 });
    expect(await walkPages(reader, "legacy", 64)).toEqual(sorted(ids));
    // And again after a join of this version, which indexes only its own entry.
    await conns[0]!.del(`${prefix}mi:legacy`, `${prefix}mu:legacy`);
    await writer.add("legacy", create(MemberSchema, { id: "z", userId: "new" }));
    expect(await walkPages(reader, "legacy", 1000)).toEqual([...sorted(ids), "z"]);
    expect(await reader.stats("legacy")).toEqual({ connections: 301, users: 31 });
  });
});
