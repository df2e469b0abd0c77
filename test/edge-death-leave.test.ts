/**
 * A member whose edge dies after its removal from presence and before its
 * channel:leave is published: the removal must not take the leave with it.
 * Found by bench/chaos.ts (an edge killed with SIGKILL while connections of
 * it were closing): every other client of the channel kept listing the
 * member, which GetMembers no longer had, and nobody was ever told it left.
 *
 * Real processes, in both modes: an API and two edges (embedded: the API is
 * the hub; Redis: the run's Redis); one edge's link, or its Redis
 * connections, go through a proxy that passes the edge's removal of the
 * leaving member and then nothing more from that edge (as good as dead
 * from that instant), and the test kills that edge with SIGKILL. The other
 * edge's client must be told of the leave.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { memberChanges, type MemberChange } from "../src/core/presence.js";
import { RedisPresence } from "../src/redis/presence-redis.js";
import { startCluster, startProcess, stopAll, type Proc } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import {
  deletePrefix,
  eventually,
  NO_REDIS,
  startTopology,
  testRedisUrl,
  uniquePrefix,
} from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";

/**
 * A proxy in front of what an edge connects to (the hub's link, Redis):
 * it forwards both ways until, once armed with a member id, the edge sends
 * a chunk that names the member (its PresenceRemove, its Redis removal
 * script: the first write about it after its join). That chunk still goes
 * through, and then nothing more from the edge does (replies still reach
 * it): from that instant the edge is as good as dead to the service.
 */
