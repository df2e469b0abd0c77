/**
 * The one varint module of the hand codecs writes what protobuf-es's
 * BinaryWriter writes, and reads what its BinaryReader reads, within the
 * bounds it is given; what it refuses (a varint cut short, too long, or of
 * 2^32 or more) it never reads as another value.
 */
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  int32VarintSize,
  MAX_VARINT32_BYTES,
  readVarint32,
  readVarint64,
  VARINT_INCOMPLETE,
  VARINT_INVALID,
  varint64Size,
  varintSize,
  writeInt32Varint,
  writeVarint,
  writeVarint64,
} from "../src/wire/varint.js";

const uint32 = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0x1fffff, 0x200000, 0xfffffff, 0x10000000, 0xffffffff),
);
/** uint64 values, with the edges of the 32-bit, the number (2^49) and the double-exact (2^53) paths. */
const uint64 = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.bigInt({ min: 1_700_000_000_000n, max: 2_000_000_000_000n }), // a wall clock's milliseconds
  fc.constantFrom(
    ...[0n, 1n, 0x7fn, 0x80n, 0xffffffffn, 1n << 32n, (1n << 49n) - 1n, 1n << 49n, (1n << 53n) + 1n, (1n << 64n) - 1n],
  ),
);
const int32 = fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.constantFrom(-1, -(2 ** 31), 2 ** 31 - 1));

/** What writeVarint writes for n, in a buffer of exactly varintSize(n) bytes. */
function written(n: number, write = writeVarint, size = varintSize): Uint8Array {
  const out = new Uint8Array(size(n));
  expect(write(out, 0, n)).toBe(out.length);
  return out;
}

describe("varint", () => {
  it("writes an unsigned varint as BinaryWriter.uint32 does, in varintSize(n) bytes", () => {
    fc.assert(
      fc.property(uint32, (n) => {
        expect(written(n)).toEqual(new BinaryWriter().uint32(n).finish());
      }),
      { numRuns: 1000 },
    );
  });

  it("writes an int32 varint as BinaryWriter.int32 does, a negative one in ten bytes", () => {
    fc.assert(
      fc.property(int32, (n) => {
        expect(written(n, writeInt32Varint, int32VarintSize)).toEqual(new BinaryWriter().int32(n).finish());
      }),
      { numRuns: 1000 },
    );
  });

  it("writes and reads a uint64 varint as BinaryWriter.uint64 and BinaryReader.uint64 do, in varint64Size(n) bytes", () => {
    fc.assert(
      fc.property(uint64, fc.uint8Array({ maxLength: 3 }), (n, after) => {
        const expected = new BinaryWriter().uint64(n).finish();
        const out = new Uint8Array(varint64Size(n));
        expect(writeVarint64(out, 0, n)).toBe(out.length);
        expect(out).toEqual(expected);
        const bytes = Uint8Array.from([...out, ...after]);
        const at = { pos: 0 };
        expect(readVarint64(bytes, at, bytes.length)).toBe(
          BigInt.asUintN(64, BigInt(new BinaryReader(bytes).uint64())),
        );
        expect(at.pos).toBe(out.length);
        // Cut short anywhere inside: refused, the cursor left.
        const cut = { pos: 0 };
        if (out.length > 1) expect(readVarint64(bytes, cut, out.length - 1)).toBe(-1n);
        expect(cut.pos).toBe(0);
      }),
      { numRuns: 1000 },
    );
  });

  it("writes at pos and returns the position after the varint", () => {
    const out = new Uint8Array(8).fill(0xee);
    expect(writeVarint(out, 2, 300)).toBe(4);
    expect([...out]).toEqual([0xee, 0xee, 0xac, 0x02, 0xee, 0xee, 0xee, 0xee]);
  });

  it("reads back what it writes, at a position and within bounds, and moves the cursor past it", () => {
    fc.assert(
      fc.property(uint32, fc.uint8Array({ maxLength: 3 }), fc.uint8Array({ maxLength: 3 }), (n, before, after) => {
        const bytes = Uint8Array.from([...before, ...written(n), ...after]);
        const at = { pos: before.length };
        expect(readVarint32(bytes, at, bytes.length)).toBe(n);
        expect(at.pos).toBe(before.length + varintSize(n));
      }),
      { numRuns: 1000 },
    );
  });

  it("answers VARINT_INCOMPLETE where the bounds end inside the varint, and leaves the cursor", () => {
    fc.assert(
      fc.property(
        uint32.filter((n) => n > 0x7f),
        fc.nat(),
        (n, cut) => {
          const bytes = written(n);
          const end = cut % bytes.length; // 0 .. size - 1: inside it
          const at = { pos: 0 };
          expect(readVarint32(bytes, at, end)).toBe(VARINT_INCOMPLETE);
          expect(at.pos).toBe(0);
        },
      ),
    );
  });

  it("reads any bytes as BinaryReader.uint32 does, or refuses what it would truncate", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 5 }), (bytes, max) => {
        const at = { pos: 0 };
        const got = readVarint32(bytes, at, bytes.length, max);
        const continued = (i: number) => (bytes[i]! & 0x80) !== 0;
        // The bytes of the varint as protobuf reads it: up to the first without the continuation bit.
        let size = 1;
        while (size <= bytes.length && continued(size - 1)) size++;
        if (size > bytes.length && size <= max) {
          expect(got).toBe(VARINT_INCOMPLETE);
        } else if (size > max || (size === MAX_VARINT32_BYTES && bytes[4]! > 0x0f)) {
          expect(got).toBe(VARINT_INVALID);
        } else {
          const reader = new BinaryReader(bytes);
          expect(got).toBe(reader.uint32());
          expect(at.pos).toBe(reader.pos);
        }
        if (got < 0) expect(at.pos).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  it("reads non-minimal encodings as their value, and refuses six bytes, a fifth byte past 32 bits, or more than maxBytes", () => {
    const read = (bytes: number[], max?: number) => readVarint32(Uint8Array.from(bytes), { pos: 0 }, bytes.length, max);
    expect(read([0x80, 0x00])).toBe(0);
    expect(read([0x81, 0x80, 0x80, 0x80, 0x00])).toBe(1);
    expect(read([0xff, 0xff, 0xff, 0xff, 0x0f])).toBe(0xffffffff);
    expect(read([0x80, 0x80, 0x80, 0x80, 0x10])).toBe(VARINT_INVALID); // 2^32: protobuf-es reads 0
    expect(read([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])).toBe(VARINT_INVALID);
    expect(read([0x81, 0x80, 0x80, 0x80, 0x00], 4)).toBe(VARINT_INVALID);
    expect(read([0x81, 0x80, 0x80, 0x00], 4)).toBe(1);
    expect(read([0x81, 0x80, 0x80], 4)).toBe(VARINT_INCOMPLETE);
    expect(read([])).toBe(VARINT_INCOMPLETE);
  });
});
