/**
 * watchChannel (src/api/watch.ts) against an in-memory broker: the snapshot
 * comes after the subscription is in effect, a watcher that falls too far
 * behind (in events or in bytes) ends with RESOURCE_EXHAUSTED, and
 * cancelling detaches the node; with since, the missed events come from
 * history, then the live ones, each once, or a snapshot marked resync.
 * (End to end over every protocol: test/connect.test.ts.)
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EventSchema, MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { WATCH_MAX_QUEUED_BYTES, WATCH_MAX_QUEUED_EVENTS, watchChannel } from "../src/api/watch.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import type { HistoryQuery } from "../src/core/broker.js";
import { historyRules, NO_HISTORY } from "../src/core/history-rules.js";
import { MAX_RECOVERY_EVENTS } from "../src/core/limits.js";
import { NOOP_OBSERVER } from "../src/core/observer.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { createPublication, systemEvent } from "../src/core/publication.js";

function setup(historySize = 0) {
  const broker = new MemoryBroker(NOOP_OBSERVER, historySize > 0 ? historyRules(historySize, 0) : NO_HISTORY);
  // One edge, so publish has somewhere to go; it reads the history too.
  const history = broker.attach(() => {}, true);
  const presence = new MemoryPresence();
  let attached = 0;
  const source = (h: Parameters<MemoryBroker["attach"]>[0]) => {
    attached++;
    const node = broker.attach(h, false);
    return { subscribe: (c: string) => node.subscribe(c), close: () => (attached--, node.close()) };
  };
  /** Publishes an event to "c": a number (tick), or `bytes` of binary payload (big). */
  const publish = (id: string, payload: MessageInitShape<typeof EventSchema>["payload"]) =>
    broker.publish(
      createPublication(
        create(EventSchema, { id, channel: "c", event: payload?.case === "binary" ? "big" : "tick", payload }),
        1 << 20,
      ),
    );
  const say = (i: number) => publish(`e${i}`, { case: "json", value: { kind: { case: "numberValue", value: i } } });
  const big = (i: number, bytes: number) => publish(`b${i}`, { case: "binary", value: new Uint8Array(bytes) });
  return { broker, history, presence, source, say, big, attached: () => attached };
}