class SilenceAfter {
  private trigger: Buffer | undefined;
  /** Whether the chunk went through and the edge was silenced after it. */
  silenced = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(host: string, port: number): Promise<SilenceAfter> {
    let proxy!: SilenceAfter;
    const server = createServer((edge) => {
      const upstream = connect(port, host);
      for (const s of [edge, upstream]) {
        proxy.sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          proxy.sockets.delete(s);
          edge.destroy();
          upstream.destroy();
        });
      }
      upstream.pipe(edge);
      edge.on("data", (chunk: Buffer) => {
        if (proxy.silenced) return;
        upstream.write(chunk);
        if (proxy.trigger && chunk.includes(proxy.trigger)) proxy.silenced = true;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    proxy = new SilenceAfter(server, (server.address() as AddressInfo).port);
    return proxy;
  }

  arm(memberId: string): void {
    this.trigger = Buffer.from(memberId);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const clients: TestClient[] = [];
const proxies: SilenceAfter[] = [];
const stops: (() => Promise<void>)[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const stop of stops) await stop();
  for (const p of proxies) await p.close();
  await stopAll();
}, 60_000);

/**
 * The scenario: `stayer` (on a healthy edge) and `leaver` (on `dying`,
 * whose link or Redis goes through `proxy`) in one channel; the leaver
 * closes; its edge's removal goes through and the edge goes silent, then
 * is killed. The stayer must be told of the leave, and GetMembers agree.
 */
async function leaveThenDie(
  grpc: string,
  healthy: string,
  dying: { ws: string; proc: Proc },
  proxy: SilenceAfter,
  channel: string,
): Promise<void> {
  const stayer = await TestClient.connect(healthy, "json");
  const leaver = await TestClient.connect(dying.ws, "json");
  clients.push(stayer, leaver);
  await stayer.ok({ command: { case: "join", value: { channel } } });
  await leaver.ok({ command: { case: "join", value: { channel } } });
  await eventually(() => stayer.told("channel:join", channel).includes(leaver.id), 5_000, "the leaver's join");

  proxy.arm(leaver.id);
  await leaver.close();
  await eventually(() => proxy.silenced, 5_000, "the edge's removal through the proxy");
  const api = realtimeClient(grpc);
  try {
    // The removal was applied: the member is gone from GetMembers...
    await eventually(
      async () => !(await api.getMembers({ channel })).members.some((m) => m.id === leaver.id),
      10_000,
      "GetMembers without the leaver",
    );
    // ...and its edge dies before its channel:leave reached anyone.
    await dying.proc.kill();
    await eventually(
      () => stayer.told("channel:leave", channel).includes(leaver.id),
      15_000,
      "the stayer told of the leave",
    ).catch(() => {});
    expect(stayer.told("channel:leave", channel)).toEqual([leaver.id]);
    expect((await api.getMembers({ channel })).members.map((m) => m.id)).toEqual([stayer.id]);
  } finally {
    api.close();
  }
}

describe("an edge dies between a member's removal and its channel:leave", () => {
  it("embedded: the hub announces the leave once the edge's grace ends", async () => {
    const cluster = await startCluster(1, { REALTIME_EDGE_GRACE_MS: "500" });
    stops.push(() => cluster.stop());
    const link = cluster.api.ready.link!;
    const proxy = await SilenceAfter.start("127.0.0.1", Number(link.slice(link.lastIndexOf(":") + 1)));
    proxies.push(proxy);
    const dying = await cluster.addEdge({ REALTIME_LINK_URL: `127.0.0.1:${proxy.port}` });
    await leaveThenDie(cluster.grpc, cluster.ws[0]!, { ws: cluster.ws[1]!, proc: dying }, proxy, "room");
  }, 60_000);

  it.skipIf(NO_REDIS)(
    "Redis: the sweep announces the leave once the edge's liveness expires",
    async () => {
      const prefix = uniquePrefix("departing");
      const topology = await startTopology(1, 1, {
        REALTIME_REDIS_URL: testRedisUrl(),
        REALTIME_REDIS_PREFIX: prefix,
        REALTIME_REDIS_EDGE_TTL_MS: "1500",
      });
      stops.push(async () => {
        await topology.stop();
        await deletePrefix(prefix);
      });
      const redis = new URL(testRedisUrl());
      const proxy = await SilenceAfter.start(redis.hostname, Number(redis.port || 6379));
      proxies.push(proxy);
      redis.host = `127.0.0.1:${proxy.port}`;
      const dying = await startProcess("edge", { ...topology.env, REALTIME_REDIS_URL: redis.toString() });
      await leaveThenDie(topology.grpc[0]!, topology.ws[0]!, { ws: dying.ready.ws!, proc: dying }, proxy, "room");
    },
    60_000,
  );
});

describe.skipIf(NO_REDIS)("Redis presence: the departing entries of an edge", () => {
  it("are forgotten once departed() says the leave is out; those left are reported by the sweep, even after a clean close", async () => {
    const prefix = uniquePrefix("departing-unit");
    const conns = [new Redis(testRedisUrl()), new Redis(testRedisUrl())];
    const reported: MemberChange[] = [];
    const edge = new RedisPresence({ command: conns[0]!, prefix, edgeId: "e1", ttlMs: 1_000, report: async () => {} });
    const sweeper = new RedisPresence({
      command: conns[1]!,
      prefix,
      ttlMs: 1_000,
      report: async (changes) => void reported.push(...memberChanges(changes)),
    });
    try {
      edge.start();
      sweeper.start();
      const departing = `${prefix}edge:e1:departing`;
      const m = (id: string) => create(MemberSchema, { id, userId: `u-${id}` });
      await edge.add("c", m("a"));
      await edge.add("c", m("b"));
      await edge.remove("c", "a");
      expect(await conns[1]!.hlen(departing)).toBe(1);
      edge.departed("c", "a");
      await eventually(async () => (await conns[1]!.exists(departing)) === 0, 2_000, "the entry forgotten");
      // b leaves, and its edge stops before its leave is out: the edge does not unregister...
      await edge.remove("c", "b");
      await edge.close();
      expect(await conns[1]!.sismember(`${prefix}edges`, "e1")).toBe(1);
      // ...so the sweep reports b's leave (and only b's: a's was announced).
      await eventually(() => reported.length > 0, 10_000, "the sweep's report");
      expect(reported.map((c) => [c.kind, c.channel, c.member.id, c.member.userId])).toEqual([
        ["leave", "c", "b", "u-b"],
      ]);
      expect(await conns[1]!.exists(departing)).toBe(0);
    } finally {
      await edge.close();
      await sweeper.close();
      for (const c of conns) c.disconnect();
      await deletePrefix(prefix);
    }
  }, 30_000);
});
