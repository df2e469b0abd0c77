/**
 * The hand-written codec of the publish path (src/wire/publication.ts):
 * its encoders of the link's Publication, HubFrame{publication} and
 * EdgeFrame{id, publish} write the same bytes as protobuf-es, for any
 * publication; its decoders of a Publication (Redis), a HubFrame and an
 * EdgeFrame return what protobuf-es's fromBinary returns, and throw where it
 * throws, for any bytes, decode the canonical encodings themselves (no
 * fallback to fromBinary), and keep the event bytes a view of the input.
 */
import { create, fromBinary, toBinary, type Message, type UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import {
  EdgeFrameSchema,
  HubFrameSchema,
  PublicationSchema,
  type EdgeFrame,
  type HubFrame,
  type Publication as PublicationMessage,
} from "../gen/realtime/link/v1/link_pb.js";
import {
  decodeEdgeFrame,
  decodeHubFrame,
  decodePublication,
  encodeEdgePublish,
  encodeHubPublication,
  encodePublication,
} from "../src/wire/publication.js";
import {
  expectAgreement,
  expectDecodedByHand,
  expectFallback,
  hex,
  itAgreesOnAnyBytes,
  plain,
  type DecoderCase,
} from "./helpers/decoder-agreement.js";
import { someUnknown, text, withUnknown } from "./helpers/value-arbitraries.js";

// fromBinary as a spy, to see whether the decoders fell back to it (helpers/decoder-agreement.ts).
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof import("@bufbuild/protobuf")>();
  return { ...actual, fromBinary: vi.fn(actual.fromBinary) };
});

const publicationFields = {
  channel: fc.oneof(fc.constant(""), fc.string(), fc.string({ unit: "grapheme", maxLength: 200 })),
  event: fc.oneof(fc.constant(new Uint8Array()), fc.uint8Array({ maxLength: 300 })),
  eventJson: fc.oneof(
    fc.constant(""),
    fc.string({ unit: "binary", maxLength: 400 }),
    fc.string({ minLength: 120, maxLength: 20_000 }),
  ),
  origin: fc.oneof(fc.constant(""), fc.string({ maxLength: 40 })),
  skipOrigin: fc.boolean(),
  offset: fc.oneof(
    fc.constant(0n),
    fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
    fc.constantFrom(1n, 127n, 128n, 0xffffffffn, 0x100000000n, (1n << 63n) - 1n, (1n << 64n) - 1n),
  ),
  epoch: fc.oneof(fc.constant(""), fc.string({ maxLength: 16 })),
  acceptedUnixMs: fc.oneof(
    fc.constant(0n),
    fc.bigInt({ min: 1_700_000_000_000n, max: 2_000_000_000_000n }), // a wall clock's milliseconds
    fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
    fc.constantFrom(1n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n, (1n << 64n) - 1n),
  ),
};
const publication = fc.record(publicationFields);

/** A request id: 0 (no reply wanted) or any uint32, with the varint lengths' edges. */
const requestId = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 0xffffffff }),
  fc.constantFrom(1, 127, 128, 16_383, 16_384, 2 ** 28 - 1, 2 ** 28, 0xffffffff),
);

/** Unknown fields, with the numbers of the known ones too (another wire type: not read as them). */
const unknownFields = (canonical: boolean): fc.Arbitrary<UnknownField[] | undefined> =>
  canonical
    ? fc.constant(undefined)
    : someUnknown(
        fc.record({
          no: fc.integer({ min: 1, max: 12 }),
          wireType: fc.constant(WireType.Bit32),
          data: fc.uint8Array({ minLength: 4, maxLength: 4 }),
        }),
        3,
      );

/** Publication messages: with canonical false, sometimes with unknown fields, and any strings (text). */
const publications = (canonical: boolean): fc.Arbitrary<PublicationMessage> =>
  fc
    .tuple(
      canonical ? publication : fc.record({ ...publicationFields, channel: text, origin: text }),
      unknownFields(canonical),
    )
    .map(([init, unknown]) => withUnknown(create(PublicationSchema, init), unknown));

const hubFrames = (canonical: boolean): fc.Arbitrary<HubFrame> =>
  fc
    .tuple(publications(canonical), unknownFields(canonical))
    .map(([value, unknown]) => withUnknown(create(HubFrameSchema, { frame: { case: "publication", value } }), unknown));

const edgeFrames = (canonical: boolean): fc.Arbitrary<EdgeFrame> =>
  fc
    .tuple(requestId, publications(canonical), unknownFields(canonical))
    .map(([id, value, unknown]) =>
      withUnknown(create(EdgeFrameSchema, { id, frame: { case: "publish", value } }), unknown),
    );

