/**
 * Unsigned protobuf varints of at most 32 bits, for the hand-written
 * encoders (src/core/event-codec.ts, src/link/publication-codec.ts).
 * Callers pass integers in [0, 2^32); nothing else is checked.
 */

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
