/**
 * Checks that a hand-written decoder returns what protobuf-es's fromBinary
 * returns, and throws where it throws, and whether it fell back to
 * fromBinary; and mutations of encodings to feed it (request-codec,
 * publication-codec). The test file must mock fromBinary with a spy:
 *
 *   vi.mock("@bufbuild/protobuf", async (importOriginal) => {
 *     const actual = await importOriginal<typeof import("@bufbuild/protobuf")>();
 *     return { ...actual, fromBinary: vi.fn(actual.fromBinary) };
 *   });
 */
import { equals, fromBinary, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { expect, it, vi } from "vitest";

/** One decoder under test: what it decodes, and how. */
export interface DecoderCase {
  name: string;
  schema: DescMessage;
  decode: (bytes: Uint8Array) => Message;
}

const fromBinaryCalls = () => vi.mocked(fromBinary).mock.calls.length;

export const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");

/**
 * Everything observable about a decoded message, stricter than `equals`:
 * property order, -0, NaN, the class of bytes, prototypes.
 */
export function snapshot(x: unknown): unknown {
  if (typeof x === "number") return Object.is(x, -0) ? "-0" : String(x);
  if (x instanceof Uint8Array) return `${x.constructor.name}:${hex(x)}`;
  if (Array.isArray(x)) return x.map(snapshot);
  if (x !== null && typeof x === "object") {
    const proto: unknown = Object.getPrototypeOf(x);
    const record = x as Record<string, unknown>;
    return {
      proto: proto === Object.prototype ? "Object" : proto === null ? "null" : snapshot(proto),
      entries: Object.keys(record).map((k) => [k, snapshot(record[k])]),
    };
  }
  return x === undefined ? "undefined" : x;
}

type Outcome = { ok: true; value: Message } | { ok: false; error: Error };

function outcome(run: () => Message): Outcome {
  try {
    return { ok: true, value: run() };
  } catch (err) {
    return { ok: false, error: err as Error };
  }
}

/**
 * The decoder agrees with fromBinary on bytes: both throw the same error,
 * or both return the same message. Returns whether the decoder fell back.
 */
export function expectAgreement(c: DecoderCase, bytes: Uint8Array): boolean {
  const expected = outcome(() => fromBinary(c.schema, bytes));
  const before = fromBinaryCalls();
  const actual = outcome(() => c.decode(bytes));
  const fellBack = fromBinaryCalls() > before;
  if (expected.ok) {
    if (!actual.ok) throw new Error(`${c.name} ${hex(bytes)}: fromBinary decodes, the decoder throws ${actual.error}`);
    // equals() is false for a NaN against any NaN: ask it of two fromBinary results too.
    const reference = equals(c.schema, fromBinary(c.schema, bytes), expected.value);
    expect(equals(c.schema, actual.value, expected.value), `${c.name} ${hex(bytes)}`).toBe(reference);
    expect(snapshot(actual.value), `${c.name} ${hex(bytes)}`).toEqual(snapshot(expected.value));
  } else {
    expect(actual.ok, `${c.name} ${hex(bytes)}: fromBinary throws ${expected.error}`).toBe(false);
    expect((actual as { error: Error }).error.message).toBe(expected.error.message);
  }
  return fellBack;
}

/** Decodes bytes and expects no fallback, and what fromBinary gives. */
export function expectDecodedByHand(c: DecoderCase, bytes: Uint8Array): void {
  expect(expectAgreement(c, bytes), `${c.name} ${hex(bytes)} fell back to fromBinary`).toBe(false);
}

export function expectFallback(c: DecoderCase, bytes: Uint8Array): void {
  expect(expectAgreement(c, bytes), `${c.name} ${hex(bytes)} was decoded by hand`).toBe(true);
}

export const mutation = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("repeat" as const) }), // the encoding twice: every field repeated
  fc.record({ op: fc.constant("repeatPrefix" as const), at: fc.nat() }),
  fc.record({
    op: fc.constant("unknown" as const),
    no: fc.integer({ min: 1, max: 20 }),
    wireType: fc.constantFrom(
      WireType.Varint,
      WireType.Bit64,
      WireType.LengthDelimited,
      WireType.Bit32,
      WireType.StartGroup,
    ),
    data: fc.uint8Array({ maxLength: 8 }),
  }),
);

export function mutate(bytes: Uint8Array, m: typeof mutation extends fc.Arbitrary<infer M> ? M : never): Uint8Array {
  const b = Buffer.from(bytes);
  const at = "at" in m ? m.at % (b.length + 1) : 0;
  switch (m.op) {
    case "flip":
      if (b.length > 0) b[at % b.length]! ^= m.mask;
      return b;
    case "insert":
      return Buffer.concat([b.subarray(0, at), m.data, b.subarray(at)]);
    case "delete":
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
    case "truncate":
      return b.subarray(0, at);
    case "repeat":
      return Buffer.concat([b, b]);
    case "repeatPrefix":
      return Buffer.concat([b, b.subarray(0, at)]);
    case "unknown": {
      const w = new BinaryWriter().tag(m.no, m.wireType);
      if (m.wireType === WireType.Varint) w.uint32(m.data.length > 0 ? m.data[0]! : 0);
      else if (m.wireType === WireType.Bit64) w.raw(Uint8Array.from({ length: 8 }, (_, i) => m.data[i] ?? 0));
      else if (m.wireType === WireType.Bit32) w.raw(Uint8Array.from({ length: 4 }, (_, i) => m.data[i] ?? 0));
      else if (m.wireType === WireType.LengthDelimited) w.bytes(m.data);
      else w.tag(m.no, WireType.EndGroup);
      return Buffer.concat([b, w.finish()]);
    }
  }
}

/** A plain Uint8Array copy, as the gRPC adapter passes requests. */
export const plain = (bytes: Uint8Array) => new Uint8Array(bytes);

/**
 * Declares the properties every hand decoder shares, one `it` each: it
 * agrees with fromBinary on mutated encodings of messages, on two encodings
 * one after the other (which protobuf merges), and on arbitrary bytes.
 */
export function itAgreesOnAnyBytes(
  c: DecoderCase,
  messages: fc.Arbitrary<Message>,
  runs: { mutated: number; concatenated: number; arbitrary: number },
): void {
  it("agrees with fromBinary on mutated encodings: both throw alike or both decode alike", () => {
    fc.assert(
      fc.property(messages, fc.array(mutation, { minLength: 1, maxLength: 3 }), (message, mutations) => {
        let bytes: Uint8Array = toBinary(c.schema, message);
        for (const m of mutations) bytes = mutate(bytes, m);
        expectAgreement(c, plain(bytes));
      }),
      { numRuns: runs.mutated },
    );
  });

  it("agrees with fromBinary on two encodings one after the other, which protobuf merges", () => {
    fc.assert(
      fc.property(messages, messages, (a, b) => {
        expectAgreement(c, plain(Buffer.concat([toBinary(c.schema, a), toBinary(c.schema, b)])));
      }),
      { numRuns: runs.concatenated },
    );
  });

  it("agrees with fromBinary on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        expectAgreement(c, bytes);
      }),
      { numRuns: runs.arbitrary },
    );
  });
}
