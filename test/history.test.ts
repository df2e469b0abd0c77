/**
 * The hub's positions and history (src/core/history.ts) and the history
 * settings (src/core/history-rules.ts, src/config.ts): numbering, the ring
 * past its size, age, reads since a position in both orders, forgetting
 * quiet channels, and rules that are refused with a message.
 */
import { describe, expect, it, vi } from "vitest";
import type { Publication } from "../src/core/broker.js";
import { ChannelStreams, fitHistory, POSITION_IDLE_MS } from "../src/core/history.js";
import { historyRules, parseHistoryRules } from "../src/core/history-rules.js";
import { ConfigError, loadConfig } from "../src/config.js";

const pub = (channel: string, n: number): Publication => ({
  channel,
  event: new Uint8Array([n]),
  eventJson: `{"n":${n}}`,
  origin: "",
  skipOrigin: false,
});
const ns = (pubs: Publication[]) => pubs.map((p) => p.event[0]);

function streams(size = 5, ageMs = 0) {
  let now = 1_000_000;
  const s = new ChannelStreams(historyRules(size, ageMs, parseHistoryRules("off:=0,big:=50", ageMs)), () => now);
  return { s, tick: (ms: number) => (now += ms) };
}

describe("ChannelStreams", () => {
  it("numbers each channel from 1 in one epoch, and never changes the caller's publication", () => {
    const { s } = streams();
    const original = pub("a", 1);
    const first = s.assign(original);
    expect([first.offset, original.offset]).toEqual([1n, undefined]);
    expect(first.epoch).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(s.assign(pub("a", 2)).offset).toBe(2n);
    expect(s.assign(pub("b", 1)).offset).toBe(1n);
    expect(s.assign(pub("b", 2)).epoch).not.toBe(first.epoch);
  });

  it("broadcasts and channels without history are passed through unnumbered", () => {
    const { s } = streams();
    for (const p of [pub("", 1), pub("off:x", 1)]) expect(s.assign(p)).toBe(p);
    expect(s.read("off:x", { limit: 10 })).toEqual({
      publications: [],
      position: { offset: 0n, epoch: "" },
      complete: true,
    });
    expect(s.read("off:x", { limit: 10, since: { offset: 0n, epoch: "" } }).complete).toBe(false);
    expect(s.size).toBe(0);
  });

  it("keeps the last `size` in a ring: reads since, with limits, in both orders, across the wrap", () => {
    const { s } = streams(5);
    for (let n = 1; n <= 12; n++) s.assign(pub("a", n));
    const all = s.read("a", { limit: 100 });
    expect([ns(all.publications), all.position.offset, all.complete]).toEqual([[8, 9, 10, 11, 12], 12n, true]);
    const epoch = all.position.epoch;
    expect(all.publications.map((p) => p.offset)).toEqual([8n, 9n, 10n, 11n, 12n]);
    const since = (offset: bigint, limit = 100, newestFirst = false) =>
      s.read("a", { since: { offset, epoch }, limit, newestFirst });
    expect([ns(since(9n).publications), since(9n).complete]).toEqual([[10, 11, 12], true]);
    expect([ns(since(7n).publications), since(7n).complete]).toEqual([[8, 9, 10, 11, 12], true]);
    expect([ns(since(6n).publications), since(6n).complete]).toEqual([[], false]); // 7 is gone: none, as Redis answers
    expect(ns(since(8n, 2).publications)).toEqual([9, 10]);
    expect(ns(since(8n, 2, true).publications)).toEqual([12, 11]);
    expect(ns(s.read("a", { limit: 2, newestFirst: true }).publications)).toEqual([12, 11]);
    expect(ns(s.read("a", { limit: 2 }).publications)).toEqual([8, 9]);
    expect([since(12n).publications.length, since(12n).complete]).toEqual([0, true]);
    // A position from the future or another epoch: nothing, not complete.
    expect(since(13n).complete).toBe(false);
    expect(s.read("a", { since: { offset: 9n, epoch: "other" }, limit: 10 }).complete).toBe(false);
  });

  it("drops entries older than the age, keeps the position, and forgets a quiet channel", () => {
    const { s, tick } = streams(100, 1_000);
    s.assign(pub("a", 1));
    tick(600);
    s.assign(pub("a", 2));
    tick(500);
    const read = s.read("a", { limit: 10 });
    expect([ns(read.publications), read.position.offset]).toEqual([[2], 2n]);
    const epoch = read.position.epoch;
    expect(s.read("a", { since: { offset: 0n, epoch }, limit: 10 }).complete).toBe(false);
    expect(s.read("a", { since: { offset: 1n, epoch }, limit: 10 }).complete).toBe(true);
    tick(1_000);
    s.sweep();
    // Empty, but remembered: a client at offset 2 missed nothing.
    expect(s.read("a", { since: { offset: 2n, epoch }, limit: 10 })).toEqual({
      publications: [],
      position: { offset: 2n, epoch },
      complete: true,
    });
    tick(POSITION_IDLE_MS + 1);
    s.sweep();
    expect(s.size).toBe(0);
    expect(s.read("a", { since: { offset: 2n, epoch }, limit: 10 }).complete).toBe(false);
  });

  it("ages and wraps a ring that grows as events come: reads stay whole across trims and the wrap", () => {
    const { s, tick } = streams(4, 1_000);
    const read = () => ns(s.read("a", { limit: 10 }).publications);
    s.assign(pub("a", 1));
    s.assign(pub("a", 2));
    tick(1_000);
    s.assign(pub("a", 3)); // 1 and 2 aged out: the ring holds 3 after a trimmed head
    expect(read()).toEqual([3]);
    for (let n = 4; n <= 9; n++) s.assign(pub("a", n));
    expect(read()).toEqual([6, 7, 8, 9]);
    expect(ns(s.read("a", { limit: 2, newestFirst: true }).publications)).toEqual([9, 8]);
  });

  it("runs its sweep only while it holds a stream, and none after close", () => {
    vi.useFakeTimers();
    try {
      let now = 0;
      const s = new ChannelStreams(historyRules(5, 1_000, []), () => now);
      expect(vi.getTimerCount()).toBe(0);
      s.assign(pub("a", 1));
      expect(vi.getTimerCount()).toBe(1);
      now += POSITION_IDLE_MS + 1;
      vi.advanceTimersToNextTimer(); // the sweep forgets the quiet stream, then stops
      expect([s.size, vi.getTimerCount()]).toEqual([0, 0]);
      s.assign(pub("b", 1));
      expect(vi.getTimerCount()).toBe(1);
      s.close();
      s.assign(pub("c", 1));
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("fitHistory keeps the first events within the byte budget, at least one", () => {
    const { s } = streams(50);
    for (let n = 1; n <= 10; n++) s.assign(pub("big:a", n));
    const read = s.read("big:a", { limit: 50 });
    const each = read.publications[0]!.event.length + read.publications[0]!.eventJson.length;
    expect(ns(fitHistory(read, 3 * each).publications)).toEqual([1, 2, 3]);
    expect(ns(fitHistory(read, 1).publications)).toEqual([1]);
  });
});

describe("history settings", () => {
  it("the longest prefix wins; a rule without ttl takes the global one; size 0 is off", () => {
    const rules = parseHistoryRules("chat:=1000/600000, chat:vip:=10 ,tmp:=0", 5_000);
    const of = historyRules(100, 120_000, rules);
    expect(of("chat:vip:1")).toEqual({ size: 10, ageMs: 5_000 });
    expect(of("chat:1")).toEqual({ size: 1000, ageMs: 600_000 });
    expect(of("tmp:1")).toBeUndefined();
    expect(of("other")).toEqual({ size: 100, ageMs: 120_000 });
    expect(of("")).toBeUndefined();
    expect(historyRules(0, 120_000)("any")).toBeUndefined();
  });

  it("refuses bad values with the variable's name and what to write", () => {
    const bad = {
      REALTIME_HISTORY_RULES: ["chat", "chat:=x", "bad prefix=1", "a=1,a=2", "a=20000", "a=1/999999999"],
      REALTIME_HISTORY_SIZE: ["-1", "10001"],
      REALTIME_HISTORY_TTL_MS: ["86400001"],
    };
    for (const [env, values] of Object.entries(bad)) {
      for (const value of values) {
        expect(() => loadConfig({ [env]: value }), `${env}=${value}`).toThrow(ConfigError);
        expect(() => loadConfig({ [env]: value })).toThrow(new RegExp(env));
      }
    }
    const ok = loadConfig({ REALTIME_HISTORY_RULES: "chat:=1000/600000,tmp:=0", REALTIME_HISTORY_SIZE: "0" });
    expect([ok.historyRules, ok.historySize, ok.historyTtlMs]).toEqual(["chat:=1000/600000,tmp:=0", 0, 120_000]);
  });
});
