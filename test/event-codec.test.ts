/**
 * The hand-written encoders of an application Event write the same binary
 * and the same JSON as protobuf-es, for any Value, and refuse what JSON
 * cannot carry with INVALID_ARGUMENT where protobuf-es throws.
 */
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { StructSchema, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EventSchema, MemberSchema, type Event } from "../gen/realtime/client/v1/client_pb.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";
import {
  appendPositionBinary,
  appendPositionJson,
  encodeEventBinary,
  encodeEventJson,
  isApplicationEvent,
  type ApplicationEvent,
} from "../src/wire/event-codec.js";
import { createPublication } from "../src/core/publication.js";
import { finiteNumber, someUnknown, text, unknownVarint, values as valueTrees } from "./helpers/value-arbitraries.js";

/**
 * Arbitrary google.protobuf.Value trees. With jsonSafe, only what JSON can
 * carry; otherwise also NaN, ±Infinity and Values with no kind.
 */
function values(jsonSafe: boolean) {
  return valueTrees({
    number: jsonSafe ? finiteNumber : fc.oneof(finiteNumber, fc.constantFrom(NaN, Infinity, -Infinity)),
    nullValue: fc.oneof(fc.constant(0), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
    noKind: !jsonSafe,
    unknown: someUnknown(unknownVarint, 8),
  });
}

/** uint64 offsets, with the edges of the varint lengths. */
const offsets = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
  fc.constantFrom(1n, 127n, 128n, 0xffffffffn, 0x100000000n, (1n << 64n) - 1n),
);

function events(payload: fc.Arbitrary<ApplicationEvent["payload"]>): fc.Arbitrary<ApplicationEvent> {
  return fc
    .record({
      channel: fc.oneof(fc.constant(""), text), // empty for a broadcast
      event: fc.oneof(fc.constant(""), text),
      id: fc.oneof(fc.constant(""), text),
      payload,
      offset: offsets,
      epoch: fc.oneof(fc.constant(""), text),
    })
    .map((init) => create(EventSchema, init) as ApplicationEvent);
}

const jsonEvents = (jsonSafe: boolean) => events(values(jsonSafe).map((value) => ({ case: "json" as const, value })));
const binaryEvents = events(
  fc
    .oneof(fc.constant(new Uint8Array()), fc.uint8Array({ maxLength: 300 }))
    .map((value) => ({ case: "binary" as const, value })),
);

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");

/** protobuf-es's JSON, or the error it throws. */
function expectedJson(event: Event): string | Error {
  try {
    return toJsonString(EventSchema, event);
  } catch (err) {
    return err as Error;
  }
}

function invalidArgument(run: () => unknown): RealtimeError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(RealtimeError);
    expect((err as RealtimeError).code).toBe(Code.InvalidArgument);
    return err as RealtimeError;
  }
  throw new Error("expected INVALID_ARGUMENT, nothing was thrown");
}

/** Whether a string (key or value) of a parsed JSON value holds a lone surrogate. */
function hasLoneSurrogate(json: unknown): boolean {
  if (typeof json === "string") return /\p{Cs}/u.test(json);
  if (json === null || typeof json !== "object") return false;
  return Object.entries(json).some(([k, v]) => /\p{Cs}/u.test(k) || hasLoneSurrogate(v));
}

