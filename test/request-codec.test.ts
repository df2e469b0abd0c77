/**
 * The hand-written decoders of the publish requests return what protobuf-es's
 * fromBinary returns, and throw where it throws, for any bytes; and they
 * decode the canonical encodings themselves (no fallback to fromBinary).
 */
import { create, fromBinary, toBinary, type Message, type UnknownField } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ListValueSchema, StructSchema, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import {
  BroadcastRequestSchema,
  PublishRequestSchema,
  SendBatchRequestSchema,
  SendRequestSchema,
  type BroadcastRequest,
  type SendRequest,
} from "../gen/realtime/v1/realtime_pb.js";
import {
  decodeBroadcastRequest,
  decodePublishRequest,
  decodeSendBatchRequest,
  decodeSendRequest,
} from "../src/wire/request-codec.js";
import {
  anyNumber,
  key,
  someUnknown,
  text,
  unknownVarint,
  values as valueTrees,
  withUnknown,
} from "./helpers/value-arbitraries.js";
import {
  expectAgreement,
  expectDecodedByHand,
  expectFallback,
  itAgreesOnAnyBytes,
  plain,
  type DecoderCase,
} from "./helpers/decoder-agreement.js";

// fromBinary as a spy, to see whether the decoders fell back to it (helpers/decoder-agreement.ts).
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof import("@bufbuild/protobuf")>();
  return { ...actual, fromBinary: vi.fn(actual.fromBinary) };
});

const binary = fc.oneof(fc.constant(new Uint8Array()), fc.uint8Array({ maxLength: 300 }));

/** Unknown fields, with the numbers of the known ones too (another wire type: not read as them). */
const unknownFields = (canonical: boolean): fc.Arbitrary<UnknownField[] | undefined> =>
  canonical
    ? fc.constant(undefined)
    : someUnknown(
        fc.oneof(
          unknownVarint,
          fc.record({
            no: fc.integer({ min: 1, max: 6 }),
            wireType: fc.constant(WireType.Bit32),
            data: fc.uint8Array({ minLength: 4, maxLength: 4 }),
          }),
        ),
        6,
      );

/**
 * Arbitrary google.protobuf.Value trees. canonical: what the decoders read
 * themselves (null_value 0, no unknown fields); otherwise also any null_value
 * and unknown fields, which they leave to fromBinary.
 */
function values(canonical: boolean) {
  return valueTrees({
    number: anyNumber,
    nullValue: canonical ? fc.constant(0) : fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
    noKind: true,
    unknown: unknownFields(canonical),
  });
}

function payloads(canonical: boolean) {
  return fc.oneof(
    fc.constant({ case: undefined }),
    values(canonical).map((value) => ({ case: "json" as const, value })),
    binary.map((value) => ({ case: "binary" as const, value })),
  );
}

const sendRequests = (canonical: boolean): fc.Arbitrary<SendRequest> =>
  fc
    .tuple(
      fc.record({ channel: text, event: text, payload: payloads(canonical), idempotencyKey: text }),
      unknownFields(canonical),
    )
    .map(([init, unknown]) => withUnknown(create(SendRequestSchema, init), unknown));

const broadcastRequests = (canonical: boolean): fc.Arbitrary<BroadcastRequest> =>
  fc
    .tuple(fc.record({ event: text, payload: payloads(canonical), idempotencyKey: text }), unknownFields(canonical))
    .map(([init, unknown]) => withUnknown(create(BroadcastRequestSchema, init), unknown));

interface Case extends DecoderCase {
  messages: (canonical: boolean) => fc.Arbitrary<Message>;
}

const cases: Case[] = [
  { name: "SendRequest", schema: SendRequestSchema, decode: decodeSendRequest, messages: sendRequests },
  {
    name: "BroadcastRequest",
    schema: BroadcastRequestSchema,
    decode: decodeBroadcastRequest,
    messages: broadcastRequests,
  },
  {
    name: "PublishRequest",
    schema: PublishRequestSchema,
    decode: decodePublishRequest,
    messages: (canonical) =>
      fc
        .oneof(
          fc.constant({ case: undefined }),
          sendRequests(canonical).map((value) => ({ case: "send" as const, value })),
          broadcastRequests(canonical).map((value) => ({ case: "broadcast" as const, value })),
        )
        .map((event) => create(PublishRequestSchema, { event })),
  },
  {
    name: "SendBatchRequest",
    schema: SendBatchRequestSchema,
    decode: decodeSendBatchRequest,
    messages: (canonical) =>
      fc
        .array(sendRequests(canonical), { maxLength: 4 })
        .map((requests) => create(SendBatchRequestSchema, { requests })),
  },
];

