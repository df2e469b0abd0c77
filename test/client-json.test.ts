/**
 * src/wire/client-json.ts against protobuf-es, with fast-check: its table
 * of the client protocol is gen/'s descriptors, field by field (a field
 * added to proto/ fails here until the table has it); on messages generated
 * from those descriptors (every case of every oneof), it writes what
 * toJsonString writes, byte for byte, and reads what fromJsonString reads,
 * value for value; on mutated and arbitrary text it throws exactly where
 * protobuf-es throws, and otherwise agrees with it.
 */
import {
  create,
  fromJson,
  fromJsonString,
  toJson,
  toJsonString,
  type DescField,
  type DescMessage,
  type JsonValue,
} from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  file_realtime_client_v1_client,
} from "../gen/realtime/client/v1/client_pb.js";
import {
  ENUMS,
  JSON_RECURSION_LIMIT,
  MESSAGES,
  base64Decode,
  base64Encode,
  decodeClientFrameJson,
  decodeServerFrameJson,
  encodeClientFrameJson,
  encodeServerFrameJson,
  valueFromJson,
  valueToJson,
  type JsonField,
} from "../src/wire/client-json.js";

const RUNS = { numRuns: 300 };

/** The frames, each with the hand codec's two functions. */
const FRAMES = [
  { schema: ClientFrameSchema, encode: encodeClientFrameJson, decode: decodeClientFrameJson },
  { schema: ServerFrameSchema, encode: encodeServerFrameJson, decode: decodeServerFrameJson },
] as const;

/** What a field is, in the table's words, from its descriptor. */
function describeField(f: DescField): JsonField {
  const base = {
    number: f.number,
    name: f.name,
    jsonName: f.jsonName,
    repeated: f.fieldKind === "list",
    optional: f.fieldKind === "scalar" && f.proto.proto3Optional === true,
    oneof: f.oneof?.localName,
  };
  const message = f.fieldKind === "message" || f.fieldKind === "list" ? f.message : undefined;
  if (message?.typeName === "google.protobuf.Value") return { ...base, kind: "value", type: undefined };
  if (message !== undefined) return { ...base, kind: "message", type: message.name };
  if (f.fieldKind === "enum") return { ...base, kind: "enum", type: f.enum.name };
  if (f.fieldKind !== "scalar") throw new Error(`${f} is a ${f.fieldKind}: the table has no such kind`);
  const scalar = { 9: "string", 8: "bool", 13: "uint32", 4: "uint64", 12: "bytes" }[f.scalar as number];
  if (scalar === undefined) throw new Error(`${f}: the table has no scalar type ${f.scalar}`);
  return { ...base, kind: scalar as JsonField["kind"], type: undefined };
}

describe("the table of src/wire/client-json.ts", () => {
  it("is client.proto: every message, every field (number, names, kind, oneof, presence) in order, every enum", () => {
    const file = file_realtime_client_v1_client;
    expect(Object.keys(MESSAGES)).toEqual(file.messages.map((m) => m.name));
    for (const m of file.messages) {
      const entry = MESSAGES[m.name]!;
      expect(entry.typeName).toBe(m.typeName);
      expect(entry.fields).toEqual(m.fields.map(describeField));
      // The message object's properties are the JSON names (protobuf-es's local names).
      for (const f of m.fields) expect(f.localName).toBe(f.jsonName);
      for (const o of m.oneofs) expect(o.localName).toBe(o.name);
    }
    expect(Object.keys(ENUMS)).toEqual(file.enums.map((e) => e.name));
    for (const e of file.enums) expect(ENUMS[e.name]).toEqual(e.values.map((v) => [v.number, v.name]));
  });
});

// ------------------------------------------------ messages from descriptors

const uint8 = fc.uint8Array({ maxLength: 12 });
const text = fc.oneof(fc.constant(""), fc.string({ unit: "binary", maxLength: 12 }));
const json = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<JsonValue>;

function scalarArb(f: DescField & { fieldKind: "scalar" | "list" }): fc.Arbitrary<unknown> {
  switch (f.scalar) {
    case 9:
      return text;
    case 8:
      return fc.boolean();
    case 13:
      return fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff }));
    case 4:
      return fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    case 12:
      return uint8;
  }
  throw new Error(`no arbitrary for ${f}`);
}

