/**
 * The events frame (client-codec.ts binaryEventsFrame, jsonEventsFrame),
 * spliced from the event frames the edge already built, writes what
 * protobuf-es writes for ServerFrame{events} with those events, for any
 * list of application and system events with or without positions; the
 * SDK's JSON decoder (client-json.ts) reads it back as protobuf-es does; a
 * frame that is not an event frame is refused, never packed.
 */
import { create, fromBinary, fromJson, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EventSchema, MemberSchema, ServerFrameSchema, type Event } from "../gen/realtime/client/v1/client_pb.js";
import { createPublication, systemEvent } from "../src/core/publication.js";
import { SystemEvent } from "../src/protocol/system-events.js";
import {
  binaryEventFrame,
  binaryEventsFrame,
  jsonEventFrame,
  jsonEventsFrame,
  serverFrame,
} from "../src/wire/client-codec.js";
import { decodeServerFrameJson } from "../src/wire/client-json.js";
import { Encoding } from "../src/protocol/encodings.js";

/** Well-formed text (the service refuses lone surrogates before anything is encoded), some past 127 bytes. */
const text = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 50, maxLength: 300 }),
);

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const utf8 = (b: Uint8Array) => new TextDecoder().decode(b);

const offsets = fc.oneof(
  fc.constant(0n),
  fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
  fc.constantFrom(1n, 127n, 128n, 0xffffffffn, (1n << 64n) - 1n),
);

/** Payloads the service publishes: JSON that JSON can carry, bytes, or a system event's member. */
const payloads: fc.Arbitrary<Event["payload"]> = fc.oneof(
  fc.jsonValue().map((json) => ({ case: "json" as const, value: fromJson(ValueSchema, json as never) })),
  fc.uint8Array({ maxLength: 300 }).map((value) => ({ case: "binary" as const, value })),
  fc.record({ id: text, userId: fc.oneof(fc.constant(""), text), data: fc.option(fc.jsonValue()) }).map((m) => ({
    case: "member" as const,
    value: create(MemberSchema, {
      id: m.id,
      userId: m.userId,
      data: m.data === null ? undefined : fromJson(ValueSchema, m.data as never),
    }),
  })),
);

const events = fc.record({
  channel: fc.oneof(fc.constant(""), text), // empty for a broadcast or a user's event
  event: text,
  id: text,
  payload: payloads,
  offset: offsets,
  epoch: fc.oneof(fc.constant(""), text),
});

describe("events frame", () => {
  it("spliced from event frames is byte for byte, and character for character, protobuf-es's ServerFrame{events}", () => {
    fc.assert(
      fc.property(fc.array(events, { maxLength: 20 }), (list) => {
        const pubs = [];
        const evs: Event[] = [];
        for (const e of list) {
          const base =
            e.payload.case === "member"
              ? systemEvent(e.id, e.channel, SystemEvent.Join, e.payload.value)
              : create(EventSchema, { channel: e.channel, event: e.event, id: e.id, payload: e.payload });
          const pub = createPublication(base, Infinity);
          pubs.push(e.offset === 0n ? pub : { ...pub, offset: e.offset, epoch: e.epoch });
          const event = create(EventSchema, base);
          if (e.offset !== 0n) Object.assign(event, { offset: e.offset, epoch: e.epoch });
          evs.push(event);
        }
        const frame = create(ServerFrameSchema, { frame: { case: "events", value: { events: evs } } });
        const binary = binaryEventsFrame(pubs.map(binaryEventFrame));
        const json = utf8(jsonEventsFrame(pubs.map(jsonEventFrame)));
        expect(hex(binary)).toBe(hex(toBinary(ServerFrameSchema, frame)));
        expect(json).toBe(toJsonString(ServerFrameSchema, frame));
        // Read back: the SDK's JSON decoder reads what protobuf-es reads, and the binary holds the events put in.
        expect(decodeServerFrameJson(json)).toEqual(fromJson(ServerFrameSchema, JSON.parse(json) as never));
        expect(fromBinary(ServerFrameSchema, binary)).toEqual(frame);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a frame that is not an event frame", () => {
    const reply = { frame: { case: "reply" as const, value: { id: 1 } } };
    expect(() => binaryEventsFrame([serverFrame(reply, Encoding.Proto)])).toThrow(/not a ServerFrame\{event\}/);
    expect(() => jsonEventsFrame([serverFrame(reply, Encoding.Json)])).toThrow(/not a ServerFrame\{event\}/);
  });
});
