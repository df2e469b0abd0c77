/**
 * WatchLifecycle (src/api/lifecycle-watch.ts, src/core/lifecycle.ts), end
 * to end with real processes: the embedded mode (one API, two edges) and
 * the Redis mode (two API nodes, two edges): channel occupied and vacated,
 * member joined and left with their reasons, connection opened and closed,
 * the prefix filter, resuming with since (and a resync when since cannot be
 * resumed), an edge killed (EDGE_LOST leaves, vacated, edge lost), over
 * gRPC and over Connect (an HTTP client with fetch), and the bad inputs.
 */
import * as grpc from "@grpc/grpc-js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LeaveReason, type LifecycleEvent, type WatchLifecycleResponse } from "../gen/realtime/v1/realtime_pb.js";
import { startCluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { connectStream } from "./helpers/connect-stream.js";
import { StreamWatch } from "./helpers/stream-watch.js";
import { twoModes, type Setup } from "./helpers/modes.js";
import { eventually } from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";

const SECRET = "lifecycle-test-secret-0123456789abcdef";

function token(sub: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + 3_600)
    .sign(new TextEncoder().encode(SECRET));
}

/** One open WatchLifecycle stream and what it received. */
class Watch extends StreamWatch<WatchLifecycleResponse> {
  constructor(api: RealtimeTestClient, req: Parameters<RealtimeTestClient["watchLifecycle"]>[0]) {
    super(api.watchLifecycle(req));
  }

  /** The events received, as short strings: what they say, without times and positions. */
  said(): string[] {
    return this.got.filter((r) => r.event).map((r) => describeEvent(r.event!));
  }

  /** Waits until every line in `lines` was received (in any order among others). */
  async saw(lines: string[], what: string): Promise<void> {
    await eventually(() => lines.every((l) => this.said().includes(l)), 15_000, `${what}: ${lines.join(", ")}`);
  }
}

function describeEvent(e: LifecycleEvent): string {
  const k = e.kind;
  switch (k.case) {
    case "channelOccupied":
      return `occupied ${k.value.channel}`;
    case "channelVacated":
      return `vacated ${k.value.channel}`;
    case "memberJoined":
      return `joined ${k.value.channel} ${k.value.connectionId} ${k.value.userId}${k.value.restored ? " restored" : ""}`;
    case "memberLeft":
      return `left ${k.value.channel} ${k.value.connectionId} ${k.value.userId} ${LeaveReason[k.value.reason]}`;
    case "connectionOpened":
      return `opened ${k.value.connectionId} ${k.value.userId} ${k.value.edgeId}`;
    case "connectionClosed":
      return `closed ${k.value.connectionId} ${k.value.userId} ${k.value.reason}`;
    case "edgeLost":
      return `edge lost ${k.value.edgeId}`;
    default:
      return "none";
  }
}

const edgeOf = (connectionId: string) => connectionId.slice(0, connectionId.lastIndexOf("."));

const MODES = twoModes(
  "lifecycle",
  { REALTIME_JWT_SECRET: SECRET },
  { embedded: { REALTIME_EDGE_GRACE_MS: "500" }, redis: { REALTIME_REDIS_EDGE_TTL_MS: "1500" } },
);