/** One value of a field (an item, for a list); a message field's is an init. */
function singularArb(f: DescField): fc.Arbitrary<unknown> {
  const message = f.fieldKind === "message" || f.fieldKind === "list" ? f.message : undefined;
  if (message?.typeName === "google.protobuf.Value") return json.map((j) => fromJson(ValueSchema, j));
  if (message !== undefined) return initArb(message);
  if (f.fieldKind === "enum") return fc.constantFrom(...f.enum.values.map((v) => v.number), 99);
  return scalarArb(f as DescField & { fieldKind: "scalar" });
}

/** An init of desc with any of its fields set (every case of every oneof, or none), from the descriptor. */
function initArb(desc: DescMessage): fc.Arbitrary<Record<string, unknown>> {
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) {
    if (f.oneof !== undefined) continue;
    if (f.fieldKind === "list") parts[f.localName] = fc.array(singularArb(f), { maxLength: 3 });
    else parts[f.localName] = fc.option(singularArb(f), { nil: undefined });
  }
  for (const o of desc.oneofs) {
    parts[o.localName] = fc.oneof(
      fc.constant({ case: undefined }),
      ...o.fields.map((f) => singularArb(f).map((value) => ({ case: f.localName, value }))),
    );
  }
  return fc.record(parts);
}

const frames = FRAMES.map((frame) => ({
  ...frame,
  init: initArb(frame.schema),
}));

/** Values and their property order, bigints and bytes made visible. */
function shape(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `bytes:${Array.from(v).join(",")}` : v,
  );
}

/** Decodes text with both; expects both to throw, or the same message (values, $typeName, order). */
function agree(schema: DescMessage, decode: (text: string) => unknown, text: string): void {
  let want: unknown;
  let wantErr: unknown;
  try {
    want = fromJsonString(schema, text, { ignoreUnknownFields: true });
  } catch (err) {
    wantErr = err;
  }
  if (wantErr !== undefined) {
    expect(() => decode(text), `protobuf-es refuses ${text}: ${String(wantErr)}`).toThrow(/cannot decode/);
    return;
  }
  let got: unknown;
  try {
    got = decode(text);
  } catch (err) {
    throw new Error(`protobuf-es decodes ${text}, the hand codec throws ${String(err)}`);
  }
  expect(got).toStrictEqual(want);
  expect(shape(got)).toBe(shape(want));
}

describe.each(frames)("$schema.typeName in JSON", ({ schema, encode, decode, init }) => {
  it("encodes as toJsonString, byte for byte, from a message or from an init", () => {
    fc.assert(
      fc.property(init, (i) => {
        const want = toJsonString(schema, create(schema, i));
        expect(encode(create(schema, i) as never)).toBe(want);
        expect(encode(i as never)).toBe(want);
      }),
      RUNS,
    );
  });

  it("decodes what toJsonString writes as fromJsonString does", () => {
    fc.assert(
      fc.property(init, (i) => agree(schema, decode, toJsonString(schema, create(schema, i)))),
      RUNS,
    );
  });

  it("decodes what its own encoder writes as fromJsonString does", () => {
    fc.assert(
      fc.property(init, (i) => agree(schema, decode, encode(i as never))),
      RUNS,
    );
  });

  it("agrees with fromJsonString on mutated frames: other spellings, nulls, wrong types, unknown keys, duplicates", () => {
    fc.assert(
      fc.property(init, fc.array(mutation, { minLength: 1, maxLength: 4 }), (i, ms) => {
        const tree = toJson(schema, create(schema, i));
        let out = tree;
        for (const m of ms.filter((m) => m.op !== "duplicate")) out = mutate(out, m);
        let text = JSON.stringify(out);
        for (const m of ms.filter((m) => m.op === "duplicate")) text = duplicateKey(text, m.at);
        agree(schema, decode, text);
      }),
      { numRuns: 1000 },
    );
  });

  it("agrees with fromJsonString on arbitrary JSON and arbitrary text", () => {
    fc.assert(
      fc.property(fc.oneof(fc.json({ maxDepth: 4 }), fc.string({ maxLength: 40 })), (t) => agree(schema, decode, t)),
      RUNS,
    );
  });
});

