/**
 * Several API nodes and edges behave as one service over Redis: two real API
 * processes and three real edges on the run's Redis (test/helpers/global-setup.ts; under a prefix of
 * this file's own), gRPC clients of both API nodes, WebSocket clients spread
 * over the edges.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stopAll } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { NO_REDIS, startTopology, testRedisUrl, uniquePrefix, type Topology } from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";

let topology: Topology;
let apis: RealtimeTestClient[];
/** Connect-node clients of the same API nodes, for ListChannels and WatchChannel. */
let connects: Client<typeof Realtime>[];
const clients: TestClient[] = [];
const prefix = uniquePrefix("scale-out");

async function client(edge: number, enc: "json" | "proto" = "proto") {
  const c = await TestClient.connect(topology.ws[edge]!, enc);
  clients.push(c);
  return c;
}

const ids = (members: { id: string }[]) => members.map((m) => m.id).sort();

beforeAll(async () => {
  if (NO_REDIS) return;
  topology = await startTopology(2, 3, { REALTIME_REDIS_URL: testRedisUrl(), REALTIME_REDIS_PREFIX: prefix });
  apis = topology.grpc.map((address) => realtimeClient(address));
  connects = topology.grpc.map((address) =>
    createClient(Realtime, createGrpcTransport({ baseUrl: `http://${address}` })),
  );
}, 90_000);

afterAll(async () => {
  if (NO_REDIS) return;
  await Promise.all(clients.map((c) => c.close()));
  for (const api of apis ?? []) api.close();
  await topology?.stop();
  await stopAll();
  // Leave nothing behind in the shared Redis but the sweep's keys and the
  // channels' positions and history (kept on purpose; they expire by themselves).
  const redis = new Redis(testRedisUrl());
  const keys = await redis.keys(`${prefix}*`);
  const history = (k: string) => k.startsWith(`${prefix}p:{`) || k.startsWith(`${prefix}h:{`);
  expect(keys.filter((k) => !/sweep-(lock|clock|grace)$/.test(k) && !history(k))).toEqual([]);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
}, 60_000);

