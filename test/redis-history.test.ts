/**
 * Positions and history in Redis (src/redis/history-redis.ts): the publish
 * script and the history read, against a redis-server of the test's own
 * (it is flushed and restarted here). The bytes the script publishes and
 * stores decode with protobuf-es to the publication with its position; the
 * offsets are contiguous; history is bounded by count and by age; a lost
 * position gives a new epoch; the keys of a channel share one Cluster slot
 * with its pub/sub channel.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PublicationSchema } from "../gen/realtime/link/v1/link_pb.js";
import { closeRedis, connectRedis, openRedis } from "../src/redis/connection.js";
import { positionFields } from "../src/redis/broker-redis.js";
import { RedisHistory, type HistoryLimits } from "../src/redis/history-redis.js";
import { encodePublication, positionIndex } from "../src/wire/publication.js";
import { eventually, freePort, NO_REDIS_SERVER, OwnRedis } from "./helpers/redis-topology.js";

let redis: OwnRedis;
let command: Redis;
let subscriber: Redis;
let history: RedisHistory;
const PREFIX = "test:history:";
const LIMITS: HistoryLimits = { size: 5, ageMs: 60_000 };

beforeAll(async () => {
  if (NO_REDIS_SERVER) return;
  redis = new OwnRedis(await freePort());
  await redis.start();
  command = openRedis(redis.url, "test:history");
  subscriber = openRedis(redis.url, "test:history:sub");
  expect(await connectRedis(command, 5_000)).toBe(true);
  expect(await connectRedis(subscriber, 5_000)).toBe(true);
  history = new RedisHistory(command, PREFIX, positionFields());
});

afterAll(async () => {
  if (NO_REDIS_SERVER) return;
  await closeRedis(command);
  await closeRedis(subscriber);
  await redis.kill();
});

/** The nth publication to channel; every other one with its accept time, a field above the position's. */
const pub = (channel: string, n: number) => ({
  channel,
  event: new Uint8Array([0x0a, 1, 0x30 + (n % 10)]),
  eventJson: `{"n":${n}}`,
  origin: n % 2 ? "conn-1" : "",
  skipOrigin: n % 2 === 1,
  acceptedUnixMs: n % 2 ? 1_796_000_000_000n + BigInt(n) : 0n,
});
const pubsub = (channel: string) => `${PREFIX}c:${channel}`;

/** Publishes the nth publication to channel, encoded as the broker does. */
function publishOne(h: RedisHistory, channel: string, n: number, limits = LIMITS) {
  const p = pub(channel, n);
  const bytes = encodePublication(p);
  return h.publish(pubsub(channel), bytes, positionIndex(p, bytes), limits, true);
}

/** Publishes n publications to channel; returns their positions. */
async function publishN(channel: string, n: number, limits = LIMITS) {
  const out = [];
  for (let i = 1; i <= n; i++) out.push(await publishOne(history, channel, i, limits));
  return out;
}

