/**
 * Positions, history and recovery as a client sees them (docs/protocol.md),
 * in both encodings, on real API and edge processes (embedded mode, the
 * hub numbers the channels): every event of a channel that keeps history
 * carries its offset and epoch, consecutive across application and system
 * events; a join's reply says where the member's stream starts; getHistory
 * reads what is kept; a rejoin with since gets exactly what it missed, in
 * order, once, and `recovered` says so, or says it could not.
 */
import { toJsonString } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, EventSchema, type Event, type Reply } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { TestClient } from "./helpers/ws-client.js";

let cluster: Cluster;
let api: RealtimeTestClient;
const clients: TestClient[] = [];
const ENCODINGS = ["json", "proto"] as const;

beforeAll(async () => {
  cluster = await startCluster(2, {
    REALTIME_HISTORY_RULES: "small:=5,nohist:=0,private:=10",
  });
  api = realtimeClient(cluster.grpc);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  api?.close();
  await cluster?.stop();
  await stopAll();
});

async function connect(enc: "json" | "proto", edge = 0): Promise<TestClient> {
  const c = await TestClient.connect(cluster.ws[edge]!, enc);
  clients.push(c);
  return c;
}

/** The raw text of every JSON frame a client receives. */
function texts(c: TestClient): string[] {
  const out: string[] = [];
  c.ws.on("message", (data: Buffer, isBinary) => {
    if (!isBinary) out.push(data.toString());
  });
  return out;
}

const json = (n: number) => ({ case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } });

async function sendN(channel: string, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await api.send({ channel, event: "n", payload: json(i) });
}

