/**
 * The hand-written encoder of the link's Publication and HubFrame writes the
 * same bytes as protobuf-es, for any publication.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HubFrameSchema, PublicationSchema } from "../gen/realtime/link/v1/link_pb.js";
import { encodeHubPublication, encodePublication } from "../src/wire/publication.js";

const publication = fc.record({
  channel: fc.oneof(fc.constant(""), fc.string(), fc.string({ unit: "grapheme", maxLength: 200 })),
  event: fc.oneof(fc.constant(new Uint8Array()), fc.uint8Array({ maxLength: 300 })),
  eventJson: fc.oneof(
    fc.constant(""),
    fc.string({ unit: "binary", maxLength: 400 }),
    fc.string({ minLength: 120, maxLength: 20_000 }),
  ),
  origin: fc.oneof(fc.constant(""), fc.string({ maxLength: 40 })),
  skipOrigin: fc.boolean(),
});

describe("publication codec", () => {
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
  });
});