// ------------------------------------------------------------ mutations

const OPS = [
  "null",
  "junk",
  "protoName",
  "unknownKey",
  "toString",
  "toNumber",
  "spaces",
  "base64url",
  "enumNumber",
  "unknownEnum",
  "delete",
  "wrapInArray",
  "fraction",
  "exponent",
  "hex",
  "negative",
  "huge",
  "loneSurrogate",
  "duplicate",
] as const;
const mutation = fc.record({ op: fc.constantFrom(...OPS), at: fc.nat(), junk: json });
type Mutation = { op: (typeof OPS)[number]; at: number; junk: JsonValue };

/** Every (object, key) of a JSON tree, depth first. */
function slots(
  tree: JsonValue,
  out: [Record<string, JsonValue>, string][] = [],
): [Record<string, JsonValue>, string][] {
  if (tree !== null && typeof tree === "object") {
    if (Array.isArray(tree)) for (const item of tree) slots(item, out);
    else
      for (const [k, v] of Object.entries(tree)) {
        out.push([tree, k]);
        slots(v, out);
      }
  }
  return out;
}

/** tree with one mutation applied at one of its keys (or, for an empty object, a key added). */
function mutate(tree: JsonValue, m: Mutation): JsonValue {
  const copy = structuredClone(tree);
  const all = slots(copy);
  if (all.length === 0) {
    if (copy !== null && typeof copy === "object" && !Array.isArray(copy)) copy.zz = m.junk;
    return copy;
  }
  const [obj, key] = all[m.at % all.length]!;
  const v = obj[key]!;
  const set = (value: JsonValue, name = key) => {
    delete obj[key];
    obj[name] = value;
  };
  switch (m.op) {
    case "null":
      return ((obj[key] = null), copy);
    case "junk":
      return ((obj[key] = m.junk), copy);
    case "protoName":
      return (
        set(
          v,
          key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
        ),
        copy
      );
    case "unknownKey":
      return ((obj[`x_${key}`] = m.junk), copy);
    case "toString":
      return ((obj[key] = typeof v === "number" ? String(v) : JSON.stringify(v)), copy);
    case "toNumber":
      return ((obj[key] = typeof v === "string" && Number.isFinite(Number(v)) ? Number(v) : 7), copy);
    case "spaces":
      return ((obj[key] = ` ${typeof v === "string" ? v : JSON.stringify(v)}\n`), copy);
    case "base64url":
      return (
        (obj[key] = typeof v === "string" ? v.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : v),
        copy
      );
    case "enumNumber": {
      const n = ENUMS.ErrorCode!.find(([, name]) => name === v)?.[0];
      return ((obj[key] = n ?? 2 ** 31), copy);
    }
    case "unknownEnum":
      return ((obj[key] = "ERROR_CODE_FROM_THE_FUTURE"), copy);
    case "delete":
      return (delete obj[key], copy);
    case "wrapInArray":
      return ((obj[key] = [v]), copy);
    case "fraction":
      return ((obj[key] = typeof v === "number" ? v + 0.5 : 1.5), copy);
    case "exponent":
      return ((obj[key] = typeof v === "string" && /^[0-9]+$/.test(v) ? `${v}e0` : "1e3"), copy);
    case "hex":
      return ((obj[key] = `0x${Number(typeof v === "string" || typeof v === "number" ? v : 10).toString(16)}`), copy);
    case "negative":
      return ((obj[key] = typeof v === "number" ? -v - 1 : `-${typeof v === "string" ? v : 1}`), copy);
    case "huge":
      return ((obj[key] = m.at % 2 ? 2 ** 64 : "18446744073709551616"), copy);
    case "loneSurrogate":
      return ((obj[key] = typeof v === "string" ? `${v}\ud800` : "\udc00"), copy);
    case "duplicate":
      return copy;
  }
}