/** Waits until c has `count` events named name in channel. */
async function eventsOf(c: TestClient, channel: string, name: string, count: number): Promise<Event[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const got = c.events(name).filter((e) => e.channel === channel);
    if (got.length >= count) return got;
    if (Date.now() > deadline) throw new Error(`${got.length} of ${count} ${name} events in ${channel}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const numberOf = (e: Event) => (e.payload.value as { kind: { value: number } }).kind.value;

describe("positions", () => {
  it("every event carries its channel's offset and epoch, consecutive across system and application events, on every edge", async () => {
    for (const enc of ENCODINGS) {
      const channel = `pos-${enc}`;
      const a = await connect(enc, 0);
      const b = await connect(enc, 1);
      const joined = await a.ok({ command: { case: "join", value: { channel } } });
      // Where a's stream starts: its own channel:join, the channel's first event.
      expect(joined.position?.offset).toBe(1n);
      expect(joined.position?.epoch).toMatch(/^[A-Za-z0-9_-]{8}$/);
      const epoch = joined.position!.epoch;
      const own = await a.event("channel:join", channel);
      expect([own.offset, own.epoch]).toEqual([1n, epoch]);
      expect((await b.ok({ command: { case: "join", value: { channel } } })).position?.offset).toBe(2n);
      await sendN(channel, 1, 3);
      await b.ok({
        command: { case: "send", value: { channel, event: "from-b", payload: json(9) } },
      });
      const expected = [
        ["channel:join", 1n, epoch],
        ["channel:join", 2n, epoch],
        ["n", 3n, epoch],
        ["n", 4n, epoch],
        ["n", 5n, epoch],
        ["from-b", 6n, epoch],
      ];
      // b's stream starts at its own channel:join.
      for (const [c, from] of [
        [a, 0],
        [b, 1],
      ] as const) {
        await eventsOf(c, channel, "from-b", 1);
        const offsets = c
          .events()
          .filter((e) => e.channel === channel)
          .map((e) => [e.event, e.offset, e.epoch]);
        expect(offsets).toEqual(expected.slice(from));
      }
    }
  });

  it("in JSON the position is exactly what protobuf's JSON mapping writes (a uint64 as a string)", async () => {
    const c = await connect("json");
    const raw = texts(c);
    await c.ok({ command: { case: "join", value: { channel: "pos-text" } } });
    await sendN("pos-text", 1, 1);
    const event = (await eventsOf(c, "pos-text", "n", 1))[0]!;
    const frame = raw.find((t) => t.includes('"event":"n"'))!;
    expect(frame).toBe(`{"event":${toJsonString(EventSchema, event)}}`);
    expect(frame).toContain(`"offset":"2","epoch":"${event.epoch}"}`);
  });

  it("broadcasts and channels without history carry no position; a join there has none", async () => {
    for (const enc of ENCODINGS) {
      const c = await connect(enc);
      const joined = await c.ok({ command: { case: "join", value: { channel: `nohist:${enc}` } } });
      expect(joined.position).toBeUndefined();
      await sendN(`nohist:${enc}`, 1, 1);
      await api.broadcast({ event: `b-${enc}`, payload: json(1) });
      const [e] = await eventsOf(c, `nohist:${enc}`, "n", 1);
      const b = await c.event(`b-${enc}`);
      for (const x of [e!, b]) expect([x.offset, x.epoch]).toEqual([0n, ""]);
    }
  });
});

describe("getHistory", () => {
  it("reads what the channel keeps: since, limit, newest first, complete, in both encodings", async () => {
    await sendN("hist", 1, 8);
    for (const enc of ENCODINGS) {
      const c = await connect(enc);
      const all = await c.ok({ command: { case: "getHistory", value: { channel: "hist" } } });
      expect(all.events.map(numberOf)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(all.events.map((e) => e.offset)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
      expect(all.position?.offset).toBe(8n);
      const epoch = all.position!.epoch;
      expect(all.events.every((e) => e.epoch === epoch && e.channel === "hist" && e.id !== "")).toBe(true);
      const after = await c.ok({
        command: { case: "getHistory", value: { channel: "hist", since: { offset: 5n, epoch }, limit: 2 } },
      });
      expect([after.events.map(numberOf), after.complete]).toEqual([[6, 7], true]);
      const newest = await c.ok({
        command: { case: "getHistory", value: { channel: "hist", limit: 3, reverse: true } },
      });
      expect(newest.events.map(numberOf)).toEqual([8, 7, 6]);
      const otherEpoch = await c.ok({
        command: { case: "getHistory", value: { channel: "hist", since: { offset: 5n, epoch: "other" } } },
      });
      expect([otherEpoch.events.length, otherEpoch.complete, otherEpoch.position?.epoch]).toEqual([0, false, epoch]);
    }
  });

  it("keeps at most the channel's size: since an offset pushed out is not complete", async () => {
    await sendN("small:a", 1, 8);
    const c = await connect("proto");
    const all = await c.ok({ command: { case: "getHistory", value: { channel: "small:a" } } });
    expect(all.events.map(numberOf)).toEqual([4, 5, 6, 7, 8]);
    const epoch = all.position!.epoch;
    const gone = await c.ok({
      command: { case: "getHistory", value: { channel: "small:a", since: { offset: 2n, epoch } } },
    });
    // Not complete: no events (the same in Redis mode), read again without since.
    expect([gone.events.map(numberOf), gone.complete]).toEqual([[], false]);
    const kept = await c.ok({
      command: { case: "getHistory", value: { channel: "small:a", since: { offset: 3n, epoch } } },
    });
    expect(kept.complete).toBe(true);
  });

  it("is permissioned like join, and a limit over 1,000 is INVALID_ARGUMENT; neither closes the connection", async () => {
    for (const enc of ENCODINGS) {
      const c = await connect(enc);
      const denied: Reply = await c.request({ command: { case: "getHistory", value: { channel: "private:x" } } });
      expect(denied.error?.code).toBe(ErrorCode.PERMISSION_DENIED);
      const tooMany = await c.request({ command: { case: "getHistory", value: { channel: "hist", limit: 1001 } } });
      expect(tooMany.error?.code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(tooMany.error?.message).toMatch(/at most 1000/);
      await c.ok({ command: { case: "ping", value: {} } });
      expect(c.closeCode).toBeUndefined();
    }
  });
});

describe("recovery", () => {
  it("a rejoin with since gets exactly the events it missed, in order, once, before its reply: recovered", async () => {
    for (const enc of ENCODINGS) {
      const channel = `rec-${enc}`;
      const watcher = await connect(enc, 1);
      await watcher.ok({ command: { case: "join", value: { channel } } });
      const first = await connect(enc, 0);
      await first.ok({ command: { case: "join", value: { channel } } });
      await sendN(channel, 1, 3);
      const seen = await eventsOf(first, channel, "n", 3);
      const last = seen.at(-1)!;
      await first.close();
      // Missed while away: its own old connection's leave, and 5 events.
      await eventsOf(watcher, channel, "channel:leave", 1);
      await sendN(channel, 4, 5);
      const again = await connect(enc, 1);
      const reply = await again.ok({
        command: { case: "join", value: { channel, since: { offset: last.offset, epoch: last.epoch } } },
      });
      expect(reply.recovered).toBe(true);
      const before = again.events().filter((e) => e.channel === channel && e.offset <= reply.position!.offset);
      const expected = Array.from({ length: 6 }, (_, i) => last.offset + 1n + BigInt(i));
      // The replayed ones, then its own channel:join (where its stream goes on).
      expect(before.map((e) => e.offset)).toEqual([...expected, expected.at(-1)! + 1n]);
      expect(before.map((e) => e.event)).toEqual(["channel:leave", "n", "n", "n", "n", "n", "channel:join"]);
      expect(before.slice(1, 6).map(numberOf)).toEqual([4, 5, 6, 7, 8]);
      expect(reply.position?.offset).toBe(expected.at(-1)! + 1n);
    }
  });

  it("recovered is false, and nothing is replayed, when the epoch is another or the events are no longer kept", async () => {
    for (const enc of ENCODINGS) {
      await sendN(`small:${enc}`, 1, 8);
      const c = await connect(enc);
      const other = await c.ok({
        command: { case: "join", value: { channel: `small:${enc}`, since: { offset: 2n, epoch: "gone" } } },
      });
      expect([other.recovered, other.position?.offset]).toEqual([false, 9n]);
      const d = await connect(enc);
      const { position } = await d.ok({
        command: { case: "getHistory", value: { channel: `small:${enc}`, limit: 1 } },
      });
      const e = await connect(enc);
      const old = await e.ok({
        command: { case: "join", value: { channel: `small:${enc}`, since: { offset: 1n, epoch: position!.epoch } } },
      });
      expect(old.recovered).toBe(false);
      // Told by a resync frame too, before any event of the channel (a reply lost with the connection must not leave it believing it recovered).
      const kinds = e.frames
        .filter(
          (f) => (f.frame.case === "event" || f.frame.case === "resync") && f.frame.value.channel === `small:${enc}`,
        )
        .map((f) => f.frame.case);
      expect(kinds[0]).toBe("resync");
      expect(kinds.filter((k) => k === "resync")).toHaveLength(1);
      // Only its own join (and what came after it): no replay.
      expect(
        e
          .events()
          .filter((x) => x.channel === `small:${enc}`)
          .map((x) => x.event),
      ).toEqual(
        e
          .events()
          .filter((x) => x.channel === `small:${enc}` && x.offset >= old.position!.offset)
          .map((x) => x.event),
      );
      expect(e.events().some((x) => x.event === "n")).toBe(false);
    }
  });

  it("a member that rejoins with since replays without a second channel:join", async () => {
    const c = await connect("proto");
    const joined = await c.ok({ command: { case: "join", value: { channel: "rejoin" } } });
    await sendN("rejoin", 1, 2);
    await eventsOf(c, "rejoin", "n", 2);
    const again = await c.ok({
      command: { case: "join", value: { channel: "rejoin", since: joined.position! } },
    });
    expect(again.recovered).toBe(true);
    const n = c.events().filter((e) => e.channel === "rejoin");
    // The two events again (a client asked for them), and one channel:join only.
    expect(n.map((e) => [e.event, e.offset])).toEqual([
      ["channel:join", 1n],
      ["n", 2n],
      ["n", 3n],
      ["n", 2n],
      ["n", 3n],
    ]);
    expect(again.position?.offset).toBe(3n);
  });
});