interface Case extends DecoderCase {
  messages: (canonical: boolean) => fc.Arbitrary<Message>;
  /** The publication in a decoded message. */
  publicationOf: (message: Message) => PublicationMessage;
}

const cases: Case[] = [
  {
    name: "Publication",
    schema: PublicationSchema,
    decode: decodePublication,
    messages: publications,
    publicationOf: (m) => m as PublicationMessage,
  },
  {
    name: "HubFrame",
    schema: HubFrameSchema,
    decode: decodeHubFrame,
    messages: hubFrames,
    publicationOf: (m) => (m as HubFrame).frame.value as PublicationMessage,
  },
  {
    name: "EdgeFrame",
    schema: EdgeFrameSchema,
    decode: decodeEdgeFrame,
    messages: edgeFrames,
    publicationOf: (m) => (m as EdgeFrame).frame.value as PublicationMessage,
  },
];
const [publicationCase, hubCase, edgeCase] = cases as [Case, Case, Case];

/** The other link frames, which stay with protobuf-es. */
const otherHubFrames: HubFrame[] = [
  create(HubFrameSchema),
  create(HubFrameSchema, { frame: { case: "reply", value: { id: 7, edges: 2 } } }),
  create(HubFrameSchema, {
    frame: { case: "reply", value: { id: 9, members: [{ id: "m", userId: "u" }], more: true } },
  }),
  create(HubFrameSchema, { frame: { case: "reply", value: { id: 1, error: { code: 14, message: "down" } } } }),
  create(HubFrameSchema, { frame: { case: "challenge", value: { nonce: Uint8Array.of(1, 2, 3) } } }),
];
const otherEdgeFrames: EdgeFrame[] = [
  create(EdgeFrameSchema),
  create(EdgeFrameSchema, { id: 5 }),
  create(EdgeFrameSchema, { frame: { case: "hello", value: { edgeId: "e", proof: Uint8Array.of(9) } } }),
  create(EdgeFrameSchema, { id: 3, frame: { case: "subscribe", value: "lobby" } }),
  create(EdgeFrameSchema, { frame: { case: "unsubscribe", value: "lobby" } }),
  create(EdgeFrameSchema, { id: 4, frame: { case: "presenceAdd", value: { channel: "c", member: { id: "m" } } } }),
  create(EdgeFrameSchema, { id: 4, frame: { case: "presenceRemove", value: { channel: "c", memberId: "m" } } }),
  create(EdgeFrameSchema, { id: 6, frame: { case: "members", value: "c" } }),
  create(EdgeFrameSchema, { id: 8, frame: { case: "synced", value: {} } }),
  create(EdgeFrameSchema, { id: 2, frame: { case: "membersPage", value: { channel: "c", after: "a", limit: 10 } } }),
];

const concat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

