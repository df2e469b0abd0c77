/**
 * Redis Cluster: a 3-master cluster of the test's own (redis-cluster.ts).
 * A node started in the mode its Redis cannot serve refuses to start, with
 * the setting to change; in cluster mode (REALTIME_REDIS_MODE=cluster), 2
 * API nodes and 2 edges deliver across nodes over sharded pub/sub with
 * channels on every master, keep presence and GetMembers, announce a dead
 * edge's leaves, and come back after a master restarts.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NodeRole } from "../gen/realtime/v1/realtime_pb.js";
import { startProcess, type Proc } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { OwnRedisCluster } from "./helpers/redis-cluster.js";
import {
  eventually,
  freePort,
  NO_REDIS_SERVER,
  startTopology,
  testRedisUrl,
  uniquePrefix,
  type Topology,
} from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";
import { presencePrefix } from "../src/redis/limits.js";

const ports = {
  REALTIME_GRPC_PORT: "0",
  REALTIME_HTTP_PORT: "0",
  REALTIME_LINK_PORT: "0",
  REALTIME_WS_PORT: "0",
};

let cluster: OwnRedisCluster;

beforeAll(async () => {
  if (NO_REDIS_SERVER) return;
  cluster = new OwnRedisCluster();
  await cluster.start();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

describe.skipIf(NO_REDIS_SERVER)("Redis mode and the Redis it is given", () => {
  it.each(["api", "edge"] as const)(
    "standalone mode pointed at a cluster node: the %s refuses to start",
    async (role) => {
      const start = startProcess(role, {
        ...ports,
        REALTIME_REDIS_URL: cluster.url,
        REALTIME_REDIS_PREFIX: uniquePrefix("cl"),
      });
      await expect(start).rejects.toThrow(/exited with 2[\s\S]*Redis Cluster node[\s\S]*REALTIME_REDIS_MODE=cluster/);
    },
  );

  it.each(["api", "edge"] as const)(
    "cluster mode pointed at a standalone Redis: the %s refuses to start",
    async (role) => {
      const start = startProcess(role, {
        ...ports,
        REALTIME_REDIS_URL: testRedisUrl(),
        REALTIME_REDIS_MODE: "cluster",
        REALTIME_REDIS_PREFIX: uniquePrefix("cl"),
      });
      await expect(start).rejects.toThrow(
        /exited with 2[\s\S]*not a Redis Cluster[\s\S]*REALTIME_REDIS_MODE=standalone/,
      );
    },
  );
});

describe.skipIf(NO_REDIS_SERVER)("Redis mode and a Redis that answers only after the start", () => {
  it("standalone mode, the URL's node down at start and a cluster node once up: the started API and edge exit 2, saying why", async () => {
    const late = new OwnRedisCluster([await freePort(), await freePort(), await freePort()]);
    try {
      const env = {
        ...ports,
        REALTIME_REDIS_URL: `redis://127.0.0.1:${late.ports[0]}`,
        REALTIME_REDIS_PREFIX: uniquePrefix("late"),
      };
      // Nothing listens yet: both start anyway (and keep trying), as they do while Redis is away.
      const procs = await Promise.all([startProcess("api", env), startProcess("edge", env)]);
      const exits = procs.map(
        (p) =>
          new Promise<number | null | "running">((resolve) => {
            p.child.once("exit", resolve);
            setTimeout(() => resolve("running"), 40_000).unref();
          }),
      );
      await late.start();
      for (const [i, exit] of exits.entries()) {
        expect(await exit, procs[i]!.stderr()).toBe(2);
        expect(procs[i]!.stderr()).toMatch(/Redis Cluster node[\s\S]*REALTIME_REDIS_MODE=cluster/);
      }
    } finally {
      await late.stop();
    }
  }, 90_000);
});

const payload = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const ids = (members: { id: string }[]) => members.map((m) => m.id).sort();

describe.skipIf(NO_REDIS_SERVER)("cluster mode on 3 masters: 2 API nodes, 2 edges", () => {
  const prefix = uniquePrefix("cluster");
  let topology: Topology;
  let apis: RealtimeTestClient[];
  const clients: TestClient[] = [];
  /** One channel whose pub/sub and history lie on each master, by master index. */
  const channels: string[] = [];
  let presenceMaster: number;

  beforeAll(async () => {
    if (NO_REDIS_SERVER) return;
    for (let n = 0; channels.filter(Boolean).length < 3; n++) {
      const owner = await cluster.ownerOf(`${prefix}c:room-${n}`);
      channels[owner] ??= `room-${n}`;
    }
    presenceMaster = await cluster.ownerOf(`${presencePrefix(prefix)}registrations`);
    topology = await startTopology(2, 2, {
      REALTIME_REDIS_URL: cluster.url,
      REALTIME_REDIS_MODE: "cluster",
      REALTIME_REDIS_PREFIX: prefix,
      REALTIME_REDIS_EDGE_TTL_MS: "3000",
    });
    apis = topology.grpc.map(realtimeClient);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    for (const api of apis ?? []) api.close();
    await topology?.stop();
  }, 60_000);

  const client = async (edge: number) => {
    const c = await TestClient.connect(topology.ws[edge]!, "json");
    clients.push(c);
    return c;
  };

  /** Sends until OK (UNAVAILABLE while a master or the gate is not back), then waits for every receiver. */
  const deliver = async (api: RealtimeTestClient, channel: string, n: number, to: TestClient[]) => {
    await eventually(
      () =>
        api.send({ channel, event: "note", payload: payload({ n }) }).then(
          () => true,
          () => false,
        ),
      30_000,
      `Send to ${channel} answered OK`,
    );
    for (const c of to)
      await c.next(
        (f) =>
          f.frame.case === "event" &&
          f.frame.value.channel === channel &&
          f.frame.value.event === "note" &&
          f.frame.value.payload.case === "json" &&
          (toJson(ValueSchema, f.frame.value.payload.value) as { n?: number }).n === n,
        10_000,
      );
  };

  it("delivers across nodes, each channel on its own master's sharded pub/sub; presence and GetMembers agree", async () => {
    const a = await client(0);
    const b = await client(1);
    for (const channel of channels) {
      await a.ok({ command: { case: "join", value: { channel } } });
      await b.ok({ command: { case: "join", value: { channel } } });
    }
    for (const channel of channels)
      await eventually(() => a.told("channel:join", channel).includes(b.id), 5_000, `a told of b's join of ${channel}`);
    for (const [i, channel] of channels.entries()) await deliver(apis[i % 2]!, channel, i, [a, b]);

    // Each channel is subscribed by both edges on its own master, and on no other.
    for (const [owner, channel] of channels.entries())
      for (const [i, port] of cluster.ports.entries()) {
        const node = new Redis({ port, host: "127.0.0.1" });
        const [, subscribers] = (await node.call("PUBSUB", "SHARDNUMSUB", `${prefix}c:${channel}`)) as [string, number];
        node.disconnect();
        expect(subscribers, `subscribers of ${channel} on master ${i}`).toBe(i === owner ? 2 : 0);
      }

    for (const api of apis)
      for (const channel of channels) {
        const { members } = await api.getMembers({ channel });
        expect(ids(members)).toEqual([a.id, b.id].sort());
      }
    const broadcast = await apis[0]!.broadcast({ event: "all", payload: payload({ hello: true }) });
    expect(broadcast.edges).toBe(2);
    for (const c of [a, b]) await c.event("all");
    // History lives on each channel's master: the positions handed out count up per channel.
    const { events } = await apis[1]!.getHistory({ channel: channels[0]!, limit: 10 });
    expect(events.length).toBeGreaterThan(0);
  });

  it("the control plane across shards: Info, Subscribe, Unsubscribe and Disconnect reach the edges, from either API node", async () => {
    const info = await apis[1]!.info();
    expect(info.unanswered).toBe(0);
    expect(info.nodes.map((n) => n.role).sort()).toEqual([NodeRole.API, NodeRole.API, NodeRole.EDGE, NodeRole.EDGE]);
    // Not in `clients`: the tests after this one expect those in every channel.
    const c = [await TestClient.connect(topology.ws[0]!, "json"), await TestClient.connect(topology.ws[1]!, "proto")];
    for (const [i, x] of c.entries()) {
      const room = channels[i]!;
      const sub = await apis[i]!.subscribe({
        target: { target: { case: "connectionId", value: x.id } },
        channel: room,
      });
      expect(sub.joined).toBe(1);
      await x.next((f) => f.frame.case === "subscribed" && f.frame.value.channel === room);
      const left = await apis[1 - i]!.unsubscribe({
        target: { target: { case: "connectionId", value: x.id } },
        channel: room,
      });
      expect(left.left).toBe(1);
      await x.next((f) => f.frame.case === "unsubscribed");
      const gone = await apis[i]!.disconnect({
        target: { target: { case: "connectionId", value: x.id } },
        reconnect: true,
      });
      expect(gone.connections).toBe(1);
      await x.closed;
      expect(x.closeCode).toBe(4005);
    }
  });

  it("an edge that dies: its members' leaves reach the others, and GetMembers drops them", async () => {
    const a = await client(0);
    for (const channel of channels) await a.ok({ command: { case: "join", value: { channel } } });
    const extra: Proc = await startProcess("edge", topology.env);
    const x = await TestClient.connect(extra.ready.ws!, "json");
    for (const channel of channels) await x.ok({ command: { case: "join", value: { channel } } });
    for (const channel of channels)
      await eventually(() => a.told("channel:join", channel).includes(x.id), 5_000, `a told of x's join of ${channel}`);
    await extra.kill();
    for (const channel of channels)
      await eventually(
        () => a.told("channel:leave", channel).includes(x.id),
        20_000,
        `a told of x's leave of ${channel}`,
      );
    for (const channel of channels) {
      const { members } = await apis[1]!.getMembers({ channel });
      expect(ids(members)).not.toContain(x.id);
    }
  }, 60_000);

  it("a master restarts empty: delivery on its channels resumes, then presence after the presence master's restart", async () => {
    const [a, b] = clients as [TestClient, TestClient];
    // Every client this suite opened is still in every channel.
    const everyone = clients.map((c) => c.id).sort();
    const other = [0, 1, 2].find((i) => i !== presenceMaster)!;
    await cluster.restart(other);
    await deliver(apis[0]!, channels[other]!, 100, [a, b]);
    for (const channel of channels) {
      const { members } = await apis[1]!.getMembers({ channel });
      expect(ids(members)).toEqual(everyone);
    }

    await cluster.restart(presenceMaster);
    // Every edge re-registers its members on the restarted master by itself.
    await eventually(
      async () => {
        const { members } = await apis[0]!.getMembers({ channel: channels[presenceMaster]! });
        return ids(members).join() === everyone.join();
      },
      30_000,
      "GetMembers lists every member again",
    );
    for (const [i, channel] of channels.entries()) await deliver(apis[1]!, channel, 200 + i, [a, b]);
    for (const p of [...topology.apis, ...topology.edges]) expect(p.child.exitCode).toBeNull();
  }, 120_000);
});
