/**
 * Idempotent publish in Redis mode: the key is claimed in Redis, so a retry
 * that reaches another API node is deduplicated too. Two real API nodes and
 * two edges on a redis-server of this test's own; and the Redis store
 * (src/redis/idempotency-redis.ts) driven directly by two "nodes" of this
 * process, for what needs a claim held in flight.
 */
import { fromJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SendRequestSchema } from "../gen/realtime/v1/realtime_pb.js";
import { Idempotency, type DoneKey, type HeldKey } from "../src/core/idempotency.js";
import { RedisIdempotencyStore } from "../src/redis/idempotency-redis.js";
import { startProcess, stopAll } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import {
  eventually,
  freePort,
  NO_REDIS_SERVER,
  OwnRedis,
  startTopology,
  uniquePrefix,
  type Topology,
} from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";

const UNAVAILABLE = 14;
const WINDOW_MS = 60_000;
const prefix = uniquePrefix("idem");
let redis: OwnRedis;
let topology: Topology;
let apis: RealtimeTestClient[];
let inspect: Redis;
const clients: TestClient[] = [];

beforeAll(async () => {
  if (NO_REDIS_SERVER) return;
  redis = new OwnRedis(await freePort());
  await redis.start();
  inspect = new Redis(redis.url);
  // No edge yet: the first test needs a publish that fails.
  topology = await startTopology(2, 0, {
    REALTIME_REDIS_URL: redis.url,
    REALTIME_REDIS_PREFIX: prefix,
    REALTIME_IDEMPOTENCY_WINDOW_MS: String(WINDOW_MS),
  });
  apis = topology.grpc.map((address) => realtimeClient(address));
}, 90_000);

afterAll(async () => {
  if (NO_REDIS_SERVER) return;
  await Promise.all(clients.map((c) => c.close()));
  for (const api of apis ?? []) api.close();
  await topology?.stop();
  await stopAll();
  inspect?.disconnect();
  await redis?.kill();
}, 60_000);

async function addEdges(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const edge = await startProcess("edge", topology.env);
    topology.edges.push(edge);
    topology.ws.push(edge.ready.ws!);
  }
}

async function members(channel: string): Promise<TestClient[]> {
  const cs = await Promise.all(topology.ws.map((url, i) => TestClient.connect(url, i % 2 ? "proto" : "json")));
  clients.push(...cs);
  for (const c of cs) await c.ok({ command: { case: "join", value: { channel } } });
  return cs;
}

const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const sendInit = (channel: string, event: string, value: unknown, idempotencyKey = "") =>
  ({ channel, event, payload: json(value), idempotencyKey }) satisfies MessageInitShape<typeof SendRequestSchema>;

/** An unkeyed marker from node 0, awaited on every client: what was sent before it has arrived. */
async function settled(channel: string, cs: TestClient[]): Promise<void> {
  await apis[0]!.send(sendInit(channel, "marker", {}));
  for (const c of cs) await c.event("marker", channel);
}

const count = (c: TestClient, name: string, channel: string) =>
  c.events(name).filter((e) => e.channel === channel).length;

