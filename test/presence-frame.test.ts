/**
 * The hand-built presence frames (client-codec.ts binaryPresenceFrame,
 * jsonPresenceFrame; compactPresenceFrame of presenceChange's changes)
 * write what protobuf-es writes for ServerFrame{presence}, for any list of
 * system events with or without positions; presenceEvents expands the
 * compact form; isSystemEventBytes tells system events from the rest.
 */
import { create, fromJson, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EventSchema,
  MemberSchema,
  PresenceChangeSchema,
  PresenceSchema,
  ServerFrameSchema,
  type Presence,
} from "../gen/realtime/client/v1/client_pb.js";
import { createPublication, systemEvent } from "../src/core/publication.js";
import { SystemEvent } from "../src/protocol/system-events.js";
import { Encoding } from "../src/protocol/encodings.js";
import { presenceEvents } from "../src/protocol/presence-changes.js";
import {
  binaryPresenceFrame,
  compactPresenceFrame,
  jsonPresenceFrame,
  presenceChange,
} from "../src/wire/client-codec.js";
import { isSystemEventBytes } from "../src/wire/event-codec.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Well-formed text (the service refuses lone surrogates before anything is encoded). */
const text = fc.string({ unit: "grapheme", maxLength: 40 });

const changes = fc.record({
  id: text,
  channel: fc.string({ unit: "grapheme", minLength: 1, maxLength: 300 }),
  name: fc.constantFrom(SystemEvent.Join, SystemEvent.Leave, SystemEvent.Update),
  member: fc.record({ id: text, userId: fc.oneof(fc.constant(""), text), data: fc.option(fc.jsonValue()) }),
  offset: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: (1n << 64n) - 1n })),
  epoch: fc.oneof(fc.constant(""), text),
});

/** The member and the publication of a generated change's system event (without its position). */
function systemPublication(c: typeof changes extends fc.Arbitrary<infer T> ? T : never) {
  const member = create(MemberSchema, {
    id: c.member.id,
    userId: c.member.userId,
    data: c.member.data === null ? undefined : fromJson(ValueSchema, c.member.data as never),
  });
  return { member, pub: createPublication(systemEvent(c.id, c.channel, c.name, member), Infinity, c.member.id, true) };
}

describe("presence frame", () => {
  it("is byte for byte, and character for character, protobuf-es's ServerFrame{presence}", () => {
    fc.assert(
      fc.property(fc.array(changes, { maxLength: 20 }), (list) => {
        const pubs = [];
        const events = [];
        for (const c of list) {
          const { member, pub } = systemPublication(c);
          pubs.push(c.offset === 0n ? pub : { ...pub, offset: c.offset, epoch: c.epoch });
          const event = systemEvent(c.id, c.channel, c.name, member);
          if (c.offset !== 0n) Object.assign(event, { offset: c.offset, epoch: c.epoch });
          events.push(event);
        }
        const frame = create(ServerFrameSchema, { frame: { case: "presence", value: { events } } });
        expect(hex(binaryPresenceFrame(pubs))).toBe(hex(toBinary(ServerFrameSchema, frame)));
        expect(new TextDecoder().decode(jsonPresenceFrame(pubs))).toBe(toJsonString(ServerFrameSchema, frame));
      }),
      { numRuns: 300 },
    );
  });

  it("compact: byte for byte, and character for character, protobuf-es's ServerFrame{presence} of the changes", () => {
    fc.assert(
      fc.property(
        fc.array(changes, { maxLength: 20 }),
        fc.string({ unit: "grapheme", maxLength: 300 }),
        fc.oneof(fc.constant(""), text),
        fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: (1n << 64n) - 1n })),
        (list, channel, epoch, firstOffset) => {
          const compact = [];
          const expected = [];
          for (const c of list) {
            const { member, pub } = systemPublication(c);
            const change = presenceChange(pub)!;
            compact.push(change);
            const which = c.name === SystemEvent.Join ? "join" : c.name === SystemEvent.Leave ? "leave" : "update";
            const want = create(PresenceChangeSchema, { change: { case: which, value: member }, id: c.id });
            expect(change.bytes).toBe(toBinary(PresenceSchema, create(PresenceSchema, { changes: [want] })).length);
            expected.push(want);
          }
          const frame = create(ServerFrameSchema, {
            frame: { case: "presence", value: { channel, epoch, firstOffset, changes: expected } },
          });
          expect(hex(compactPresenceFrame(channel, epoch, firstOffset, compact, Encoding.Proto))).toBe(
            hex(toBinary(ServerFrameSchema, frame)),
          );
          expect(
            new TextDecoder().decode(compactPresenceFrame(channel, epoch, firstOffset, compact, Encoding.Json)),
          ).toBe(toJsonString(ServerFrameSchema, frame));
          // What the SDK makes of it: the events the frame stands for.
          const events = presenceEvents(frame.frame.value as Presence);
          expect(events.map((e) => [e.event, e.id, e.offset])).toEqual(
            list.map((c, i) => [c.name, c.id, firstOffset === 0n ? 0n : firstOffset + BigInt(i)]),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("tells system events from application events by their bytes", () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(""), text), text, (channel, name) => {
        const app = create(EventSchema, {
          channel,
          event: name,
          id: "x",
          payload: { case: "binary", value: new Uint8Array() },
        });
        const bytes = toBinary(EventSchema, app);
        expect(isSystemEventBytes(bytes)).toBe(name.startsWith("channel:"));
        const sys = systemEvent("x", channel, SystemEvent.Join, create(MemberSchema, { id: "m" }));
        expect(isSystemEventBytes(toBinary(EventSchema, sys))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
