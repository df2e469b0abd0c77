/**
 * RedisBroker's positions and history across nodes (the Broker seam over
 * Redis): two API-side brokers and two edge-side brokers, each with its own
 * connections, on a redis-server of this test's own. Every edge receives
 * the same position for the same publication, whichever node published it;
 * history() on any node returns exactly the publications after a position,
 * in order, complete; a Redis restart without data gives a new epoch and
 * says complete=false; broadcasts and channels without history carry no
 * position and take the plain publish.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Publication } from "../src/core/broker.js";
import { RedisBroker } from "../src/redis/broker-redis.js";
import { closeRedis, connectRedis, openRedis } from "../src/redis/connection.js";
import { eventually, freePort, NO_REDIS_SERVER, OwnRedis } from "./helpers/redis-topology.js";

const PREFIX = "test:broker-history:";
let redis: OwnRedis;
const connections: Redis[] = [];
const apis: RedisBroker[] = [];
const edges: { broker: RedisBroker; received: Publication[] }[] = [];
let admin: Redis;

async function node(edge: boolean, received?: Publication[]): Promise<RedisBroker> {
  const command = openRedis(redis.url, "test:command");
  const subscriber = openRedis(redis.url, "test:subscriber");
  connections.push(command, subscriber);
  expect(await connectRedis(command, 5_000)).toBe(true);
  expect(await connectRedis(subscriber, 5_000)).toBe(true);
  const broker = new RedisBroker({
    command,
    subscriber,
    prefix: PREFIX,
    edge,
    history: (channel) => (channel.startsWith("nohist:") ? { size: 0, ageMs: 0 } : { size: 50, ageMs: 60_000 }),
    onPublication: (pub) => received?.push(pub),
  });
  await broker.start();
  return broker;
}

beforeAll(async () => {
  if (NO_REDIS_SERVER) return;
  redis = new OwnRedis(await freePort());
  await redis.start();
  admin = openRedis(redis.url, "test:admin");
  connections.push(admin);
  await connectRedis(admin, 5_000);
  for (let i = 0; i < 2; i++) apis.push(await node(false));
  for (let i = 0; i < 2; i++) {
    const received: Publication[] = [];
    edges.push({ broker: await node(true, received), received });
  }
});

afterAll(async () => {
  if (NO_REDIS_SERVER) return;
  for (const b of [...apis, ...edges.map((e) => e.broker)]) b.close();
  await Promise.all(connections.map((c) => closeRedis(c)));
  await redis.kill();
});

const pub = (channel: string, n: number): Publication => ({
  channel,
  event: new Uint8Array([n]),
  eventJson: `{"n":${n}}`,
  origin: "",
  skipOrigin: false,
});
const on = (edge: number, channel: string) => edges[edge]!.received.filter((p) => p.channel === channel);
const position = (p: Publication) => ({ n: p.event[0], offset: p.offset, epoch: p.epoch });

describe.skipIf(NO_REDIS_SERVER)("RedisBroker: positions and history across nodes", () => {
  it("one position per publication on every edge; history since a position on any node: exactly the missed, in order", async () => {
    for (const e of edges) await e.broker.subscribe("feed");
    for (let n = 1; n <= 3; n++) expect((await apis[0]!.publish(pub("feed", n))).edges).toBe(2);
    await eventually(() => on(0, "feed").length === 3 && on(1, "feed").length === 3, 5_000, "both edges got three");
    const seen = on(1, "feed").at(-1)!;
    const epoch = seen.epoch!;
    expect(epoch).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(on(1, "feed").map(position)).toEqual([1, 2, 3].map((n) => ({ n, offset: BigInt(n), epoch })));

    // Missed by a client of edge 1: published through the other API node.
    for (let n = 4; n <= 10; n++) await apis[1]!.publish(pub("feed", n));
    await eventually(() => on(0, "feed").length === 10 && on(1, "feed").length === 10, 5_000, "both edges got ten");
    expect(on(0, "feed").map(position)).toEqual(on(1, "feed").map(position));

    for (const reader of [edges[1]!.broker, edges[0]!.broker, apis[0]!]) {
      const h = await reader.history("feed", { since: { offset: seen.offset!, epoch }, limit: 100 });
      expect(h.complete).toBe(true);
      expect(h.position).toEqual({ offset: 10n, epoch });
      expect(h.publications.map(position)).toEqual(on(1, "feed").slice(3).map(position));
      // The same bytes as delivered live: the event, and its JSON.
      expect(h.publications.map((p) => p.eventJson)).toEqual(
        on(1, "feed")
          .slice(3)
          .map((p) => p.eventJson),
      );
    }
    // Paged: the first `limit` missed, then again after the last one.
    const page1 = await apis[1]!.history("feed", { since: { offset: 3n, epoch }, limit: 4 });
    expect(page1.publications.map((p) => p.offset)).toEqual([4n, 5n, 6n, 7n]);
    const page2 = await apis[1]!.history("feed", { since: { offset: 7n, epoch }, limit: 4 });
    expect(page2.publications.map((p) => p.offset)).toEqual([8n, 9n, 10n]);
    // Without since: complete, oldest first, or newest first.
    const latest = await apis[1]!.history("feed", { limit: 2, newestFirst: true });
    expect(latest).toMatchObject({ complete: true, position: { offset: 10n, epoch } });
    expect(latest.publications.map((p) => p.offset)).toEqual([10n, 9n]);
    // Another epoch: not complete, nothing returned.
    const other = await apis[1]!.history("feed", { since: { offset: 3n, epoch: "elsewhere" }, limit: 100 });
    expect(other).toMatchObject({ complete: false, publications: [], position: { offset: 10n, epoch } });
  });

  it("broadcasts and channels without history: no position, the plain publish, no Redis keys", async () => {
    for (const e of edges) await e.broker.subscribe("nohist:x");
    await apis[0]!.publish(pub("nohist:x", 1));
    await apis[0]!.publish(pub("", 2));
    await eventually(
      () => on(0, "nohist:x").length === 1 && on(1, "").length === 1,
      5_000,
      "the publication and the broadcast",
    );
    expect([on(0, "nohist:x")[0]!.offset, on(0, "nohist:x")[0]!.epoch]).toEqual([0n, ""]);
    expect([on(1, "")[0]!.offset, on(1, "")[0]!.epoch]).toEqual([0n, ""]);
    expect(await admin.keys(`${PREFIX}[ph]:*nohist*`)).toEqual([]);
    expect(await admin.keys(`${PREFIX}[ph]:*broadcast*`)).toEqual([]);
    expect(await apis[1]!.history("nohist:x", { since: { offset: 1n, epoch: "e" }, limit: 10 })).toEqual({
      publications: [],
      position: { offset: 0n, epoch: "" },
      complete: false,
    });
  });

  it("after Redis restarts empty: a new epoch from offset 1, and since the old position is not complete", async () => {
    const before = on(0, "feed").at(-1)!;
    await redis.kill();
    await redis.start();
    await eventually(
      async () => {
        try {
          await apis[0]!.publish(pub("feed", 11));
          return true;
        } catch {
          return false;
        }
      },
      20_000,
      "a publish after the restart",
    );
    await eventually(() => connections.every((c) => c.status === "ready"), 20_000, "every node reconnected");
    const h = await edges[0]!.broker.history("feed", {
      since: { offset: before.offset!, epoch: before.epoch! },
      limit: 100,
    });
    expect(h.complete).toBe(false);
    expect(h.position.epoch).not.toBe(before.epoch);
    expect(h.position.offset).toBe(1n);
    // The edges re-subscribed by themselves and number it alike.
    await apis[1]!.publish(pub("feed", 12));
    await eventually(
      () => on(0, "feed").at(-1)?.event[0] === 12 && on(1, "feed").at(-1)?.event[0] === 12,
      10_000,
      "delivery after the restart",
    );
    expect(position(on(0, "feed").at(-1)!)).toEqual({ n: 12, offset: 2n, epoch: h.position.epoch });
    expect(position(on(1, "feed").at(-1)!)).toEqual(position(on(0, "feed").at(-1)!));
  }, 60_000);
});