describe.skipIf(NO_REDIS_SERVER)("history in Redis", () => {
  it("publishes the publication with its position written in: protobuf-es reads it as written", async () => {
    const received: Buffer[] = [];
    subscriber.on("smessageBuffer", (_c: Buffer, m: Buffer) => received.push(m));
    await subscriber.ssubscribe(pubsub("bytes"));
    const [first, second] = await publishN("bytes", 2);
    expect(first!.receivers).toBe(1);
    expect(first!.offset).toBe(1n);
    expect(second!.offset).toBe(2n);
    expect(second!.epoch).toBe(first!.epoch);
    await eventually(() => received.length === 2, 5_000, "both received");
    for (const [i, bytes] of received.entries()) {
      const p = pub("bytes", i + 1);
      const expected = create(PublicationSchema, { ...p, offset: BigInt(i + 1), epoch: first!.epoch });
      // Decodes to the publication with its position, and is the bytes protobuf-es writes for it.
      expect(fromBinary(PublicationSchema, new Uint8Array(bytes))).toEqual(expected);
      expect(Buffer.from(toBinary(PublicationSchema, expected)).equals(bytes)).toBe(true);
    }
    // The history holds the same bytes.
    const read = await history.read(pubsub("bytes"), LIMITS, { limit: 10 });
    expect(read.entries.map((e) => Buffer.from(e).toString("hex"))).toEqual(
      [...received].reverse().map((b) => b.toString("hex")),
    );
    await subscriber.sunsubscribe(pubsub("bytes"));
  });

  it("varints of large offsets are canonical", async () => {
    const [position] = history.keys(pubsub("big"));
    const { epoch } = await history.read(pubsub("big"), LIMITS, { limit: 0 }); // creates the position
    for (const start of [126, 16_382, 2 ** 31 - 2, 2 ** 40, 2 ** 53 - 3]) {
      const current = (await command.get(position))!;
      expect(current.startsWith(`${epoch}:`)).toBe(true);
      await command.set(position, current.replace(/:\d+:/, `:${start}:`));
      const [p] = await publishN("big", 1);
      expect(p!.offset).toBe(BigInt(start + 1));
      const read = await history.read(pubsub("big"), LIMITS, { limit: 1, newestFirst: true });
      const decoded = fromBinary(PublicationSchema, read.entries[0]!);
      expect(decoded.offset).toBe(BigInt(start + 1));
      expect(Buffer.from(toBinary(PublicationSchema, decoded)).equals(read.entries[0]!)).toBe(true);
    }
  });

  it("keeps the last `size` publications; since reads exactly the missed ones, or says it cannot", async () => {
    const positions = await publishN("bounded", 8); // size 5: offsets 4..8 retained
    const epoch = positions[0]!.epoch;
    const offsets = (entries: Uint8Array[]) => entries.map((e) => Number(fromBinary(PublicationSchema, e).offset));

    const all = await history.read(pubsub("bounded"), LIMITS, { limit: 100 });
    expect(all).toMatchObject({ epoch, top: 8n, complete: false });
    expect(offsets(all.entries)).toEqual([8, 7, 6, 5, 4]);

    const since5 = await history.read(pubsub("bounded"), LIMITS, { since: { offset: 5n, epoch }, limit: 100 });
    expect(since5.complete).toBe(true);
    expect(offsets(since5.entries)).toEqual([8, 7, 6]);
    // The oldest retained is 4: since 3 misses nothing that is gone; since 2 does.
    expect((await history.read(pubsub("bounded"), LIMITS, { since: { offset: 3n, epoch }, limit: 100 })).complete).toBe(
      true,
    );
    const gone = await history.read(pubsub("bounded"), LIMITS, { since: { offset: 2n, epoch }, limit: 100 });
    expect(gone.complete).toBe(false);
    expect(gone.entries).toEqual([]);
    // Up to date: complete, nothing missed.
    const none = await history.read(pubsub("bounded"), LIMITS, { since: { offset: 8n, epoch }, limit: 100 });
    expect(none).toMatchObject({ complete: true, top: 8n, entries: [] });
    // Another epoch, or an offset beyond the top: not complete.
    for (const since of [
      { offset: 5n, epoch: "other" },
      { offset: 9n, epoch },
    ])
      expect((await history.read(pubsub("bounded"), LIMITS, { since, limit: 100 })).complete).toBe(false);
    // limit: the first `limit` missed oldest first, the last `limit` newest first.
    const limited = await history.read(pubsub("bounded"), LIMITS, { since: { offset: 4n, epoch }, limit: 2 });
    expect(offsets(limited.entries)).toEqual([6, 5]);
    const newest = await history.read(pubsub("bounded"), LIMITS, {
      since: { offset: 4n, epoch },
      limit: 2,
      newestFirst: true,
    });
    expect(offsets(newest.entries)).toEqual([8, 7]);
    expect(await command.llen(history.keys(pubsub("bounded"))[1])).toBe(5);
  });

  it("drops entries past their age, keeps the position; the keys expire", async () => {
    const short: HistoryLimits = { size: 100, ageMs: 400 };
    const [p] = await publishN("aging", 3, short);
    const [position, list] = history.keys(pubsub("aging"));
    const ttl = await command.pttl(list);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(400);
    expect(await command.pttl(position)).toBeGreaterThan(6 * 24 * 3600_000);
    await new Promise((r) => setTimeout(r, 200));
    await publishN("aging", 1, short);
    await eventually(
      async () => (await history.read(pubsub("aging"), short, { limit: 100 })).entries.length === 1,
      5_000,
      "the first three aged out",
    );
    const read = await history.read(pubsub("aging"), short, { since: { offset: 1n, epoch: p!.epoch }, limit: 100 });
    expect(read).toMatchObject({ epoch: p!.epoch, top: 4n, complete: false });
    expect(
      (await history.read(pubsub("aging"), short, { since: { offset: 3n, epoch: p!.epoch }, limit: 9 })).complete,
    ).toBe(true);
  });

  it("a position read before the first publish holds for it", async () => {
    const before = await history.read(pubsub("fresh"), LIMITS, { limit: 10 });
    expect(before).toMatchObject({ top: 0n, complete: false, entries: [] });
    await publishN("fresh", 2);
    const after = await history.read(pubsub("fresh"), LIMITS, {
      since: { offset: 0n, epoch: before.epoch },
      limit: 10,
    });
    expect(after.complete).toBe(true);
    expect(after.entries.length).toBe(2);
  });

  it("a lost position (FLUSHALL; a restart without persistence) gives a new epoch, offsets from 1", async () => {
    const [p] = await publishN("lost", 3);
    await command.flushall();
    const [q] = await publishN("lost", 1);
    expect(q!.offset).toBe(1n);
    expect(q!.epoch).not.toBe(p!.epoch);
    const read = await history.read(pubsub("lost"), LIMITS, { since: { offset: 3n, epoch: p!.epoch }, limit: 10 });
    expect(read).toMatchObject({ complete: false, epoch: q!.epoch, top: 1n });

    // The same after a restart: the scripts are gone too (NOSCRIPT), and are sent again.
    await redis.kill();
    await redis.start();
    await eventually(() => command.status === "ready", 10_000, "reconnected");
    const [r] = await publishN("lost", 1);
    expect(r!.offset).toBe(1n);
    expect(r!.epoch).not.toBe(q!.epoch);
  });

  it("a failover to a replica gives a new epoch: offsets it may lack are never handed out again", async () => {
    const replica = new OwnRedis(await freePort());
    await replica.start();
    const onReplica = openRedis(replica.url, "test:history:replica");
    try {
      expect(await connectRedis(onReplica, 5_000)).toBe(true);
      await command.config("SET", "repl-diskless-sync-delay", "0");
      // The replica loads what it receives without writing it to disk (no dump.rdb in the working tree).
      await onReplica.config("SET", "repl-diskless-load", "on-empty-db");
      await onReplica.call("REPLICAOF", "127.0.0.1", String(redis.port));
      await eventually(
        async () => /master_link_status:up/.test(await onReplica.info("replication")),
        10_000,
        "the replica in sync",
      );
      const [p] = await publishN("failover", 3);
      const [position] = history.keys(pubsub("failover"));
      await eventually(async () => (await onReplica.get(position)) !== null, 5_000, "the position replicated");
      // The replica has every write here, yet it cannot know that: promoted, it numbers anew.
      await onReplica.call("REPLICAOF", "NO", "ONE");
      const promoted = new RedisHistory(onReplica, PREFIX, positionFields());
      const read = await promoted.read(pubsub("failover"), LIMITS, {
        since: { offset: 3n, epoch: p!.epoch },
        limit: 10,
      });
      expect(read.complete).toBe(false);
      expect(read.epoch).not.toBe(p!.epoch);
      const next = await publishOne(promoted, "failover", 4);
      expect(next).toMatchObject({ offset: 1n, epoch: read.epoch });
    } finally {
      await closeRedis(onReplica);
      await replica.kill();
    }
  });

  it("a channel's keys and its pub/sub channel lie in one Cluster slot", () => {
    expect([slot("foo"), slot("123456789")]).toEqual([12182, 0x31c3 % 16384]);
    for (const prefix of ["realtime:", "{app}:", "a:{b}c:"]) {
      const h = new RedisHistory(command, prefix, positionFields());
      for (const channel of ["lobby", "a/b=c+d@e.f:g", "x"]) {
        const name = `${prefix}c:${channel}`;
        const [position, list] = h.keys(name);
        expect(position.startsWith(prefix) && list.startsWith(prefix)).toBe(true);
        expect([slot(position), slot(list)]).toEqual([slot(name), slot(name)]);
      }
    }
  });
});

/** Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag or the whole key, mod 16384. */
function slot(key: string): number {
  let s = key;
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) s = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(s)) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