describe("watchChannel", () => {
  it("sends the snapshot, then events in order; a join that races the snapshot is not lost", async () => {
    const { presence, source, say, broker } = setup();
    presence.add("edge", "c", create(MemberSchema, { id: "a" }));
    const abort = new AbortController();
    const it = watchChannel("c", source, presence.view("api"), abort.signal);
    const first = await it.next();
    expect(first.value!.update.case).toBe("members");
    // "b" joined after the subscription: it is in the snapshot or in a join event, or both.
    presence.add("edge", "c", create(MemberSchema, { id: "b" }));
    broker.publish(
      createPublication(systemEvent("j1", "c", "channel:join", create(MemberSchema, { id: "b" })), 1 << 20),
    );
    say(1);
    say(2);
    const next = [(await it.next()).value!, (await it.next()).value!, (await it.next()).value!];
    expect(next.map((r) => r.update.case)).toEqual(["join", "message", "message"]);
    expect(next.map((r) => r.id)).toEqual(["j1", "e1", "e2"]);
    abort.abort(new Error("cancelled"));
    await expect(it.next()).rejects.toThrow("cancelled");
  });

  it(`ends with RESOURCE_EXHAUSTED, at its next read, once the watcher falls ${WATCH_MAX_QUEUED_EVENTS} events behind, and detaches`, async () => {
    const { presence, source, say, attached } = setup();
    const it = watchChannel("c", source, presence.view("api"), new AbortController().signal);
    await it.next(); // the snapshot
    for (let i = 0; i <= WATCH_MAX_QUEUED_EVENTS; i++) say(i);
    let err: unknown;
    let read = 0;
    try {
      for (;;) {
        await it.next();
        read++;
      }
    } catch (e) {
      err = e;
    }
    // Stale events are not worth sending to a watcher that must watch again anyway.
    expect(read).toBe(0);
    expect(err).toBeInstanceOf(RealtimeError);
    expect((err as RealtimeError).code).toBe(Code.ResourceExhausted);
    expect(attached()).toBe(0);
  });

  it(`drops its queue and detaches as soon as ${WATCH_MAX_QUEUED_BYTES} bytes of events wait, then ends with RESOURCE_EXHAUSTED at its next read`, async () => {
    const { presence, source, big, attached } = setup();
    const it = watchChannel("c", source, presence.view("api"), new AbortController().signal);
    await it.next(); // the snapshot
    // 17 events of 60 KiB fit in 1 MiB; the 18th does not.
    for (let i = 0; i < 17; i++) big(i, 60 * 1024);
    expect(attached()).toBe(1);
    big(17, 60 * 1024);
    await Promise.resolve();
    // Detached before any read: a watcher that never reads again pins nothing.
    expect(attached()).toBe(0);
    const err = await it.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RealtimeError);
    expect((err as RealtimeError).code).toBe(Code.ResourceExhausted);
    expect((err as RealtimeError).message).toMatch(/fell 1 MiB of events \(WATCH_MAX_QUEUED_BYTES\) behind/);
  });

  it("cancelling while waiting for an event ends the stream and detaches the node", async () => {
    const { presence, source, attached } = setup();
    const abort = new AbortController();
    const it = watchChannel("c", source, presence.view("api"), abort.signal);
    await it.next();
    expect(attached()).toBe(1);
    const pending = it.next();
    abort.abort(new Error("bye"));
    await expect(pending).rejects.toThrow("bye");
    expect(attached()).toBe(0);
  });

  describe("with since", () => {
    /** Drains the iterator's next `count` responses. */
    const take = async (it: AsyncGenerator<{ id: string; offset: bigint }>, count: number) => {
      const out: { id: string; offset: bigint }[] = [];
      for (let i = 0; i < count; i++) out.push((await it.next()).value!);
      return out.map((r) => [r.id, r.offset]);
    };

    it("sends the missed events from history, then live ones, each once, though some race the read", async () => {
      const { presence, source, say, history: hub } = setup(100);
      for (let i = 1; i <= 3; i++) await say(i);
      const { epoch } = (await hub.history("c", { limit: 1 })).position;
      for (let i = 4; i <= 5; i++) await say(i);
      // Published while the history is read: delivered live to the watch and kept.
      const history = {
        history: async (channel: string, q: HistoryQuery) => {
          for (let i = 6; i <= 7; i++) await say(i);
          return hub.history(channel, q);
        },
      };
      const abort = new AbortController();
      const it = watchChannel("c", source, presence.view("api"), abort.signal, {
        since: { offset: 3n, epoch },
        history,
      });
      const first = await take(it, 4);
      await say(8);
      expect([...first, ...(await take(it, 1))]).toEqual([
        ["e4", 4n],
        ["e5", 5n],
        ["e6", 6n],
        ["e7", 7n],
        ["e8", 8n],
      ]);
      // Nothing more is waiting: e6 and e7 came once.
      const pending = it.next();
      abort.abort(new Error("done"));
      await expect(pending).rejects.toThrow("done");
    });

    it(`starts with a snapshot marked resync when the epoch is not the channel's, or more than ${MAX_RECOVERY_EVENTS} were missed`, async () => {
      const { presence, source, say, history: hub } = setup(MAX_RECOVERY_EVENTS + 10);
      presence.add("edge", "c", create(MemberSchema, { id: "a" }));
      await say(0);
      const { epoch } = (await hub.history("c", { limit: 1 })).position;
      for (let i = 1; i <= MAX_RECOVERY_EVENTS + 1; i++) await say(i);
      const end = (await hub.history("c", { limit: 1 })).position.offset;
      for (const since of [
        { offset: 1n, epoch: "other" },
        { offset: end - BigInt(MAX_RECOVERY_EVENTS) - 1n, epoch },
      ]) {
        const it = watchChannel("c", source, presence.view("api"), new AbortController().signal, {
          since,
          history: hub,
        });
        const snapshot = (await it.next()).value!;
        expect([snapshot.update.case, snapshot.resync]).toEqual(["members", true]);
        await say(-1);
        const live = (await hub.history("c", { limit: 1, newestFirst: true })).position.offset;
        expect((await it.next()).value!.offset).toBe(live);
        await it.return(undefined);
      }
      // Exactly MAX_RECOVERY_EVENTS missed: resumed.
      const now = (await hub.history("c", { limit: 1 })).position.offset;
      const it = watchChannel("c", source, presence.view("api"), new AbortController().signal, {
        since: { offset: now - BigInt(MAX_RECOVERY_EVENTS), epoch },
        history: hub,
      });
      expect((await it.next()).value!.offset).toBe(now - BigInt(MAX_RECOVERY_EVENTS) + 1n);
      await it.return(undefined);
    });

    it("ends with the history's error (UNAVAILABLE) when it cannot be read, and detaches", async () => {
      const { presence, source, attached } = setup(100);
      const history = {
        history: () => Promise.reject(new RealtimeError(Code.Unavailable, "history away")),
      };
      const it = watchChannel("c", source, presence.view("api"), new AbortController().signal, {
        since: { offset: 1n, epoch: "x" },
        history,
      });
      await expect(it.next()).rejects.toThrow("history away");
      expect(attached()).toBe(0);
    });
  });
});
