/**
 * Protobuf varints (https://protobuf.dev/programming-guides/encoding/#varints):
 * the one place where the hand codecs of src/wire/ read and write them
 * (tags, lengths, uint32 and int32 fields, the link's frame lengths).
 *
 * Writing: unsigned varints of integers in [0, 2^32), minimal (as every
 * protobuf encoder writes them), int32 fields, whose negative values
 * are sign-extended to 64 bits (ten bytes), as protobuf-es writes them,
 * and uint64 fields (bigints), minimal too.
 * Callers pass integers in range; nothing else is checked.
 *
 * Reading: unsigned varints of at most 32 bits, within bounds the caller
 * gives; a varint that does not end within them, that is longer than the
 * caller allows, or that holds 2^32 or more is refused, never truncated.
 * Non-minimal encodings (0x80 0x00 for 0) read as their value, as
 * protobuf-es reads them.
 *
 * test/varint.test.ts checks both against protobuf-es's BinaryWriter and
 * BinaryReader.
 */

/** The most bytes a varint of 32 bits takes. */
export const MAX_VARINT32_BYTES = 5;

/** Bytes the varint of n takes. */
export function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n >>>= 7;
    size++;
  }
  return size;
}

/** Writes the varint of n at pos; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, n: number): number {
  while (n > 0x7f) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  return pos;
}

/** Bytes an int32 field's varint of n takes: ten for a negative n. */
export function int32VarintSize(n: number): number {
  return n >= 0 ? varintSize(n) : 10;
}

/**
 * Writes an int32 field's varint of n (in [-2^31, 2^31)) at pos, a negative
 * one sign-extended to ten bytes; returns the position after it.
 */
export function writeInt32Varint(out: Uint8Array, pos: number, n: number): number {
  if (n >= 0) return writeVarint(out, pos, n);
  for (let i = 0; i < 9; i++) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>= 7;
  }
  out[pos++] = 1;
  return pos;
}

/** A read position in a buffer, which readVarint32 moves past what it read. */
export interface Cursor {
  pos: number;
}

/** What readVarint32 returns when the bytes end (at `end`) inside the varint. */
export const VARINT_INCOMPLETE = -1;
/** What readVarint32 returns for a varint longer than allowed, or of 2^32 or more. */
export const VARINT_INVALID = -2;

/**
 * Reads the unsigned varint at `at.pos` of buf, reading no byte at or past
 * end, and of at most maxBytes bytes (MAX_VARINT32_BYTES unless lowered).
 * Returns its value, in [0, 2^32), and moves `at.pos` past it; or returns
 * VARINT_INCOMPLETE (the bytes end inside it: more may come) or
 * VARINT_INVALID (longer than maxBytes, or 2^32 or more), and leaves
 * `at.pos` as it was.
 */
export function readVarint32(buf: Uint8Array, at: Cursor, end: number, maxBytes = MAX_VARINT32_BYTES): number {
  // One byte, the common case (tags, short lengths), is read here; this
  // function stays small enough for the hot decoders to inline it.
  const pos = at.pos;
  if (pos < end) {
    const b = buf[pos];
    if (b < 0x80) {
      at.pos = pos + 1;
      return b;
    }
  }
  return readLongVarint32(buf, at, end, maxBytes);
}

/** readVarint32 where the first byte is not the whole varint. */
function readLongVarint32(buf: Uint8Array, at: Cursor, end: number, maxBytes: number): number {
  let pos = at.pos;
  if (pos >= end) return VARINT_INCOMPLETE;
  let value = buf[pos++] & 0x7f;
  for (let shift = 7; ; shift += 7) {
    if (shift >= maxBytes * 7) return VARINT_INVALID;
    if (pos >= end) return VARINT_INCOMPLETE;
    const b = buf[pos++];
    if (shift === 28) {
      // The fifth byte holds the top four bits, and ends the varint.
      if (b > 0x0f) return VARINT_INVALID;
      at.pos = pos;
      return (value | (b << 28)) >>> 0;
    }
    value |= (b & 0x7f) << shift;
    if (b < 0x80) {
      at.pos = pos;
      return value;
    }
  }
}

/** The largest uint64 (a varint of ten bytes at most). */
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * The uint64 values below this are worked on as numbers, not bigints: a
 * wall clock's milliseconds (41 bits) cost a few multiplications, not a
 * bigint per byte. 2^49, seven varint bytes, exact in a double.
 */
const NUMBER_VARINT64_LIMIT = 2 ** 49;
const NUMBER_VARINT64_LIMIT_N = BigInt(NUMBER_VARINT64_LIMIT);

/** Bytes the varint of a uint64 n takes (n in [0, 2^64)). */
export function varint64Size(n: bigint): number {
  if (n <= 0xffffffffn) return varintSize(Number(n));
  if (n < NUMBER_VARINT64_LIMIT_N) {
    let v = Number(n);
    let size = 1;
    while (v > 0x7f) {
      v = Math.floor(v / 128);
      size++;
    }
    return size;
  }
  let size = 1;
  while (n > 0x7fn) {
    n >>= 7n;
    size++;
  }
  return size;
}

/** Writes the varint of a uint64 n (in [0, 2^64)) at pos; returns the position after it. */
export function writeVarint64(out: Uint8Array, pos: number, n: bigint): number {
  if (n <= 0xffffffffn) return writeVarint(out, pos, Number(n));
  if (n < NUMBER_VARINT64_LIMIT_N) {
    let v = Number(n);
    while (v > 0x7f) {
      out[pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    out[pos++] = v;
    return pos;
  }
  while (n > 0x7fn) {
    out[pos++] = Number(n & 0x7fn) | 0x80;
    n >>= 7n;
  }
  out[pos++] = Number(n);
  return pos;
}

/**
 * Reads the unsigned varint of a uint64 at `at.pos` of buf, reading no byte
 * at or past end. Returns its value and moves `at.pos` past it; or returns
 * -1n (the bytes end inside it, it is longer than ten bytes, or it is 2^64
 * or more: protobuf-es would truncate it) and leaves `at.pos` as it was.
 */
export function readVarint64(buf: Uint8Array, at: Cursor, end: number): bigint {
  const small = readVarint32(buf, at, end);
  if (small >= 0) return BigInt(small);
  let pos = at.pos;
  // Up to seven bytes (below NUMBER_VARINT64_LIMIT) as a number.
  let number = 0;
  for (let scale = 1; scale < NUMBER_VARINT64_LIMIT && pos < end; scale *= 128) {
    const b = buf[pos++];
    number += (b & 0x7f) * scale;
    if (b < 0x80) {
      at.pos = pos;
      return BigInt(number);
    }
  }
  pos = at.pos;
  let value = 0n;
  for (let shift = 0n; shift < 70n; shift += 7n) {
    if (pos >= end) return -1n;
    const b = buf[pos++];
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) {
      if (value > UINT64_MAX) return -1n;
      at.pos = pos;
      return value;
    }
  }
  return -1n;
}