describe.skipIf(NO_REDIS)("Redis scale-out: 2 API nodes, 3 edges", () => {
  it("does not listen for edges (no link address in the ready line); edges are ready once Redis is up", async () => {
    for (const api of topology.apis) expect(api.ready.link).toBeUndefined();
    for (const ws of topology.ws) {
      const res = await fetch(`${ws.replace(/^ws/, "http")}/readyz`);
      expect(res.status).toBe(200);
    }
  });

  it("a Send on either API node reaches the channel's members on every edge, binary-safe", async () => {
    const members = await Promise.all([client(0), client(1, "json"), client(2)]);
    for (const m of members) await m.ok({ command: { case: "join", value: { channel: "cross" } } });
    const outsider = await client(1);

    const bytes = new Uint8Array(256).map((_, i) => i);
    const first = await apis[0]!.send({ channel: "cross", event: "bin", payload: { case: "binary", value: bytes } });
    expect(first.edges).toBe(3);
    for (const m of members) {
      const event = await m.event("bin", "cross");
      expect(event.payload.case).toBe("binary");
      expect(new Uint8Array(event.payload.value as Uint8Array)).toEqual(bytes);
      expect(event.id).toBe(first.messageId);
    }

    await apis[1]!.send({
      channel: "cross",
      event: "text",
      payload: { case: "json", value: fromJson(ValueSchema, { n: 1 }) },
    });
    for (const m of members) await m.event("text", "cross");
    expect(outsider.events("bin")).toEqual([]);
    expect(outsider.events("text")).toEqual([]);
  });

  it("a client's Send on one edge reaches members on the other edges, and its join is seen there", async () => {
    const a = await client(0);
    const b = await client(2);
    await b.ok({ command: { case: "join", value: { channel: "chat" } } });
    await a.ok({ command: { case: "join", value: { channel: "chat" } } });
    const join = await b.next(
      (f) =>
        f.frame.case === "event" &&
        f.frame.value.event === "channel:join" &&
        f.frame.value.payload.case === "member" &&
        f.frame.value.payload.value.id === a.id,
    );
    expect(join.frame.case).toBe("event");
    await a.ok({
      command: {
        case: "send",
        value: { channel: "chat", event: "msg", payload: { case: "json", value: fromJson(ValueSchema, "hi") } },
      },
    });
    await b.event("msg", "chat");
  });

  it("Broadcast from either API node reaches every client on every edge", async () => {
    const everyone = await Promise.all([client(0), client(1), client(2, "json")]);
    const res = await apis[1]!.broadcast({
      event: "all",
      payload: { case: "json", value: fromJson(ValueSchema, true) },
    });
    expect(res.edges).toBe(3);
    for (const c of everyone) await c.event("all");
    await apis[0]!.broadcast({ event: "again", payload: { case: "binary", value: new Uint8Array([0, 0xff]) } });
    for (const c of everyone) expect([...((await c.event("again")).payload.value as Uint8Array)]).toEqual([0, 0xff]);
  });

  it("GetMembers and ListChannels answer the same on both API nodes, with members of every edge and their profiles", async () => {
    const members = await Promise.all([client(0), client(1), client(2)]);
    for (const [i, m] of members.entries()) {
      await m.ok({ command: { case: "updateProfile", value: { data: fromJson(ValueSchema, { name: `user${i}` }) } } });
      await m.ok({ command: { case: "join", value: { channel: "presence" } } });
    }
    const expected = ids(members);
    for (const api of apis) {
      const res = await api.getMembers({ channel: "presence" });
      expect(ids(res.members)).toEqual(expected);
      const names = res.members
        .map((m) => (m.data?.kind.case === "structValue" ? m.data.kind.value.fields.name?.kind.value : undefined))
        .sort();
      expect(names).toEqual(["user0", "user1", "user2"]);
    }
    await members[1]!.ok({ command: { case: "leave", value: { channel: "presence" } } });
    for (const api of apis)
      expect(ids((await api.getMembers({ channel: "presence" })).members)).toEqual(ids([members[0]!, members[2]!]));

    // ListChannels: the same page from both nodes, with the counts.
    for (const c of connects) {
      const page = await c.listChannels({ prefix: "pres" });
      expect(page.channels.map((ch) => [ch.name, ch.members])).toEqual([["presence", 2]]);
    }
  });

  it("ListChannels pages through Redis by name, each page from either API node", async () => {
    const c = await client(1);
    for (const name of ["pg-c", "pg-a", "pg-b"]) await c.ok({ command: { case: "join", value: { channel: name } } });
    const first = await connects[0]!.listChannels({ prefix: "pg-", pageSize: 2 });
    expect(first.channels.map((ch) => ch.name)).toEqual(["pg-a", "pg-b"]);
    expect(first.nextPageToken).not.toBe("");
    const second = await connects[1]!.listChannels({ prefix: "pg-", pageSize: 2, pageToken: first.nextPageToken });
    expect(second.channels.map((ch) => [ch.name, ch.members])).toEqual([["pg-c", 1]]);
    expect(second.nextPageToken).toBe("");
  });

  it("WatchChannel on one API node sees joins from any edge and Sends from the other API node", async () => {
    const abort = new AbortController();
    const stream = connects[1]!.watchChannel({ channel: "watched" }, { signal: abort.signal })[Symbol.asyncIterator]();
    const snapshot = await stream.next();
    expect(snapshot.value.update.case).toBe("members");
    const c = await client(2);
    await c.ok({ command: { case: "join", value: { channel: "watched" } } });
    const join = await stream.next();
    expect(join.value.update).toMatchObject({ case: "join", value: { id: c.id } });
    await apis[0]!.send({
      channel: "watched",
      event: "note",
      payload: { case: "json", value: fromJson(ValueSchema, 1) },
    });
    const message = await stream.next();
    expect(message.value.update).toMatchObject({ case: "message", value: { event: "note" } });
    abort.abort();
    await stream.return?.(undefined).catch(() => {});
  });

  it("1,000 sequential Sends to one channel arrive in order at members on different edges", async () => {
    const members = await Promise.all([client(0), client(1), client(2, "json")]);
    for (const m of members) await m.ok({ command: { case: "join", value: { channel: "ordered" } } });
    const n = 1_000;
    for (let i = 0; i < n; i++) {
      await apis[0]!.send({
        channel: "ordered",
        event: "seq",
        payload: { case: "json", value: fromJson(ValueSchema, i) },
      });
    }
    for (const m of members) {
      await m.next(
        (f) =>
          f.frame.case === "event" &&
          f.frame.value.event === "seq" &&
          f.frame.value.payload.case === "json" &&
          f.frame.value.payload.value.kind.value === n - 1,
        15_000,
      );
      const seen = m.events("seq").map((e) => (e.payload.case === "json" ? e.payload.value.kind.value : -1));
      expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
    }
  }, 60_000);
});
