/**
 * The edge's write path (src/edge/ws-frames.ts) on an in-memory socket: a
 * FrameWriter with a delay holds a connection's writes until it ends; an
 * EventBatch packs the event frames of the delay into events frames within
 * MAX_EVENTS_FRAME_EVENTS and its byte bound, sends a lone event as an event
 * frame, flushes before another frame, counts what it holds, and drops what
 * it holds once the connection is no longer open.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EventSchema, ServerFrameSchema, type ServerFrame } from "../gen/realtime/client/v1/client_pb.js";
import { MAX_EVENTS_FRAME_EVENTS } from "../src/core/limits.js";
import { EventBatch, FrameWriter } from "../src/edge/ws-frames.js";
import { createPublication } from "../src/core/publication.js";
import { binaryEventFrame, serverFrame } from "../src/wire/client-codec.js";
import { Encoding } from "../src/protocol/encodings.js";

const DELAY_MS = 20;

/** An in-memory socket and the WebSocket frames written to it, decoded. */
function socket() {
  const s = new PassThrough();
  let bytes = Buffer.alloc(0);
  s.on("data", (d: Buffer) => (bytes = Buffer.concat([bytes, d])));
  const frames = (): ServerFrame[] => {
    const out: ServerFrame[] = [];
    for (let b = bytes; b.length > 0;) {
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) [len, off] = [b.readUInt16BE(2), 4];
      else if (len === 127) [len, off] = [Number(b.readBigUInt64BE(2)), 10];
      out.push(fromBinary(ServerFrameSchema, b.subarray(off, off + len)));
      b = b.subarray(off + len);
    }
    return out;
  };
  return { s, frames };
}

/** The event frame (binary) of an event named n carrying size bytes. */
function eventFrame(n: number, size = 1): Uint8Array {
  const event = create(EventSchema, {
    channel: "c",
    event: `e${n}`,
    id: `i${n}`,
    payload: { case: "binary", value: new Uint8Array(size) },
  });
  return binaryEventFrame(createPublication(event, Infinity));
}

const names = (frames: ServerFrame[]) =>
  frames.map((f) =>
    f.frame.case === "event"
      ? f.frame.value.event
      : f.frame.case === "events"
        ? f.frame.value.events.map((e) => e.event)
        : f.frame.case,
  );

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("EventBatch", () => {
  it("holds the events of the delay and sends them as one events frame when it ends; a lone one as an event frame", async () => {
    const writer = new FrameWriter(DELAY_MS);
    const { s, frames } = socket();
    const batch = new EventBatch(writer, s, () => true, 64 * 1024);
    for (let n = 0; n < 3; n++) batch.add(eventFrame(n), false);
    expect(batch.bytes).toBeGreaterThan(0);
    await vi.advanceTimersByTimeAsync(DELAY_MS / 2);
    expect(frames()).toEqual([]);
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    expect(names(frames())).toEqual([["e0", "e1", "e2"]]);
    expect(batch.bytes).toBe(0);
    batch.add(eventFrame(3), false);
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    expect(names(frames())).toEqual([["e0", "e1", "e2"], "e3"]);
  });

  it("sends what it holds before another frame of the connection", async () => {
    const writer = new FrameWriter(DELAY_MS);
    const { s, frames } = socket();
    const batch = new EventBatch(writer, s, () => true, 64 * 1024);
    batch.add(eventFrame(0), false);
    batch.add(eventFrame(1), false);
    batch.flush(); // what the transport does before a reply
    writer.write(s, serverFrame({ frame: { case: "reply", value: { id: 1 } } }, Encoding.Proto), false);
    batch.add(eventFrame(2), false);
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    expect(names(frames())).toEqual([["e0", "e1"], "reply", "e2"]);
  });

  it(`lists at most ${MAX_EVENTS_FRAME_EVENTS} events`, async () => {
    const writer = new FrameWriter(DELAY_MS);
    const { s, frames } = socket();
    const batch = new EventBatch(writer, s, () => true, 64 * 1024);
    for (let n = 0; n < MAX_EVENTS_FRAME_EVENTS + 1; n++) batch.add(eventFrame(n), false);
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    const counted = frames().map((f) => (f.frame.case === "events" ? f.frame.value.events.length : 1));
    expect(counted.reduce((a, b) => a + b)).toBe(MAX_EVENTS_FRAME_EVENTS + 1);
    expect(counted).toEqual([MAX_EVENTS_FRAME_EVENTS, 1]);
  });

  it("keeps each frame within its byte bound, and sends an event too large for one by itself", async () => {
    const writer = new FrameWriter(DELAY_MS);
    const { s, frames } = socket();
    const batch = new EventBatch(writer, s, () => true, 1_000);
    batch.add(eventFrame(0, 400), false);
    batch.add(eventFrame(1, 400), false);
    batch.add(eventFrame(2, 400), false); // would pass 1,000 bytes: starts the next frame
    batch.add(eventFrame(3, 2_000), false); // alone, as an event frame
    batch.add(eventFrame(4, 10), false);
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    expect(names(frames())).toEqual([["e0", "e1"], "e2", "e3", "e4"]);
  });

  it("drops what it holds when the connection is no longer open", async () => {
    const writer = new FrameWriter(DELAY_MS);
    const { s, frames } = socket();
    let open = true;
    const batch = new EventBatch(writer, s, () => open, 64 * 1024);
    batch.add(eventFrame(0), false);
    batch.add(eventFrame(1), false);
    open = false;
    await vi.advanceTimersByTimeAsync(DELAY_MS);
    expect(frames()).toEqual([]);
    expect(batch.bytes).toBe(0);
  });
});