/** text with the key of one of its objects written twice. */
function duplicateKey(text: string, at: number): string {
  const keys = [...text.matchAll(/([{,])("(?:[^"\\]|\\.)*"):/g)];
  if (keys.length === 0) return text;
  const k = keys[at % keys.length]!;
  return text.slice(0, k.index) + `${k[1]}${k[2]}:null,${k[2]}:` + text.slice(k.index + k[0].length);
}

// ------------------------------------------------------ Value and base64

describe("google.protobuf.Value", () => {
  it("is built from JSON as fromJson(ValueSchema) builds it, and written back as toJson does", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }) as fc.Arbitrary<JsonValue>, (j) => {
        const want = fromJson(ValueSchema, j);
        expect(valueFromJson(j)).toStrictEqual(want);
        expect(shape(valueFromJson(j))).toBe(shape(want));
        expect(valueToJson(want)).toStrictEqual(toJson(ValueSchema, want));
      }),
      RUNS,
    );
  });

  it("refuses what toJson refuses: no kind, NaN, infinities", () => {
    for (const kind of [
      { case: undefined },
      { case: "numberValue", value: NaN },
      { case: "numberValue", value: -Infinity },
    ]) {
      const v = create(ValueSchema, { kind } as never);
      expect(() => toJson(ValueSchema, v)).toThrow();
      expect(() => valueToJson(v)).toThrow(/cannot encode google\.protobuf\.Value to JSON/);
    }
  });

  it("nests as deep as protobuf-es allows (recursionLimit), and not one level more", () => {
    const nested = (n: number): JsonValue => (n === 0 ? 1 : [nested(n - 1)]);
    let limit = 0;
    for (let n = JSON_RECURSION_LIMIT - 5; n <= JSON_RECURSION_LIMIT; n++) {
      const j = nested(n);
      let ok = true;
      try {
        fromJson(ValueSchema, j);
      } catch {
        ok = false;
      }
      if (ok) limit = n;
      if (ok) expect(valueFromJson(j)).toStrictEqual(fromJson(ValueSchema, j));
      else expect(() => valueFromJson(j)).toThrow(/maximum recursion depth/);
      // In a frame too (ServerFrame, Event, Value: the limit counts each message).
      agree(ServerFrameSchema, decodeServerFrameJson, JSON.stringify({ event: { json: j } }));
    }
    expect(limit).toBeGreaterThan(JSON_RECURSION_LIMIT - 5);
  });
});

describe("base64", () => {
  it("writes standard base64 with padding, and reads every spelling protobuf-es reads", () => {
    fc.assert(
      fc.property(uint8, fc.constantFrom("std", "url", "raw", "spaced"), (bytes, how) => {
        const want = Buffer.from(bytes).toString("base64");
        expect(base64Encode(bytes)).toBe(want);
        let s = want;
        if (how === "url") s = Buffer.from(bytes).toString("base64url");
        if (how === "raw") s = want.replace(/=+$/, "");
        if (how === "spaced") s = want.replace(/(.{3})/g, "$1 \n");
        expect(Array.from(base64Decode(s))).toEqual(Array.from(bytes));
      }),
      RUNS,
    );
  });
});

// ------------------------------------------------------ malformed frames