// Hand-written encodings, for shapes protobuf-es never writes.
const LEN = WireType.LengthDelimited;
const valueBytes = (value: Value) => toBinary(ValueSchema, value);
const numberValue = (n: number) => create(ValueSchema, { kind: { case: "numberValue", value: n } });
const stringValue = (s: string) => create(ValueSchema, { kind: { case: "stringValue", value: s } });

/** A Struct Value of these entries, in this order, duplicates included. */
function structValueBytes(entries: [string, Uint8Array][]): Uint8Array {
  const struct = new BinaryWriter();
  for (const [k, v] of entries) struct.tag(1, LEN).fork().tag(1, LEN).string(k).tag(2, LEN).bytes(v).join();
  return new BinaryWriter().tag(5, LEN).bytes(struct.finish()).finish();
}

/** A SendRequest{channel "c", json: value}. */
function sendJson(value: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(1, LEN).string("c").tag(3, LEN).bytes(value).finish();
}

/** A Value of `levels` nested lists around true: 2 messages deeper a level. */
function deepValue(levels: number): Uint8Array {
  let value = valueBytes(create(ValueSchema, { kind: { case: "boolValue", value: true } }));
  for (let i = 0; i < levels; i++) {
    value = new BinaryWriter().tag(6, LEN).bytes(new BinaryWriter().tag(1, LEN).bytes(value).finish()).finish();
  }
  return value;
}

const [sendCase, broadcastCase, publishCase, batchCase] = cases as [Case, Case, Case, Case];

