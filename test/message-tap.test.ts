/**
 * WatchMessages, the message tap (src/core/tap.ts, src/api/message-watch.ts),
 * end to end with real processes: the embedded mode (one API, two edges)
 * and the Redis mode (two API nodes, two edges): a watcher on one API node
 * sees a Send made on the other, a client's send on an edge and a
 * Broadcast, with their facts and previews; the prefix and event filters;
 * the rate limit reported as skipped, not lost; no copy published while
 * nobody watches, and none once the last watcher is gone; Connect with
 * fetch; INVALID_ARGUMENT for bad filters.
 */
import * as grpc from "@grpc/grpc-js";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MessageSource, type TappedMessage, type WatchMessagesResponse } from "../gen/realtime/v1/realtime_pb.js";
import { TAP_BURST, TAP_PREVIEW_BYTES, TAP_WANTED_MS } from "../src/core/tap.js";
import type { RealtimeTestClient } from "./helpers/grpc-client.js";
import { connectStream } from "./helpers/connect-stream.js";
import { StreamWatch } from "./helpers/stream-watch.js";
import { twoModes, type Setup } from "./helpers/modes.js";
import { scrape } from "./helpers/prom.js";
import { eventually } from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

/** One open WatchMessages stream and what it received. */
class Watch extends StreamWatch<WatchMessagesResponse> {
  constructor(api: RealtimeTestClient, req: Parameters<RealtimeTestClient["watchMessages"]>[0]) {
    super(api.watchMessages(req));
  }

  messages(): TappedMessage[] {
    return this.got.flatMap((r) => (r.message ? [r.message] : []));
  }

  skipped(): number {
    return this.got.reduce((n, r) => n + Number(r.skipped), 0);
  }

  /** The copy of the message with this id, once it came. */
  async copyOf(id: string): Promise<TappedMessage> {
    await eventually(() => this.messages().some((m) => m.id === id), 15_000, `the copy of ${id}`);
    return this.messages().find((m) => m.id === id)!;
  }
}

const MODES = twoModes("tap", {});