describe("malformed frames: the hand codec throws what protobuf-es throws, naming the field", () => {
  const cases: [string, RegExp][] = [
    ["not json", /cannot decode message realtime\.client\.v1\.ServerFrame from JSON/],
    ["[]", /cannot decode realtime\.client\.v1\.ServerFrame from JSON: expected an object/],
    ['{"connected":"abc"}', /cannot decode realtime\.client\.v1\.Connected from JSON/],
    ['{"reply":{"id":-1}}', /realtime\.client\.v1\.Reply\.id from JSON: expected a uint32: -1 out of range/],
    ['{"reply":{"id":1.5}}', /realtime\.client\.v1\.Reply\.id from JSON: expected a uint32/],
    ['{"reply":{"id":" 1"}}', /realtime\.client\.v1\.Reply\.id from JSON: expected a uint32/],
    ['{"reply":{"id":1,"id":2}}', /duplicate object key "id"/],
    ['{"event":{"json":{"a":1,"\\u0061":2}}}', /duplicate object key "a"/],
    ['{"reply":{"messageId":"a","message_id":"b"}}', /Reply\.message_id from JSON: set multiple times/],
    ['{"connected":{},"reply":{}}', /ServerFrame\.frame from JSON: oneof set multiple times by connected and reply/],
    ['{"event":{"json":1,"binary":"AA=="}}', /oneof set multiple times by json and binary/],
    ['{"event":{"binary":"A"}}', /Event\.binary from JSON: invalid base64 string/],
    ['{"event":{"binary":"AA*A"}}', /Event\.binary from JSON: invalid base64 string/],
    ['{"event":{"offset":"1e3"}}', /Event\.offset from JSON: expected a uint64: 1e3 out of range/],
    ['{"event":{"offset":"18446744073709551616"}}', /Event\.offset from JSON: expected a uint64/],
    ['{"event":{"offset":true}}', /Event\.offset from JSON: expected a uint64/],
    ['{"event":{"channel":"\\ud800"}}', /Event\.channel from JSON: expected a string: invalid UTF8/],
    ['{"event":{"channel":5}}', /Event\.channel from JSON: expected a string/],
    ['{"reply":{"recovered":"true"}}', /Reply\.recovered from JSON: expected a bool/],
    ['{"reply":{"members":[null]}}', /Reply\.members from JSON: list item must not be null/],
    ['{"reply":{"members":{}}}', /Reply\.members from JSON: expected an array/],
    ['{"reply":{"error":{"code":1.5}}}', /Error\.code from JSON: expected an enum/],
    ['{"reply":{"error":{"code":2147483648}}}', /Error\.code from JSON: 2147483648 out of range/],
  ];
  it.each(cases)("%s", (text, error) => {
    expect(() => fromJsonString(ServerFrameSchema, text, { ignoreUnknownFields: true })).toThrow();
    expect(() => decodeServerFrameJson(text)).toThrow(error);
  });

  it("accepts what protobuf-es accepts beyond its own output, the same way", () => {
    for (const text of [
      '{"reply":{"id":"7","message_id":"m","next_page_token":"t","error":{"code":13}}}',
      '{"reply":{"id":"0x10","error":{"code":"ERROR_CODE_FROM_THE_FUTURE"},"position":null,"members":null}}',
      '{"event":{"binary":null,"json":null,"offset":12,"member":null}}',
      '{"event":{"binary":null,"json":{"a":[1]}}}',
      '{"event":{"member":{"id":"m"},"binary":null}}',
      '{"event":{"offset":" 12 ","binary":"-_-_"},"future":{"x":1}}',
      '{"event":{"member":{"id":"a","user_id":"u","data":null}}}',
      '{"presence":{"events":[{"event":"channel:join"},{}]}}',
    ]) {
      agree(ServerFrameSchema, decodeServerFrameJson, text);
    }
  });

  it("refuses to encode what is not a valid frame, naming the field", () => {
    const bad: [unknown, RegExp][] = [
      [{ id: 1.5 }, /ClientFrame\.id to JSON: expected a uint32/],
      [{ id: -1 }, /ClientFrame\.id to JSON: expected a uint32/],
      [{ command: { case: "dance", value: {} } }, /ClientFrame\.command to JSON: no such case "dance"/],
      [{ command: { case: "join" } }, /ClientFrame\.join to JSON: the oneof's case is set without a value/],
      [{ command: { case: "join", value: { channel: 5 } } }, /Join\.channel to JSON: expected a string/],
      [{ command: { case: "join", value: { since: { offset: -1n } } } }, /StreamPosition\.offset to JSON/],
      [{ command: { case: "join", value: { since: { offset: 2n ** 64n } } } }, /StreamPosition\.offset to JSON/],
      [{ command: { case: "send", value: { payload: { case: "binary", value: [1] } } } }, /Send\.binary to JSON/],
      [
        { command: { case: "send", value: { payload: { case: "json", value: { kind: { case: undefined } } } } } },
        /google\.protobuf\.Value to JSON: it has no value/,
      ],
      [
        { command: { case: "updateProfile", value: { data: { kind: { case: "numberValue", value: NaN } } } } },
        /google\.protobuf\.Value to JSON: cannot be NaN/,
      ],
    ];
    for (const [frame, error] of bad) expect(() => encodeClientFrameJson(frame as never), shape(frame)).toThrow(error);
  });
});