describe.skipIf(NO_REDIS_SERVER)("idempotent publish over Redis: 2 API nodes", () => {
  it("a first attempt that failed leaves nothing in Redis: its retry on the other node is delivered", async () => {
    const req = { event: "hello-idem", payload: json({ v: 1 }), idempotencyKey: "bc-outage" };
    // A Broadcast with no edge subscribed fails with UNAVAILABLE, after its key was claimed.
    const err = await apis[0]!.broadcast(req).catch((e: { code?: number }) => e);
    expect((err as { code?: number }).code).toBe(UNAVAILABLE);
    await eventually(async () => (await inspect.exists(`${prefix}idem::bc-outage`)) === 0, 5_000, "key released");
    await addEdges(2);
    const cs = await Promise.all(topology.ws.map((url) => TestClient.connect(url, "json")));
    clients.push(...cs);
    // The edges subscribe to broadcasts as they start; wait until a broadcast reaches both.
    await eventually(
      async () => (await apis[1]!.broadcast({ event: "probe", payload: json({}) })).edges === 2,
      10_000,
      "edges up",
    );
    const retry = await apis[1]!.broadcast(req);
    expect(retry).toMatchObject({ edges: 2, duplicate: false });
    for (const c of cs) expect((await c.event("hello-idem")).id).toBe(retry.messageId);
    expect(await apis[0]!.broadcast(req)).toMatchObject({ messageId: retry.messageId, duplicate: true });
  });

  it("a retry on the other API node is answered with the first result and delivered once", async () => {
    const cs = await members("idem-nodes");
    const req = sendInit("idem-nodes", "order", { n: 1 }, "order-42");
    const first = await apis[0]!.send(req);
    expect(first).toMatchObject({ edges: 2, duplicate: false });
    const retry = await apis[1]!.send(req);
    expect(retry).toMatchObject({ messageId: first.messageId, edges: 2, duplicate: true });
    await settled("idem-nodes", cs);
    for (const c of cs) {
      expect(count(c, "order", "idem-nodes")).toBe(1);
      expect(c.events("order")[0]!.id).toBe(first.messageId);
    }
    // The key lives in Redis under the prefix, for the window.
    const key = `${prefix}idem::order-42`;
    expect(await inspect.get(key)).toMatch(
      new RegExp(`^d\\|[A-Za-z0-9_-]{22}\\|2\\|${first.messageId.replace(".", "\\.")}$`),
    );
    const ttl = await inspect.pttl(key);
    expect(ttl).toBeGreaterThan(WINDOW_MS - 10_000);
    expect(ttl).toBeLessThanOrEqual(WINDOW_MS);
    // A different request under the key, on either node: FAILED_PRECONDITION.
    for (const api of apis) {
      const err = await api.send(sendInit("idem-nodes", "order", { n: 2 }, "order-42")).catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(9);
    }
  });

  it("concurrent retries on both nodes are delivered once", async () => {
    const cs = await members("idem-race");
    const req = sendInit("idem-race", "pay", { amount: 3 }, "pay-race");
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => apis[i % 2]!.send(req)));
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
    expect(new Set(answers.map((a) => a.messageId)).size).toBe(1);
    await settled("idem-race", cs);
    for (const c of cs) expect(count(c, "pay", "idem-race")).toBe(1);
  });
});

describe.skipIf(NO_REDIS_SERVER)("the Redis idempotency store, two nodes of this process", () => {
  function node(name: string, claimTtlMs?: number) {
    const command = new Redis(redis.url);
    const store = new RedisIdempotencyStore({
      command,
      prefix: `${prefix}direct:`,
      windowMs: 5_000,
      node: name,
      claimTtlMs,
    });
    return { idem: new Idempotency({ store }), close: () => command.disconnect() };
  }

  it("a retry on another node while the first is in flight waits for its result", async () => {
    const a = node("a");
    const b = node("b");
    try {
      const held = (await a.idem.claim("", "inflight", "fp")) as HeldKey;
      expect(held.duplicate).toBe(false);
      let answered: HeldKey | DoneKey | undefined;
      const waiting = b.idem.claim("", "inflight", "fp").then((c) => (answered = c));
      await new Promise((r) => setTimeout(r, 200));
      expect(answered).toBeUndefined();
      held.complete({ messageId: "m.1", edges: 3 });
      expect(await waiting).toEqual({ duplicate: true, result: { messageId: "m.1", edges: 3 } });
      // Released instead: the waiter holds the key next.
      const held2 = (await a.idem.claim("", "inflight-2", "fp")) as HeldKey;
      const waiting2 = b.idem.claim("", "inflight-2", "fp");
      await new Promise((r) => setTimeout(r, 50));
      held2.release();
      expect((await waiting2).duplicate).toBe(false);
    } finally {
      a.close();
      b.close();
    }
  });

  it("a claim whose node died expires after the claim TTL; then a retry may claim it", async () => {
    const a = node("a", 300);
    const b = node("b", 300);
    try {
      expect((await a.idem.claim("", "orphan", "fp")).duplicate).toBe(false); // never completed: a "died"
      const started = Date.now();
      const c = await b.idem.claim("", "orphan", "fp");
      expect(c.duplicate).toBe(false);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    } finally {
      a.close();
      b.close();
    }
  });

  it("answers UNAVAILABLE when Redis cannot be reached, and claims nothing", async () => {
    const command = new Redis(`redis://127.0.0.1:${await freePort()}`, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    command.on("error", () => {});
    const idem = new Idempotency({
      store: new RedisIdempotencyStore({ command, prefix, windowMs: 5_000, node: "x" }),
    });
    await expect(idem.claim("", "k", "fp")).rejects.toMatchObject({ code: UNAVAILABLE });
    command.disconnect();
  });
});