describe("event codec", () => {
  it("writes the binary of a json event byte for byte as protobuf-es does, NaN and empty Values included", () => {
    fc.assert(
      fc.property(jsonEvents(false), (event) => {
        expect(hex(encodeEventBinary(event))).toBe(hex(toBinary(EventSchema, event)));
      }),
      { numRuns: 1000 },
    );
  });

  it("writes the JSON of a json event exactly as protobuf-es does", () => {
    fc.assert(
      fc.property(jsonEvents(true), (event) => {
        expect(encodeEventJson(event)).toBe(toJsonString(EventSchema, event));
      }),
      { numRuns: 1000 },
    );
  });

  it("throws INVALID_ARGUMENT for JSON exactly where protobuf-es throws, and agrees elsewhere", () => {
    fc.assert(
      fc.property(jsonEvents(false), (event) => {
        const expected = expectedJson(event);
        if (typeof expected === "string") expect(encodeEventJson(event)).toBe(expected);
        else invalidArgument(() => encodeEventJson(event));
      }),
      { numRuns: 1000 },
    );
  });

  it("writes a binary event as protobuf-es does in both encodings (base64 in JSON)", () => {
    fc.assert(
      fc.property(binaryEvents, (event) => {
        expect(hex(encodeEventBinary(event))).toBe(hex(toBinary(EventSchema, event)));
        expect(encodeEventJson(event)).toBe(toJsonString(EventSchema, event));
      }),
      { numRuns: 500 },
    );
  });

  it("says what to fix for NaN and Infinity, at any depth", () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const value = create(ValueSchema, {
        kind: {
          case: "structValue",
          value: {
            fields: {
              ok: create(ValueSchema, {
                kind: {
                  case: "listValue",
                  value: { values: [create(ValueSchema, { kind: { case: "numberValue", value: bad } })] },
                },
              }),
            },
          },
        },
      });
      const event = create(EventSchema, {
        channel: "c",
        event: "e",
        id: "1",
        payload: { case: "json", value },
      }) as ApplicationEvent;
      expect(() => toJsonString(EventSchema, event)).toThrow(); // what the codec stands in for
      expect(invalidArgument(() => encodeEventJson(event)).message).toBe(
        "payload holds NaN or Infinity, which JSON cannot carry: send a finite number",
      );
      expect(invalidArgument(() => createPublication(event, 1 << 20)).message).toMatch(
        /NaN or Infinity.*send a finite number/,
      );
    }
  });

  it("writes a Value with no kind as an empty message in binary and refuses it in JSON, as protobuf-es does", () => {
    const event = create(EventSchema, {
      channel: "c",
      event: "e",
      payload: { case: "json", value: create(ValueSchema) },
    }) as ApplicationEvent;
    expect(hex(encodeEventBinary(event))).toBe(hex(toBinary(EventSchema, event)));
    expect(hex(encodeEventBinary(event)).endsWith("1a00")).toBe(true);
    expect(() => toJsonString(EventSchema, event)).toThrow();
    expect(invalidArgument(() => encodeEventJson(event)).message).toMatch(/no kind set.*set one of null_value/);
  });

  it("drops a __proto__ key from the JSON but not the binary, as protobuf-es does", () => {
    const fields: Record<string, Value> = Object.create(null);
    fields["__proto__"] = create(ValueSchema, { kind: { case: "numberValue", value: 1 } });
    fields["b"] = create(ValueSchema, { kind: { case: "boolValue", value: true } });
    const struct = create(StructSchema);
    struct.fields = fields;
    const event = create(EventSchema, {
      payload: { case: "json", value: create(ValueSchema, { kind: { case: "structValue", value: struct } }) },
    }) as ApplicationEvent;
    expect(Object.keys(struct.fields)).toEqual(["__proto__", "b"]);
    expect(hex(encodeEventBinary(event))).toBe(hex(toBinary(EventSchema, event)));
    expect(encodeEventJson(event)).toBe(toJsonString(EventSchema, event));
    expect(encodeEventJson(event)).toBe('{"json":{"b":true}}');
  });

  it("handles strings and payloads with three-byte lengths", () => {
    const big = create(ValueSchema, {
      kind: {
        case: "structValue",
        value: {
          fields: {
            ["k".repeat(20_000)]: create(ValueSchema, {
              kind: { case: "stringValue", value: "é\ud800".repeat(10_000) },
            }),
          },
        },
      },
    });
    const json = create(EventSchema, {
      channel: "c".repeat(200),
      event: "e",
      id: "x",
      payload: { case: "json", value: big },
    }) as ApplicationEvent;
    const binary = create(EventSchema, {
      channel: "c",
      payload: { case: "binary", value: new Uint8Array(70_000).fill(7) },
    }) as ApplicationEvent;
    for (const event of [json, binary]) {
      expect(hex(encodeEventBinary(event))).toBe(hex(toBinary(EventSchema, event)));
      expect(encodeEventJson(event)).toBe(toJsonString(EventSchema, event));
    }
  });

  it("leaves member events to protobuf-es", () => {
    const member = create(EventSchema, {
      channel: "c",
      event: "channel:join",
      id: "1",
      payload: { case: "member", value: create(MemberSchema, { id: "m" }) },
    });
    expect(isApplicationEvent(member)).toBe(false);
    expect(isApplicationEvent(create(EventSchema))).toBe(false);
    const pub = createPublication(member, Infinity);
    expect(hex(pub.event)).toBe(hex(toBinary(EventSchema, member)));
    expect(pub.eventJson).toBe(toJsonString(EventSchema, member));
  });

  it("createPublication encodes with the codec and refuses an event over the limit, counted without its id", () => {
    fc.assert(
      fc.property(fc.oneof(jsonEvents(true), binaryEvents), (event) => {
        const bytes = toBinary(EventSchema, event);
        // What the publisher sent: the event without the id the service gives it.
        const size = toBinary(EventSchema, { ...event, id: "" }).length;
        const json = toJsonString(EventSchema, event);
        if (hasLoneSurrogate(JSON.parse(json))) {
          // A lone surrogate: JSON and binary would carry different text.
          expect(() => createPublication(event, size)).toThrow(/not well-formed Unicode/);
          return;
        }
        const pub = createPublication(event, size, "origin", true);
        expect(hex(pub.event)).toBe(hex(bytes));
        expect(pub.eventJson).toBe(json);
        expect(pub).toMatchObject({ channel: event.channel, origin: "origin", skipOrigin: true });
        expect(() => createPublication(event, size - 1)).toThrow(
          new RealtimeError(
            Code.ResourceExhausted,
            `the event is ${size} bytes encoded (channel, event name and payload, protobuf binary); the limit is ${size - 1} bytes: send a smaller payload`,
          ),
        );
      }),
      { numRuns: 300 },
    );
  });
});

describe("a position appended to an encoded event", () => {
  const systemEvents = fc
    .record({ channel: text, id: fc.oneof(fc.constant(""), text), member: fc.string() })
    .map(({ channel, id, member }) =>
      create(EventSchema, {
        channel,
        event: "channel:join",
        id,
        payload: { case: "member", value: create(MemberSchema, { id: member }) },
      }),
    );
  const anyEvent = fc.oneof(jsonEvents(true), binaryEvents, systemEvents);

  it("is what protobuf-es writes for the event with the position set, in both encodings", () => {
    fc.assert(
      fc.property(anyEvent, offsets, fc.oneof(fc.constant(""), text), (event, offset, epoch) => {
        const bare = { ...event, offset: 0n, epoch: "" };
        const positioned = { ...event, offset, epoch };
        expect(Buffer.from(appendPositionBinary(toBinary(EventSchema, bare), offset, epoch))).toEqual(
          Buffer.from(toBinary(EventSchema, positioned)),
        );
        expect(appendPositionJson(toJsonString(EventSchema, bare), offset, epoch)).toBe(
          toJsonString(EventSchema, positioned),
        );
      }),
      { numRuns: 500 },
    );
  });
});
