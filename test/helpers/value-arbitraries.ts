/**
 * fast-check arbitraries of google.protobuf.Value trees and their parts, for
 * the property tests of the hand-written codecs (event-codec, request-codec).
 */
import { create, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { ListValueSchema, StructSchema, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";

/** Any UTF-16 code unit: lone surrogates and control characters included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));

export const text = fc.oneof(
  fc.constant(""),
  fc.string(),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: codeUnit, maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 50, maxLength: 300 }), // two-byte lengths
  fc.constantFrom("\uFEFF", "\uFEFFbom", "bom\uFEFF", "\u00e9", "abcdefghijkl", "abcdefghijklm"), // a BOM (UTF-8 decoders drop a leading one); 12 and 13 ASCII bytes
);

/** Object keys, with the integer-like ones that objects order first. */
export const key = fc.oneof(
  text,
  fc.nat().map(String),
  fc.constantFrom(
    "0",
    "1",
    "-0",
    "-1",
    "01",
    "1.5",
    "4294967294",
    "4294967295",
    "9007199254740993",
    "constructor",
    "toJSON",
    "hasOwnProperty",
    "__proto__",
  ),
);

/** Numbers JSON can carry. */
export const finiteNumber = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(
    0,
    -0,
    1e21,
    1e-7,
    5e-324,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.MAX_SAFE_INTEGER + 2,
    0.1 + 0.2,
  ),
);

/** Any double: NaN and ±Infinity too. */
export const anyNumber = fc.oneof(finiteNumber, fc.double(), fc.constantFrom(NaN, Infinity, -Infinity));

/** An unknown varint field numbered past the known ones. */
export const unknownVarint = fc.record({
  no: fc.integer({ min: 7, max: 5000 }),
  wireType: fc.constant(WireType.Varint),
  data: fc.integer({ min: 0, max: 127 }).map((n) => Uint8Array.of(n)),
});

/** Sometimes (1 in freq) one or two unknown fields from `field`. */
export function someUnknown(field: fc.Arbitrary<UnknownField>, freq: number): fc.Arbitrary<UnknownField[] | undefined> {
  return fc.option(fc.array(field, { minLength: 1, maxLength: 2 }), { nil: undefined, freq });
}

export function withUnknown<T extends { $unknown?: UnknownField[] }>(
  message: T,
  unknown: UnknownField[] | undefined,
): T {
  if (unknown !== undefined) message.$unknown = unknown;
  return message;
}

export interface ValueOptions {
  number: fc.Arbitrary<number>;
  nullValue: fc.Arbitrary<number>;
  /** Include Values with no kind set. */
  noKind: boolean;
  /** Unknown fields on Values, Structs and ListValues. */
  unknown: fc.Arbitrary<UnknownField[] | undefined>;
}

/** Arbitrary google.protobuf.Value trees (nested structs and lists, 6 entries at most each). */
export function values(o: ValueOptions): fc.Arbitrary<Value> {
  return fc.letrec<{ value: Value }>((tie) => ({
    value: fc
      .tuple(
        fc.oneof(
          { depthSize: "small", withCrossShrink: true },
          o.nullValue.map((n) => create(ValueSchema, { kind: { case: "nullValue", value: n } })),
          o.number.map((n) => create(ValueSchema, { kind: { case: "numberValue", value: n } })),
          text.map((s) => create(ValueSchema, { kind: { case: "stringValue", value: s } })),
          fc.boolean().map((b) => create(ValueSchema, { kind: { case: "boolValue", value: b } })),
          ...(o.noKind ? [fc.constant(null).map(() => create(ValueSchema))] : []),
          fc.tuple(fc.dictionary(key, tie("value"), { maxKeys: 6 }), o.unknown).map(([fields, unknown]) =>
            create(ValueSchema, {
              kind: { case: "structValue", value: withUnknown(create(StructSchema, { fields }), unknown) },
            }),
          ),
          fc.tuple(fc.array(tie("value"), { maxLength: 6 }), o.unknown).map(([items, unknown]) =>
            create(ValueSchema, {
              kind: { case: "listValue", value: withUnknown(create(ListValueSchema, { values: items }), unknown) },
            }),
          ),
        ),
        o.unknown,
      )
      .map(([value, unknown]) => withUnknown(value, unknown)),
  })).value;
}