for (const mode of MODES) {
  describe.skipIf(mode.skip)(mode.name, () => {
    let s: Setup;
    const watches: Watch[] = [];
    const opened: TestClient[] = [];
    const connect = async (edge: number, user: string) => {
      const c = await TestClient.connect(s.ws[edge]!, edge === 0 ? "json" : "proto", `/?token=${await token(user)}`);
      opened.push(c);
      return c;
    };
    const watch = (api: number, req: Parameters<RealtimeTestClient["watchLifecycle"]>[0]) => {
      const w = new Watch(s.apis[api]!, req);
      watches.push(w);
      return w;
    };

    beforeAll(async () => {
      s = await mode.start();
    }, 60_000);

    afterAll(async () => {
      for (const w of watches) w.cancel();
      await Promise.all(opened.map((c) => c.close()));
      await s?.stop();
    }, 30_000);

    it("joins, leaves and connections, in order, with reasons; filtered by prefix; resumed with since", async () => {
      const all = watch(0, { connections: true });
      const rooms = watch(1, { channelPrefix: "room" });
      // Both watches are in effect once a change made now reaches them.
      const probe = await connect(0, "probe");
      await probe.ok({ command: { case: "join", value: { channel: "room-probe" } } });
      await all.saw([`joined room-probe ${probe.id} probe`], "the first watch in effect");
      await rooms.saw([`joined room-probe ${probe.id} probe`], "the second watch in effect");

      const a = await connect(0, "alice");
      const b = await connect(1, "bob");
      await a.ok({ command: { case: "join", value: { channel: "room1" } } });
      await b.ok({ command: { case: "join", value: { channel: "room1" } } });
      await b.ok({ command: { case: "join", value: { channel: "other" } } });
      await b.ok({ command: { case: "leave", value: { channel: "room1" } } });
      await a.close();
      const expected = [
        `opened ${a.id} alice ${edgeOf(a.id)}`,
        `opened ${b.id} bob ${edgeOf(b.id)}`,
        "occupied room1",
        `joined room1 ${a.id} alice`,
        `joined room1 ${b.id} bob`,
        "occupied other",
        `joined other ${b.id} bob`,
        `left room1 ${b.id} bob LEFT`,
        `left room1 ${a.id} alice DISCONNECTED`,
        "vacated room1",
        `closed ${a.id} alice client`,
      ];
      await all.saw(expected, "every event");
      // In order: one change's events, and each connection's, come in the order they were made.
      const said = all.said();
      const at = (line: string) => said.indexOf(line);
      for (const [before, after] of [
        [`opened ${a.id} alice ${edgeOf(a.id)}`, `joined room1 ${a.id} alice`],
        ["occupied room1", `joined room1 ${a.id} alice`],
        [`joined room1 ${b.id} bob`, `left room1 ${b.id} bob LEFT`],
        [`left room1 ${a.id} alice DISCONNECTED`, "vacated room1"],
        [`left room1 ${a.id} alice DISCONNECTED`, `closed ${a.id} alice client`],
      ] as const) {
        expect(at(before), `${before} before ${after}`).toBeLessThan(at(after));
      }
      // Each exactly once, and occupied only for a channel that was empty.
      for (const line of expected)
        expect(
          said.filter((l) => l === line),
          line,
        ).toHaveLength(1);
      expect(said.filter((l) => l === "occupied room1")).toHaveLength(1);
      // Positions: one epoch, offsets strictly increasing.
      const positioned = all.got.filter((r) => r.event);
      expect(new Set(positioned.map((r) => r.epoch)).size).toBe(1);
      for (let i = 1; i < positioned.length; i++)
        expect(positioned[i]!.offset).toBeGreaterThan(positioned[i - 1]!.offset);
      for (const r of positioned) expect(r.event!.atUnixUs).toBeGreaterThan(BigInt(Date.now() - 60_000) * 1000n);
      // Each with its own id (for a consumer that drops repeats).
      expect(new Set(positioned.map((r) => r.id)).size).toBe(positioned.length);
      expect(positioned.every((r) => /^.+\..+$/.test(r.id))).toBe(true);

      // The prefix filter: room channels only, no connection events.
      await rooms.saw(["vacated room1"], "the filtered watch");
      expect(rooms.said().filter((l) => !/^(occupied|vacated|joined|left) room/.test(l))).toEqual([]);
      expect(rooms.said()).not.toContain(`joined other ${b.id} bob`);

      // Resume after the event of b's join to room1: exactly what followed it.
      const mark = positioned.find((r) => describeEvent(r.event!) === `joined room1 ${b.id} bob`)!;
      const after = positioned.slice(positioned.indexOf(mark) + 1).map((r) => describeEvent(r.event!));
      const resumed = watch(1, { connections: true, since: { offset: mark.offset, epoch: mark.epoch } });
      await resumed.saw(after, "the resumed watch");
      expect(resumed.said().slice(0, after.length)).toEqual(after);
      expect(resumed.got.some((r) => r.resync)).toBe(false);
      // A since that cannot be resumed (another epoch): resync first, then live events.
      const lost = watch(0, { connections: true, since: { offset: 5n, epoch: "no-such-epoch" } });
      await eventually(() => lost.got.length > 0, 10_000, "the resync message");
      expect(lost.got[0]).toMatchObject({ resync: true, offset: 0n });
      expect(lost.got[0]!.event).toBeUndefined();
      await b.close();
      await lost.saw([`left other ${b.id} bob DISCONNECTED`, "vacated other"], "live events after a resync");
    }, 60_000);

    it("occupied and vacated are exact under races: members on both edges joining and leaving at once", async () => {
      const w = watch(0, { channelPrefix: "race" });
      const clients = await Promise.all(Array.from({ length: 12 }, (_, i) => connect(i % 2, `racer${i}`)));
      for (let round = 0; round < 3; round++) {
        await Promise.all(clients.map((c) => c.ok({ command: { case: "join", value: { channel: "race" } } })));
        await Promise.all(clients.map((c) => c.ok({ command: { case: "leave", value: { channel: "race" } } })));
      }
      await eventually(
        () => w.said().filter((l) => l.startsWith("left race")).length === 36,
        20_000,
        "every leave of 3 rounds",
      );
      await eventually(() => w.said().filter((l) => l === "vacated race").length >= 1, 5_000, "a vacated");
      // By presence's clock (atUnixUs), the channel's transitions alternate,
      // starting occupied and ending vacated, whatever order the two edges
      // published them in.
      const transitions = w.got
        .filter((r) => r.event && /^(occupied|vacated) race$/.test(describeEvent(r.event)))
        .sort((x, y) => (x.event!.atUnixUs < y.event!.atUnixUs ? -1 : x.event!.atUnixUs > y.event!.atUnixUs ? 1 : 0))
        .map((r) => describeEvent(r.event!).split(" ")[0]);
      expect(transitions.length).toBeGreaterThanOrEqual(2);
      transitions.forEach((t, i) =>
        expect(t, `transition ${i} of ${transitions.join(",")}`).toBe(i % 2 === 0 ? "occupied" : "vacated"),
      );
      expect((await s.apis[1]!.presenceStats({ channel: "race" })).connections).toBe(0);
    }, 60_000);

    it("resumes across more than one history read (1,200 events; MAX_HISTORY_LIMIT is 1,000)", async () => {
      const w = watch(0, { channelPrefix: "page" });
      const c = await connect(0, "pager");
      await c.ok({ command: { case: "join", value: { channel: "page0" } } });
      await w.saw([`joined page0 ${c.id} pager`], "the watch in effect");
      const mark = w.got.find((r) => r.event && describeEvent(r.event) === `joined page0 ${c.id} pager`)!;
      w.cancel();
      // 300 joins and leaves of an empty channel (server-side: a client's
      // commands are rate-limited): occupied, joined, left, vacated each.
      const target = { target: { case: "connectionId" as const, value: c.id } };
      for (let i = 0; i < 300; i++) {
        await s.apis[0]!.subscribe({ target, channel: "page1" });
        await s.apis[0]!.unsubscribe({ target, channel: "page1" });
      }
      const resumed = watch(1, { channelPrefix: "page", since: { offset: mark.offset, epoch: mark.epoch } });
      await eventually(() => resumed.said().length >= 1_200, 20_000, "1,200 events resumed");
      expect(resumed.got.some((r) => r.resync)).toBe(false);
      const said = resumed.said().slice(0, 1_200);
      for (let i = 0; i < 1_200; i += 4) {
        expect(said.slice(i, i + 4)).toEqual([
          "occupied page1",
          `joined page1 ${c.id} pager`,
          `left page1 ${c.id} pager LEFT`,
          "vacated page1",
        ]);
      }
    }, 60_000);

    it("server-side Subscribe and Unsubscribe are joined and LEFT", async () => {
      const w = watch(0, { channelPrefix: "srv" });
      const c = await connect(1, "carol");
      await s.apis[1]!.subscribe({ target: { target: { case: "connectionId", value: c.id } }, channel: "srv1" });
      await s.apis[0]!.unsubscribe({ target: { target: { case: "connectionId", value: c.id } }, channel: "srv1" });
      await w.saw(
        ["occupied srv1", `joined srv1 ${c.id} carol`, `left srv1 ${c.id} carol LEFT`, "vacated srv1"],
        "server-side membership",
      );
    }, 30_000);

    it("over Connect: an HTTP client reads the stream with fetch (enveloped JSON)", async () => {
      const stream = connectStream(`http://${s.http[0]}/realtime.v1.Realtime/WatchLifecycle`, {
        channelPrefix: "http",
      });
      const messages = stream.messages;
      // The stream is in effect once a change made now reaches it.
      const d = await connect(0, "dave");
      await eventually(
        async () => {
          await d.request({ command: { case: "join", value: { channel: "http1" } } });
          await d.request({ command: { case: "leave", value: { channel: "http1" } } });
          return messages.length >= 4;
        },
        15_000,
        "events over Connect",
      );
      await stream.stop();
      expect(stream.status()).toBe(200);
      expect(messages.slice(0, 2)).toEqual([
        expect.objectContaining({ event: expect.objectContaining({ channelOccupied: { channel: "http1" } }) }),
        expect.objectContaining({
          event: expect.objectContaining({ memberJoined: { channel: "http1", connectionId: d.id, userId: "dave" } }),
        }),
      ]);
      expect(messages[0]).toMatchObject({ offset: expect.stringMatching(/^\d+$/), epoch: expect.any(String) });
    }, 30_000);

    it("bad input: a channel prefix that cannot match is INVALID_ARGUMENT with what to fix", async () => {
      const w = watch(0, { channelPrefix: "no spaces" });
      await eventually(() => w.status !== undefined, 10_000, "the status");
      expect(w.status!.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(w.status!.details).toMatch(/channel_prefix "no spaces" has a character outside/);
    });

    it("an edge killed: its members leave (EDGE_LOST), their channels vacate, the edge is lost", async () => {
      const w = watch(1, { channelPrefix: "lost", connections: true });
      const stays = await connect(0, "erin");
      const dies = await connect(1, "frank");
      await stays.ok({ command: { case: "join", value: { channel: "lost1" } } });
      await dies.ok({ command: { case: "join", value: { channel: "lost1" } } });
      await dies.ok({ command: { case: "join", value: { channel: "lost2" } } });
      await w.saw([`joined lost2 ${dies.id} frank`], "the joins");
      await s.edges[1]!.kill();
      await w.saw(
        [
          `left lost1 ${dies.id} frank EDGE_LOST`,
          `left lost2 ${dies.id} frank EDGE_LOST`,
          "vacated lost2",
          `edge lost ${edgeOf(dies.id)}`,
        ],
        "the edge's loss",
      );
      // lost1 keeps a member on the other edge: not vacated.
      expect(w.said()).not.toContain("vacated lost1");
      const said = w.said();
      expect(said.indexOf(`left lost2 ${dies.id} frank EDGE_LOST`)).toBeLessThan(said.indexOf("vacated lost2"));
    }, 60_000);
  });
}

describe("REALTIME_LIFECYCLE=false", () => {
  it("WatchLifecycle is FAILED_PRECONDITION, saying which setting", async () => {
    const c = await startCluster(1, { REALTIME_LIFECYCLE: "false" });
    const api = realtimeClient(c.grpc);
    try {
      const w = new Watch(api, {});
      await eventually(() => w.status !== undefined, 10_000, "the status");
      expect(w.status!.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(w.status!.details).toMatch(/REALTIME_LIFECYCLE=false.*set it to true on every node/);
    } finally {
      api.close();
      await c.stop();
    }
  }, 30_000);
});