describe("publication codec: encoding", () => {
  it("encodes a Publication exactly as protobuf-es does", () => {
    fc.assert(
      fc.property(publication, (pub) => {
        const expected = toBinary(PublicationSchema, create(PublicationSchema, pub));
        expect(Buffer.from(encodePublication(pub)).equals(Buffer.from(expected))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("encodes the HubFrame carrying it exactly as protobuf-es does, and it decodes back", () => {
    fc.assert(
      fc.property(publication, (pub) => {
        const expected = toBinary(
          HubFrameSchema,
          create(HubFrameSchema, { frame: { case: "publication", value: create(PublicationSchema, pub) } }),
        );
        const bytes = encodeHubPublication(pub);
        expect(Buffer.from(bytes).equals(Buffer.from(expected))).toBe(true);
        const back = fromBinary(HubFrameSchema, bytes).frame;
        expect(back.case).toBe("publication");
        if (back.case !== "publication") return;
        // Strings come back as their UTF-8 (lone surrogates become U+FFFD).
        const utf8 = (s: string) => Buffer.from(s, "utf8").toString("utf8");
        expect(back.value.channel).toBe(utf8(pub.channel));
        expect(back.value.eventJson).toBe(utf8(pub.eventJson));
        expect(back.value.origin).toBe(utf8(pub.origin));
        expect(Array.from(back.value.event)).toEqual(Array.from(pub.event));
        expect(back.value.skipOrigin).toBe(pub.skipOrigin);
        expect(back.value.acceptedUnixMs).toBe(pub.acceptedUnixMs);
      }),
      { numRuns: 500 },
    );
  });

  it("encodes the EdgeFrame{id, publish} carrying it exactly as protobuf-es does, for any id", () => {
    fc.assert(
      fc.property(requestId, publication, (id, pub) => {
        const expected = toBinary(
          EdgeFrameSchema,
          create(EdgeFrameSchema, { id, frame: { case: "publish", value: create(PublicationSchema, pub) } }),
        );
        expect(hex(encodeEdgePublish(id, pub))).toBe(hex(expected));
      }),
      { numRuns: 500 },
    );
  });

  it("handles an event larger than a two-byte length", () => {
    const pub = {
      channel: "c",
      event: new Uint8Array(70_000).fill(7),
      eventJson: "x".repeat(100_000),
      origin: "o",
      skipOrigin: true,
    };
    expect(
      Buffer.from(encodeHubPublication(pub)).equals(
        Buffer.from(
          toBinary(
            HubFrameSchema,
            create(HubFrameSchema, { frame: { case: "publication", value: create(PublicationSchema, pub) } }),
          ),
        ),
      ),
    ).toBe(true);
    const edge = encodeEdgePublish(0xffffffff, pub);
    expect(hex(edge)).toBe(
      hex(
        toBinary(
          EdgeFrameSchema,
          create(EdgeFrameSchema, {
            id: 0xffffffff,
            frame: { case: "publish", value: create(PublicationSchema, pub) },
          }),
        ),
      ),
    );
    expectDecodedByHand(edgeCase, edge);
  });
});

describe("publication codec: decoding", () => {
  for (const c of cases) {
    describe(c.name, () => {
      it("decodes protobuf-es's encoding of any message by hand, as fromBinary does, from a Uint8Array or a Buffer", () => {
        fc.assert(
          fc.property(c.messages(true), (message) => {
            const bytes = toBinary(c.schema, message);
            expectDecodedByHand(c, plain(bytes));
            expectDecodedByHand(c, Buffer.from(bytes));
          }),
          { numRuns: 300 },
        );
      });

      it("keeps the event bytes a view of the input: no copy", () => {
        fc.assert(
          fc.property(c.messages(true), (message) => {
            const bytes = Buffer.from(toBinary(c.schema, message));
            const event = c.publicationOf(c.decode(bytes)).event;
            if (event.length === 0) return;
            expect(event.buffer).toBe(bytes.buffer);
            expect(event.byteOffset).toBeGreaterThanOrEqual(bytes.byteOffset);
            expect(event.byteOffset + event.length).toBeLessThanOrEqual(bytes.byteOffset + bytes.length);
          }),
          { numRuns: 100 },
        );
      });

      it("agrees with fromBinary on messages with unknown fields and any strings, and leaves unknown fields to it", () => {
        fc.assert(
          fc.property(c.messages(false), (message) => {
            const fellBack = expectAgreement(c, plain(toBinary(c.schema, message)));
            const publication = (message as HubFrame).frame ? c.publicationOf(message) : message;
            if (message.$unknown !== undefined || publication.$unknown !== undefined) expect(fellBack).toBe(true);
          }),
          { numRuns: 300 },
        );
      });

      itAgreesOnAnyBytes(c, c.messages(true), { mutated: 1000, concatenated: 300, arbitrary: 1000 });
    });
  }

  it("leaves the other link frames to protobuf-es", () => {
    for (const frame of otherHubFrames) expectFallback(hubCase, toBinary(HubFrameSchema, frame));
    for (const frame of otherEdgeFrames) expectFallback(edgeCase, toBinary(EdgeFrameSchema, frame));
  });

  it("decodes the frames the link writes by hand, and a publish's id however long its varint", () => {
    const pub = {
      channel: "lobby",
      event: Uint8Array.of(0x0a, 5),
      eventJson: '{"channel":"lobby"}',
      origin: "conn-1",
      skipOrigin: true,
    };
    expectDecodedByHand(hubCase, encodeHubPublication(pub));
    for (const id of [0, 1, 300, 0xffffffff]) expectDecodedByHand(edgeCase, encodeEdgePublish(id, pub));
    expectDecodedByHand(publicationCase, encodePublication(pub));
    const body = encodePublication(pub);
    expectDecodedByHand(edgeCase, concat([0x08, 0x80, 0x00, 0x2a, body.length], body)); // id 0 in two bytes
    expectDecodedByHand(edgeCase, concat([0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x2a, body.length], body));
    expectDecodedByHand(publicationCase, concat([0x28, 0x00])); // skip_origin false, written
    expectDecodedByHand(publicationCase, concat([0x22, 0, 0x1a, 0, 0x12, 0, 0x0a, 0])); // any order, empty
    // The accept time, before the position (as a publisher older than positionIndex had Redis write it).
    expectDecodedByHand(publicationCase, concat([0x0a, 1, 0x61, 0x40, 0x85, 0x01, 0x30, 2, 0x3a, 1, 0x65]));
    const stamped = { ...pub, offset: 9n, epoch: "e", acceptedUnixMs: 1_796_000_000_123n };
    expectDecodedByHand(hubCase, encodeHubPublication(stamped));
    expectDecodedByHand(edgeCase, encodeEdgePublish(3, stamped));
  });

  it("leaves non-canonical shapes to protobuf-es", () => {
    const pubFallbacks = [
      concat([0x0a, 1, 0x61, 0x0a, 1, 0x62]), // channel twice: the last wins
      concat([0x12, 1, 7, 0x12, 0]), // event twice
      concat([0x28, 0x01, 0x28, 0x00]), // skip_origin twice
      concat([0x28, 0x02]), // skip_origin 2
      concat([0x28, 0x81, 0x00]), // skip_origin in two bytes
      concat([0x08, 1]), // channel as a varint
      concat([0x48, 0]), // unknown field 9
      concat([0x40, 1, 0x40, 2]), // accepted_unix_ms twice
      concat([0x30, 1, 0x30, 2]), // offset twice
      concat([0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]), // offset of 2^64: truncated there
      concat([0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // an eleven-byte varint
      concat([0x3a, 1, 0xff]), // invalid UTF-8 in epoch
      concat([0x8a, 0x00, 1, 0x61]), // channel with a two-byte tag
      concat([0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x61]), // a six-byte length
      concat([0x1a, 3, 0x61]), // truncated
      concat([0x0a, 2, 0xc3, 0x28]), // invalid UTF-8: fromBinary throws
      concat([0x22, 1, 0xff]), // invalid UTF-8 in origin
    ];
    for (const bytes of pubFallbacks) expectFallback(publicationCase, bytes);
    const body = encodePublication({
      channel: "c",
      event: Uint8Array.of(1),
      eventJson: "{}",
      origin: "",
      skipOrigin: false,
    });
    expectFallback(hubCase, concat([0x0a, body.length], body, [0x0a, body.length], body)); // publication twice: merged
    expectFallback(hubCase, concat([0x0a, body.length], body, [0x1a, 0])); // then a challenge: the last wins
    expectFallback(hubCase, concat([0x0a, body.length + 1], body)); // past the end
    expectFallback(edgeCase, concat([0x2a, body.length], body, [0x08, 3])); // the id after the publish
    expectFallback(edgeCase, concat([0x08, 1, 0x08, 2, 0x2a, body.length], body)); // id twice
    expectFallback(edgeCase, concat([0x08, 0x80, 0x80, 0x80, 0x80, 0x10, 0x2a, body.length], body)); // id of 2^32: truncated there
    expectFallback(edgeCase, concat([0x2a, body.length], body, [0x18, 0])); // then a subscribe: the last wins
  });

  it("drops a leading BOM and decodes any valid UTF-8 as protobuf-es does", () => {
    for (const s of ["\uFEFF", "\uFEFFx", "\uFEFF\uFEFFx", "x\uFEFF", "é", "€uro", "😀", "\u0000", "a".repeat(13)]) {
      const bytes = toBinary(PublicationSchema, create(PublicationSchema, { channel: s, eventJson: s, origin: s }));
      expectDecodedByHand(publicationCase, bytes);
    }
  });

  it("writes a Publication that decodes back by hand, as it was (its strings as UTF-8)", () => {
    fc.assert(
      fc.property(requestId, publication, (id, pub) => {
        const utf8 = (s: string) =>
          Buffer.from(s, "utf8")
            .toString("utf8")
            .replace(/^\uFEFF/, "");
        const frame = decodeEdgeFrame(encodeEdgePublish(id, pub));
        expect(frame.id).toBe(id);
        expect(frame.frame.case).toBe("publish");
        const back = frame.frame.value as PublicationMessage;
        expect([back.channel, back.eventJson, back.origin]).toEqual([pub.channel, pub.eventJson, pub.origin].map(utf8));
        expect(hex(back.event)).toBe(hex(pub.event));
        expect(back.skipOrigin).toBe(pub.skipOrigin);
        expect(back.acceptedUnixMs).toBe(pub.acceptedUnixMs);
      }),
      { numRuns: 200 },
    );
  });
});
