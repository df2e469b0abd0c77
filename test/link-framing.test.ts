/**
 * The link's framing: whatever way TCP splits the stream, FrameReader gives
 * back exactly the frames that were written, in order, and refuses a bad
 * length however it is split.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { sizeDelimitedEncode } from "@bufbuild/protobuf/wire";
import { HubFrameSchema } from "../gen/realtime/link/v1/link_pb.js";
import { FrameReader, frameHead, LINK_MAX_FRAME_BYTES } from "../src/wire/link-framing.js";
import { varintSize, writeVarint } from "../src/wire/varint.js";

function encode(frames: Uint8Array[]): Buffer {
  const out = Buffer.alloc(frames.reduce((n, f) => n + varintSize(f.length) + f.length, 0));
  let pos = 0;
  for (const f of frames) {
    pos = writeVarint(out, pos, f.length);
    out.set(f, pos);
    pos += f.length;
  }
  return out;
}

/** Splits bytes at the given cut points (any order, duplicates allowed). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) chunks.push(bytes.subarray(from, p));
    from = p;
  }
  return chunks;
}

const frame = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc.integer({ min: 120, max: 140 }).map((n) => new Uint8Array(n).fill(n)),
  fc.integer({ min: 16_380, max: 16_390 }).map((n) => new Uint8Array(n).map((_, i) => i)),
  fc.integer({ min: 60_000, max: 140_000 }).map((n) => new Uint8Array(n).map((_, i) => i * 7)),
);

describe("FrameReader", () => {
  it("returns every frame, in order, however the stream is cut into chunks", () => {
    fc.assert(
      fc.property(fc.array(frame, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (frames, cuts) => {
        const got: Buffer[] = [];
        const reader = new FrameReader((f) => got.push(Buffer.from(f)));
        for (const chunk of split(encode(frames), cuts)) reader.push(chunk);
        expect(got.length).toBe(frames.length);
        got.forEach((g, i) => expect(g.equals(Buffer.from(frames[i]!))).toBe(true));
      }),
      { numRuns: 300 },
    );
  });

  it("delivers a frame split into one-byte chunks only once its last byte arrives", () => {
    const frames = [new Uint8Array(300).fill(1), new Uint8Array(0), new Uint8Array([9])];
    const bytes = encode(frames);
    const got: number[] = [];
    const reader = new FrameReader((f) => got.push(f.length));
    for (let i = 0; i < bytes.length; i++) {
      reader.push(bytes.subarray(i, i + 1));
      // The 300-byte frame takes bytes 0..301 (2-byte varint).
      if (i < 301) expect(got).toEqual([]);
    }
    expect(got).toEqual([300, 0, 1]);
  });

  it("throws for a length over LINK_MAX_FRAME_BYTES, and for a varint longer than 5 bytes, even split", () => {
    const tooLong = Buffer.alloc(varintSize(LINK_MAX_FRAME_BYTES + 1));
    writeVarint(tooLong, 0, LINK_MAX_FRAME_BYTES + 1);
    const r1 = new FrameReader(() => {});
    r1.push(tooLong.subarray(0, 2));
    expect(() => r1.push(tooLong.subarray(2))).toThrow(/exceeds/);

    const r2 = new FrameReader(() => {});
    r2.push(Buffer.from([0x80, 0x80, 0x80]));
    expect(() => r2.push(Buffer.from([0x80, 0x80, 0x01]))).toThrow(/not a valid varint/);
  });

  it("frames a message as protobuf-es's size-delimited encoding does", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string(), (nonce, channel) => {
        for (const frame of [
          create(HubFrameSchema, { frame: { case: "challenge", value: { nonce } } }),
          create(HubFrameSchema, { frame: { case: "publication", value: { channel, event: nonce } } }),
        ]) {
          const bytes = toBinary(HubFrameSchema, frame);
          const framed = Buffer.concat([frameHead(bytes.length), bytes]);
          expect(framed.equals(sizeDelimitedEncode(HubFrameSchema, frame))).toBe(true);
        }
      }),
    );
  });

  it("throws for a five-byte length of 2^32 or more, rather than reading it modulo 2^32", () => {
    // 2^32 + 3 would read as a frame of 3 bytes if truncated.
    const r = new FrameReader(() => {});
    expect(() => r.push(Buffer.from([0x83, 0x80, 0x80, 0x80, 0x10, 1, 2, 3]))).toThrow(/not a valid varint/);
  });
});
