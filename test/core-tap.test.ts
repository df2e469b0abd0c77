/**
 * The message tap's core (src/core/tap.ts) with a fake clock and an
 * in-memory broker: nothing copied until wanted and after the wanted time
 * ran out; the rate and burst, and what past them is counted and reported
 * once per TAP_SKIPPED_REPORT_MS; the preview cut on a character boundary;
 * TapDemand announcing while a watcher is open, and stopping after the last.
 */
import { fromBinary, fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MessageSource, WatchMessagesResponseSchema } from "../gen/realtime/v1/realtime_pb.js";
import type { Publication } from "../src/core/broker.js";
import { unpositioned } from "../src/core/broker.js";
import { NOOP_OBSERVER } from "../src/core/observer.js";
import {
  TAP_ANNOUNCE_MS,
  TAP_BURST,
  TAP_CHANNEL,
  TAP_COPIES_PER_SECOND,
  TAP_PREVIEW_BYTES,
  TAP_SKIPPED_REPORT_MS,
  TAP_WANTED_MS,
  Tap,
  TapDemand,
  tappedMessage,
  utf8Prefix,
  type TapFacts,
} from "../src/core/tap.js";

const facts = (i: number, payload: TapFacts["payload"] = { case: "json", value: fromJson(ValueSchema, i) }) => ({
  channel: "room",
  userId: "",
  event: "e",
  id: `x.${i}`,
  payload,
  origin: "",
});

describe("Tap", () => {
  let published: Publication[];
  let counts: Record<string, number>;
  let tap: Tap;
  beforeEach(() => {
    vi.useFakeTimers();
    published = [];
    counts = { copied: 0, skipped: 0 };
    tap = new Tap({
      broker: { publish: async (p) => (published.push(p), unpositioned(0)) },
      observer: { ...NOOP_OBSERVER, tapped: (outcome, n) => (counts[outcome] += n) },
    });
  });
  afterEach(() => {
    tap.close();
    vi.useRealTimers();
  });
  const responses = () => published.map((p) => fromBinary(WatchMessagesResponseSchema, p.event));

  it("copies nothing until wanted, then until the wanted time ran out", () => {
    tap.copy(facts(1));
    expect(tap.wanted).toBe(false);
    tap.want(TAP_WANTED_MS);
    tap.copy(facts(2));
    vi.advanceTimersByTime(TAP_WANTED_MS);
    expect(tap.wanted).toBe(false);
    tap.copy(facts(3));
    expect(published.map((p) => p.channel)).toEqual([TAP_CHANNEL]);
    expect(responses()[0]!.message).toMatchObject({ id: "x.2", channel: "room", source: MessageSource.BACKEND });
    expect(counts).toEqual({ copied: 1, skipped: 0 });
  });

  it(`copies a burst of ${TAP_BURST}, then ${TAP_COPIES_PER_SECOND} a second; the rest is reported as skipped once a period`, () => {
    tap.want(10 * TAP_WANTED_MS);
    for (let i = 0; i < 3 * TAP_BURST; i++) tap.copy(facts(i));
    expect(counts).toEqual({ copied: TAP_BURST, skipped: 2 * TAP_BURST });
    expect(published).toHaveLength(TAP_BURST);
    vi.advanceTimersByTime(TAP_SKIPPED_REPORT_MS);
    const report = responses().at(-1)!;
    expect(report.message).toBeUndefined();
    expect(report.skipped).toBe(BigInt(2 * TAP_BURST));
    // A second later the bucket holds a second's worth again; nothing more to report.
    for (let i = 0; i < TAP_COPIES_PER_SECOND; i++) tap.copy(facts(i));
    vi.advanceTimersByTime(TAP_SKIPPED_REPORT_MS);
    expect(counts).toEqual({ copied: TAP_BURST + TAP_COPIES_PER_SECOND, skipped: 2 * TAP_BURST });
    expect(responses().filter((r) => !r.message)).toHaveLength(1);
  });

  it("a longer announcement extends the wanted time; a shorter one never shortens it", () => {
    tap.want(TAP_WANTED_MS);
    tap.want(1);
    vi.advanceTimersByTime(TAP_WANTED_MS - 1);
    expect(tap.wanted).toBe(true);
  });
});

describe("tappedMessage", () => {
  it("cuts a JSON payload to TAP_PREVIEW_BYTES on a character boundary, with its whole size", () => {
    const text = "é".repeat(TAP_PREVIEW_BYTES); // 2 bytes each
    const m = tappedMessage(facts(0, { case: "json", value: fromJson(ValueSchema, text) }));
    const json = JSON.stringify(text);
    expect(m.size).toBe(Buffer.byteLength(json));
    expect(m.truncated).toBe(true);
    expect(m.preview.case).toBe("json");
    const preview = m.preview.value as string;
    expect(Buffer.byteLength(preview)).toBeLessThanOrEqual(TAP_PREVIEW_BYTES);
    expect(json.startsWith(preview)).toBe(true);
    expect(Buffer.byteLength(preview)).toBeGreaterThan(TAP_PREVIEW_BYTES - 2);
  });

  it("keeps a small payload whole, and names a client's connection", () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const m = tappedMessage({ ...facts(0, { case: "binary", value: bytes }), origin: "edge.1" });
    expect(m).toMatchObject({ size: 3, truncated: false, source: MessageSource.CLIENT, origin: "edge.1" });
    expect(m.preview).toEqual({ case: "binary", value: bytes });
  });

  it("utf8Prefix never splits a character", () => {
    const bytes = Buffer.from("a€b"); // 1 + 3 + 1 bytes
    expect([1, 2, 3, 4, 5].map((n) => utf8Prefix(bytes, n))).toEqual(["a", "a", "a", "a€", "a€b"]);
  });
});

describe("TapDemand", () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("announces at once and every TAP_ANNOUNCE_MS while a watcher is open, and stops after the last", () => {
    const said: number[] = [];
    const demand = new TapDemand((ms) => said.push(ms));
    const one = demand.open();
    const two = demand.open();
    expect(said).toEqual([TAP_WANTED_MS]);
    vi.advanceTimersByTime(2 * TAP_ANNOUNCE_MS);
    expect(said).toHaveLength(3);
    one();
    one();
    vi.advanceTimersByTime(TAP_ANNOUNCE_MS);
    expect(said).toHaveLength(4);
    two();
    vi.advanceTimersByTime(10 * TAP_ANNOUNCE_MS);
    expect(said).toHaveLength(4);
    demand.close();
  });
});