describe("request codec", () => {
  for (const c of cases) {
    describe(c.name, () => {
      it("decodes protobuf-es's encoding of any message by hand, as fromBinary does", () => {
        fc.assert(
          fc.property(c.messages(true), (message) => expectDecodedByHand(c, plain(toBinary(c.schema, message)))),
          { numRuns: 500 },
        );
      });

      it("agrees with fromBinary on messages with unknown fields and any null_value", () => {
        fc.assert(
          fc.property(c.messages(false), (message) => {
            expectAgreement(c, plain(toBinary(c.schema, message)));
          }),
          { numRuns: 300 },
        );
      });

      itAgreesOnAnyBytes(c, c.messages(true), { mutated: 1000, concatenated: 500, arbitrary: 1000 });
    });
  }

  it("decodes the publish benchmark's request by hand, as fromBinary does, with and without a key", () => {
    const json = create(ValueSchema, {
      kind: {
        case: "structValue",
        value: create(StructSchema, {
          fields: { t: numberValue(1_700_000_000_123.5), p: stringValue("x".repeat(64)) },
        }),
      },
    });
    const send = create(SendRequestSchema, {
      channel: "bench-channel-17",
      event: "tick",
      payload: { case: "json", value: json },
    });
    expectDecodedByHand(sendCase, toBinary(SendRequestSchema, send));
    expectDecodedByHand(
      publishCase,
      toBinary(PublishRequestSchema, create(PublishRequestSchema, { event: { case: "send", value: send } })),
    );
    expectDecodedByHand(
      batchCase,
      toBinary(SendBatchRequestSchema, create(SendBatchRequestSchema, { requests: [send, send] })),
    );
    const decoded = decodeSendRequest(toBinary(SendRequestSchema, send));
    expect(decoded).toEqual(send);
    // With an idempotency key (a UUID), as a retrying publisher sends it.
    const keyed = create(SendRequestSchema, { ...send, idempotencyKey: "4b1f0c2e-8d7a-4f3e-9c61-2a5b7d9e0f13" });
    expectDecodedByHand(sendCase, toBinary(SendRequestSchema, keyed));
    expectDecodedByHand(
      publishCase,
      toBinary(PublishRequestSchema, create(PublishRequestSchema, { event: { case: "send", value: keyed } })),
    );
    expectDecodedByHand(
      batchCase,
      toBinary(SendBatchRequestSchema, create(SendBatchRequestSchema, { requests: [keyed, send] })),
    );
    const broadcast = create(BroadcastRequestSchema, {
      event: "tick",
      payload: { case: "json", value: json },
      idempotencyKey: "b-1",
    });
    expectDecodedByHand(broadcastCase, toBinary(BroadcastRequestSchema, broadcast));
    expect(decodeBroadcastRequest(toBinary(BroadcastRequestSchema, broadcast)).idempotencyKey).toBe("b-1");
  });

  it("decodes Struct fields in wire order, a repeated key last-wins at its first place", () => {
    const bytes = sendJson(
      structValueBytes([
        ["b", valueBytes(numberValue(1))],
        ["2", valueBytes(numberValue(2))],
        ["a", valueBytes(numberValue(3))],
        ["b", valueBytes(stringValue("again"))],
        ["1", valueBytes(numberValue(5))],
      ]),
    );
    expectDecodedByHand(sendCase, bytes);
    const fields = (decodeSendRequest(bytes).payload.value as Value).kind.value as { fields: Record<string, Value> };
    expect(Object.keys(fields.fields)).toEqual(["1", "2", "b", "a"]);
    expect(fields.fields.b!.kind).toEqual({ case: "stringValue", value: "again" });
  });

  it("agrees with fromBinary on Struct entries with any keys, repeated ones and __proto__ included", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, values(true)), { maxLength: 6 }), (entries) => {
        const bytes = sendJson(structValueBytes(entries.map(([k, v]) => [k, valueBytes(v)])));
        const fellBack = expectAgreement(sendCase, bytes);
        expect(fellBack).toBe(entries.some(([k]) => k === "__proto__"));
      }),
      { numRuns: 500 },
    );
  });

  it("leaves a __proto__ key to protobuf-es", () => {
    expectFallback(
      sendCase,
      sendJson(
        structValueBytes([
          ["__proto__", valueBytes(numberValue(1))],
          ["a", valueBytes(numberValue(2))],
        ]),
      ),
    );
  });

  it("drops a leading BOM and decodes any valid UTF-8 as protobuf-es does; invalid UTF-8 throws as there", () => {
    for (const s of ["\uFEFF", "\uFEFFx", "\uFEFF\uFEFFx", "x\uFEFF", "é", "€uro", "😀", "\u0000"]) {
      const bytes = toBinary(SendRequestSchema, create(SendRequestSchema, { channel: s, event: s.repeat(10) }));
      expectDecodedByHand(sendCase, bytes);
      expect(decodeSendRequest(bytes).channel).toBe(fromBinary(SendRequestSchema, bytes).channel);
    }
    expect(
      decodeSendRequest(toBinary(SendRequestSchema, create(SendRequestSchema, { channel: "\uFEFFx" }))).channel,
    ).toBe("x");
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0x61, 0x80], [0xf4, 0x90, 0x80, 0x80]]) {
      const bytes = Uint8Array.of(0x0a, bad.length, ...bad);
      expect(() => fromBinary(SendRequestSchema, bytes)).toThrow();
      expectFallback(sendCase, bytes);
    }
  });

  it("decodes Values set to their defaults, and no kind, by hand", () => {
    for (const value of [
      numberValue(0),
      numberValue(-0),
      numberValue(NaN),
      stringValue(""),
      create(ValueSchema, { kind: { case: "boolValue", value: false } }),
      create(ValueSchema, { kind: { case: "nullValue", value: 0 } }),
      create(ValueSchema, { kind: { case: "structValue", value: create(StructSchema) } }),
      create(ValueSchema, { kind: { case: "listValue", value: create(ListValueSchema) } }),
      create(ValueSchema),
    ]) {
      expectDecodedByHand(sendCase, sendJson(valueBytes(value)));
    }
    expect(
      Object.is((decodeSendRequest(sendJson(valueBytes(numberValue(-0)))).payload.value as Value).kind.value, -0),
    ).toBe(true);
  });

  it("leaves non-canonical shapes to protobuf-es", () => {
    const v1 = valueBytes(numberValue(1));
    const concat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
    const sendFallbacks = [
      concat([0x0a, 1, 0x61, 0x0a, 1, 0x62]), // channel twice: the last wins
      concat([0x12, 0, 0x12, 0]), // event twice
      concat([0x1a, v1.length], v1, [0x1a, v1.length], v1), // json twice: merged
      concat([0x1a, v1.length], v1, [0x22, 1, 7]), // json, then binary
      concat([0x22, 1, 7, 0x22, 0]), // binary twice
      concat([0x08, 1]), // channel as a varint
      concat([0x42, 0]), // unknown field 8
      concat([0x8a, 0x00, 1, 0x61]), // channel with a two-byte tag
      concat([0x0a, 0x81, 0x80, 0x80, 0x80, 0x00, 0x61]), // a five-byte length
      concat([0x1a, 3, 0x08, 0x01]), // truncated
      sendJson(concat([0x08, 0x05])), // null_value 5
      sendJson(concat([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), // null_value -1
      sendJson(concat([0x08, 0x80, 0x00])), // null_value 0 in two bytes
      sendJson(concat([0x20, 0x02])), // bool_value 2
      sendJson(concat([0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0])), // number_value twice
      sendJson(concat([0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01])), // two kinds: the last wins
      sendJson(concat([0x2a, 2, 0x0a, 0])), // a map entry with neither key nor value
      sendJson(concat([0x2a, 4, 0x0a, 2, 0x0a, 0])), // a map entry without its value
      sendJson(concat([0x2a, 4, 0x0a, 2, 0x12, 0])), // a map entry without its key
      sendJson(concat([0x2a, 6, 0x0a, 4, 0x12, 0, 0x0a, 0])), // value before key
      sendJson(concat([0x2a, 5, 0x0a, 3, 0x0a, 1, 0x61])), // truncated entry
    ];
    for (const bytes of sendFallbacks) expectFallback(sendCase, bytes);
    expectFallback(publishCase, concat([0x0a, 0, 0x0a, 0])); // send twice: merged
    expectFallback(publishCase, concat([0x0a, 0, 0x12, 0])); // send, then broadcast
    expectFallback(broadcastCase, concat([0x0a, 0, 0x0a, 0])); // event twice
    expectFallback(sendCase, concat([0x2a, 1, 0x61, 0x2a, 1, 0x62])); // idempotency_key twice: the last wins
    expectFallback(broadcastCase, concat([0x22, 1, 0x61, 0x22, 0])); // idempotency_key twice
    expectFallback(broadcastCase, concat([0x20, 1])); // idempotency_key as a varint
    expectFallback(batchCase, concat([0x0a, 0, 0x12, 0])); // an unknown field after a request
  });

  it("decodes non-minimal lengths by hand, as protobuf-es reads them", () => {
    expectDecodedByHand(sendCase, Uint8Array.of(0x0a, 0x81, 0x80, 0x80, 0x00, 0x61));
    expectDecodedByHand(sendCase, Uint8Array.of(0x1a, 0x80, 0x00));
  });

  it("follows protobuf-es's recursion limit: by hand within it, its error beyond it", () => {
    // SendRequest is depth 1, its Value 2, each level of lists 2 more: 49
    // levels reach depth 100, the limit.
    for (let levels = 45; levels <= 52; levels++) {
      const send = sendJson(deepValue(levels));
      const publish = new BinaryWriter().tag(1, LEN).bytes(send).finish();
      if (levels <= 49) expectDecodedByHand(sendCase, send);
      else expectFallback(sendCase, send);
      if (levels <= 48) expectDecodedByHand(publishCase, publish);
      else expectFallback(publishCase, publish);
    }
    expect(() => decodeSendRequest(sendJson(deepValue(50)))).toThrow(/maximum recursion depth/);
  });

  it("returns binary payloads as copies of the bytes, where protobuf-es returns views", () => {
    const bytes = toBinary(
      SendRequestSchema,
      create(SendRequestSchema, { channel: "c", payload: { case: "binary", value: Uint8Array.of(1, 2, 3) } }),
    );
    expectDecodedByHand(sendCase, bytes);
    for (const input of [plain(bytes), Buffer.from(bytes)]) {
      const decoded = decodeSendRequest(input);
      input.fill(0);
      expect(decoded.payload.value).toEqual(Uint8Array.of(1, 2, 3));
      expect((decoded.payload.value as Uint8Array).constructor).toBe(Uint8Array);
    }
  });
});