for (const mode of MODES) {
  describe.skipIf(mode.skip)(mode.name, () => {
    let s: Setup;
    const watches: Watch[] = [];
    const opened: TestClient[] = [];
    const watch = (api: number, req: Parameters<RealtimeTestClient["watchMessages"]>[0]) => {
      const w = new Watch(s.apis[api]!, req);
      watches.push(w);
      return w;
    };
    /** The tap's counters summed over every node of the mode (both API nodes once each, both edges). */
    const tapCounts = async () => {
      const urls = [...new Set(s.http), ...s.edges.map((e) => e.ready.ws!.replace("ws://", ""))];
      let copied = 0;
      let skipped = 0;
      for (const url of urls) {
        const m = await scrape(`http://${url}/metrics`);
        copied += m.get("switchboard_tap_copies_total", { outcome: "copied" });
        skipped += m.get("switchboard_tap_copies_total", { outcome: "skipped" });
      }
      return { copied, skipped };
    };
    /** A client of edge `edge` in `channel`. */
    const member = async (edge: number, channel: string) => {
      const c = await TestClient.connect(s.ws[edge]!, edge === 0 ? "json" : "proto");
      opened.push(c);
      await c.ok({ command: { case: "join", value: { channel } } });
      return c;
    };
    /** Sends from API node `api` until w has a copy of one (the nodes heard of the watcher); its copy. */
    const sendUntilSeen = async (w: Watch, api: number, channel: string) => {
      let seen: TappedMessage | undefined;
      await eventually(
        async () => {
          const { messageId } = await s.apis[api]!.send({ channel, event: "probe", payload: json(1) });
          await sleep(100);
          seen = w.messages().find((m) => m.id === messageId);
          return seen !== undefined;
        },
        15_000,
        `a Send on API ${api} reaching the watcher`,
      );
      return seen!;
    };

    beforeAll(async () => {
      s = await mode.start();
    }, 60_000);

    afterAll(async () => {
      for (const w of watches) w.cancel();
      await Promise.all(opened.map((c) => c.close()));
      await s?.stop();
    }, 30_000);

    it("copies nothing while nobody watches", async () => {
      const c = await member(1, "quiet");
      await s.apis[0]!.send({ channel: "quiet", event: "e", payload: json({ n: 1 }) });
      await s.apis[1]!.broadcast({ event: "e", payload: json(2) });
      await c.ok({ command: { case: "send", value: { channel: "quiet", event: "e", payload: json(3) } } });
      expect(await tapCounts()).toEqual({ copied: 0, skipped: 0 });
    });

    it("a watcher on one API node sees a Send on the other, a client's send on an edge and a Broadcast", async () => {
      const w = watch(1, {});
      await sendUntilSeen(w, 0, "room:probe");
      const big = "x".repeat(3 * TAP_PREVIEW_BYTES);
      const sent = await s.apis[0]!.send({ channel: "room:1", event: "greeting", payload: json({ text: big }) });
      const copy = await w.copyOf(sent.messageId);
      expect(copy).toMatchObject({
        channel: "room:1",
        userId: "",
        event: "greeting",
        source: MessageSource.BACKEND,
        origin: "",
        truncated: true,
        size: JSON.stringify({ text: big }).length,
      });
      expect(copy.preview.case).toBe("json");
      expect(copy.preview.value).toBe(JSON.stringify({ text: big }).slice(0, TAP_PREVIEW_BYTES));
      expect(Math.abs(Number(copy.acceptedUnixUs / 1000n) - Date.now())).toBeLessThan(10_000);

      // A client's send, on the other edge: its edge heard of the watcher too (the next announcement at the latest).
      const c = await member(1, "room:2");
      let clientCopy: TappedMessage | undefined;
      await eventually(
        async () => {
          const r = await c.ok({
            command: { case: "send", value: { channel: "room:2", event: "chat", payload: json({ hi: 1 }) } },
          });
          await sleep(100);
          clientCopy = w.messages().find((m) => m.id === r.messageId);
          return clientCopy !== undefined;
        },
        15_000,
        "a client's send reaching the watcher",
      );
      expect(clientCopy).toMatchObject({
        channel: "room:2",
        event: "chat",
        source: MessageSource.CLIENT,
        origin: c.id,
        size: 8,
        truncated: false,
        preview: { case: "json", value: '{"hi":1}' },
      });

      const bytes = new Uint8Array(2 * TAP_PREVIEW_BYTES).fill(7);
      const b = await s.apis[0]!.broadcast({ event: "tick", payload: { case: "binary", value: bytes } });
      const broadcast = await w.copyOf(b.messageId);
      expect(broadcast).toMatchObject({ channel: "", event: "tick", size: bytes.length, truncated: true });
      expect(broadcast.preview).toEqual({ case: "binary", value: bytes.subarray(0, TAP_PREVIEW_BYTES) });

      const u = await s.apis[0]!.send({ userId: "ann", event: "dm", payload: json("hello") });
      expect(await w.copyOf(u.messageId)).toMatchObject({ channel: "", userId: "ann", event: "dm" });
    }, 60_000);

    it("filters by channel prefix and by event name", async () => {
      const all = watch(0, {});
      const rooms = watch(0, { channelPrefix: "room:" });
      const named = watch(1, { event: "only" });
      await sendUntilSeen(all, 0, "probe");
      await sendUntilSeen(all, 1, "probe");
      const sent = [
        await s.apis[0]!.send({ channel: "room:a", event: "e", payload: json(1) }),
        await s.apis[1]!.send({ channel: "lobby", event: "only", payload: json(2) }),
        await s.apis[0]!.broadcast({ event: "e", payload: json(3) }),
        await s.apis[1]!.send({ channel: "room:b", event: "only", payload: json(4) }),
      ].map((r) => r.messageId);
      for (const id of sent) await all.copyOf(id);
      await rooms.copyOf(sent[3]!);
      await named.copyOf(sent[3]!);
      const ids = (w: Watch) => w.messages().map((m) => m.id);
      expect(ids(rooms).filter((id) => sent.includes(id))).toEqual([sent[0], sent[3]]);
      expect(
        ids(named)
          .filter((id) => sent.includes(id))
          .sort(),
      ).toEqual([sent[1], sent[3]].sort());
      expect(rooms.messages().every((m) => m.channel.startsWith("room:"))).toBe(true);
      expect(named.messages().every((m) => m.event === "only")).toBe(true);
    }, 60_000);

    it(`past ${TAP_BURST} copies at once a node counts the rest as skipped, and the watcher is told`, async () => {
      const w = watch(1, { event: "burst" });
      const probe = watch(1, {});
      await sendUntilSeen(probe, 0, "probe");
      // Let the bucket refill after the probes.
      await sleep(1_500);
      const before = await tapCounts();
      const n = 3 * TAP_BURST;
      const requests = Array.from({ length: n }, (_, i) => ({ channel: "burst", event: "burst", payload: json(i) }));
      await s.apis[0]!.sendBatch({ requests });
      await eventually(() => w.messages().length + w.skipped() >= n, 15_000, "every message copied or skipped");
      expect(w.messages().length + w.skipped()).toBe(n);
      expect(w.messages().length).toBeLessThan(n / 2);
      expect(w.skipped()).toBeGreaterThan(n / 2);
      const after = await tapCounts();
      expect(after.skipped - before.skipped).toBe(w.skipped());
    }, 60_000);

    it("over Connect: an HTTP client reads the stream with fetch (enveloped JSON)", async () => {
      const stream = connectStream(`http://${s.http[1]}/realtime.v1.Realtime/WatchMessages`, {
        channelPrefix: "http",
      });
      const messages = stream.messages as { message?: { id: string } }[];
      let id = "";
      await eventually(
        async () => {
          id = (await s.apis[0]!.send({ channel: "http-1", event: "e", payload: json({ over: "connect" }) })).messageId;
          await sleep(100);
          return messages.some((m) => m.message?.id === id);
        },
        15_000,
        "a copy over Connect",
      );
      await stream.stop();
      expect(stream.status()).toBe(200);
      expect(messages.find((m) => m.message?.id === id)!.message).toMatchObject({
        channel: "http-1",
        event: "e",
        source: "MESSAGE_SOURCE_BACKEND",
        json: '{"over":"connect"}',
      });
    }, 30_000);

    it("bad input: a prefix or an event name that cannot match is INVALID_ARGUMENT with what to fix", async () => {
      const prefix = watch(0, { channelPrefix: "no spaces" });
      const event = watch(0, { event: "channel:join" });
      await eventually(() => prefix.status !== undefined && event.status !== undefined, 10_000, "the statuses");
      expect(prefix.status!.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(prefix.status!.details).toMatch(/channel_prefix "no spaces" has a character outside/);
      expect(event.status!.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(event.status!.details).toMatch(/reserved/);
    });

    it(`copies stop within ${TAP_WANTED_MS} ms of the last watcher closing`, async () => {
      for (const w of watches) w.cancel();
      await sleep(TAP_WANTED_MS + 1_000);
      const before = await tapCounts();
      const c = await member(0, "after");
      await s.apis[0]!.send({ channel: "after", event: "e", payload: json(1) });
      await s.apis[1]!.send({ channel: "after", event: "e", payload: json(2) });
      await c.ok({ command: { case: "send", value: { channel: "after", event: "e", payload: json(3) } } });
      expect(await tapCounts()).toEqual(before);
    }, 30_000);
  });
}
