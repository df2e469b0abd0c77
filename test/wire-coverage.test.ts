/**
 * No silent slow path: every field of every message a hand codec handles
 * is listed in src/wire/coverage.ts as handled by hand, copied already
 * encoded, or left to protobuf-es; what is listed as handled by hand is
 * (a message with every such field set is encoded or decoded by hand, as
 * protobuf-es does), and what is listed as left to protobuf-es is. So a
 * field added to proto/ fails here, naming the message and the field,
 * until its codec handles it or it is written down as protobuf-es's.
 */
import { clone, create, fromBinary, toBinary, toJsonString, type Message } from "@bufbuild/protobuf";
import { createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
  file_google_protobuf_struct,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it, vi } from "vitest";
import {
  EventSchema,
  file_realtime_client_v1_client,
  PresenceChangeSchema,
  type Event,
  type Presence,
  type ServerFrame,
} from "../gen/realtime/client/v1/client_pb.js";
import {
  file_realtime_link_v1_link,
  PublicationSchema,
  type EdgeFrame,
  type HubFrame,
  type Publication,
} from "../gen/realtime/link/v1/link_pb.js";
import {
  BroadcastRequestSchema,
  PublishRequestSchema,
  SendBatchRequestSchema,
  SendRequestSchema,
} from "../gen/realtime/v1/realtime_pb.js";
import {
  binaryEventFrame,
  binaryEventsFrame,
  binaryPresenceFrame,
  compactPresenceFrame,
  jsonEventFrame,
  jsonEventsFrame,
  jsonPresenceFrame,
} from "../src/wire/client-codec.js";
import { WIRE_COVERAGE, type CodecCoverage } from "../src/wire/coverage.js";
import { Encoding } from "../src/protocol/encodings.js";
import {
  encodeEventBinary,
  encodeEventJson,
  isApplicationEvent,
  type ApplicationEvent,
} from "../src/wire/event-codec.js";
import {
  decodeEdgeFrame,
  decodeHubFrame,
  decodePublication,
  encodeEdgePublish,
  encodeHubPublication,
  encodePublication,
} from "../src/wire/publication.js";
import {
  decodeBroadcastRequest,
  decodePublishRequest,
  decodeSendBatchRequest,
  decodeSendRequest,
} from "../src/wire/request-codec.js";
import { coverageGaps, deferredFailures, handFailures, type RootCodec } from "./helpers/wire-coverage.js";

// fromBinary as a spy, to see whether the decoders fell back to it (helpers/decoder-agreement.ts).
vi.mock("@bufbuild/protobuf", async (importOriginal) => {
  const actual = await importOriginal<typeof import("@bufbuild/protobuf")>();
  return { ...actual, fromBinary: vi.fn(actual.fromBinary) };
});

/** The events of a ServerFrame (event, presence or events) as Publications carry them, encoded (the frame copies them). */
function publicationsOf(frame: ServerFrame): Publication[] {
  if (frame.frame.case === "presence" || frame.frame.case === "events")
    return frame.frame.value.events.map(publicationOf);
  return [publicationOf(frame.frame.value as Event)];
}

/** An event as a Publication carries it, encoded. */
function publicationOf(event: Event): Publication {
  return create(PublicationSchema, {
    event: toBinary(EventSchema, event),
    eventJson: toJsonString(EventSchema, event),
  });
}

/** Whether a presence frame has a field of the compact form set. */
function isCompact(p: Presence): boolean {
  return p.changes.length > 0 || p.channel !== "" || p.epoch !== "" || p.firstOffset !== 0n;
}

/** The compact presence frame of p, its changes encoded as an edge encodes them (presenceChange). */
function compactFrameOf(p: Presence, encoding: Encoding): Uint8Array {
  const list = p.changes.map((c) => {
    const binary = toBinary(PresenceChangeSchema, c);
    return { binary, json: toJsonString(PresenceChangeSchema, c), bytes: 0 };
  });
  return compactPresenceFrame(p.channel, p.epoch, p.firstOffset, list, encoding);
}

/** How the test drives each root of each codec. */
const ROOTS: Record<string, Record<string, RootCodec>> = {
  "event-codec.ts": {
    [EventSchema.typeName]: {
      encode: {
        handles: (m) => isApplicationEvent(m as Event),
        binary: (m) => encodeEventBinary(m as ApplicationEvent),
        json: (m) => encodeEventJson(m as ApplicationEvent),
      },
    },
  },
  "request-codec.ts": {
    [PublishRequestSchema.typeName]: { decode: decodePublishRequest as (b: Uint8Array) => Message },
    [SendRequestSchema.typeName]: { decode: decodeSendRequest as (b: Uint8Array) => Message },
    [BroadcastRequestSchema.typeName]: { decode: decodeBroadcastRequest as (b: Uint8Array) => Message },
    [SendBatchRequestSchema.typeName]: { decode: decodeSendBatchRequest as (b: Uint8Array) => Message },
  },
  "publication.ts": {
    "realtime.link.v1.Publication": {
      encode: { handles: () => true, binary: (m) => encodePublication(m as Publication) },
      decode: decodePublication,
    },
    "realtime.link.v1.HubFrame": {
      encode: {
        handles: (m) => (m as HubFrame).frame.case === "publication",
        binary: (m) => encodeHubPublication((m as HubFrame).frame.value as Publication),
      },
      decode: decodeHubFrame,
    },
    "realtime.link.v1.EdgeFrame": {
      encode: {
        handles: (m) => (m as EdgeFrame).frame.case === "publish",
        binary: (m) => encodeEdgePublish((m as EdgeFrame).id, (m as EdgeFrame).frame.value as Publication),
      },
      decode: decodeEdgeFrame,
    },
  },
  "client-codec.ts": {
    "realtime.client.v1.ServerFrame": {
      encode: {
        handles: (m) => {
          const f = (m as ServerFrame).frame;
          // A presence frame is in one form or the other, never both.
          if (f.case === "presence") return f.value.events.length === 0 || !isCompact(f.value);
          return f.case === "event" || f.case === "events";
        },
        binary: (m) => {
          const f = (m as ServerFrame).frame;
          if (f.case === "presence" && isCompact(f.value)) return compactFrameOf(f.value, Encoding.Proto);
          const pubs = publicationsOf(m as ServerFrame);
          if (f.case === "event") return binaryEventFrame(pubs[0]!);
          if (f.case === "presence") return binaryPresenceFrame(pubs);
          return binaryEventsFrame(pubs.map(binaryEventFrame)); // spliced from the event frames
        },
        json: (m) => {
          const f = (m as ServerFrame).frame;
          if (f.case === "presence" && isCompact(f.value))
            return new TextDecoder().decode(compactFrameOf(f.value, Encoding.Json));
          const pubs = publicationsOf(m as ServerFrame);
          if (f.case === "event") return new TextDecoder().decode(jsonEventFrame(pubs[0]!));
          if (f.case === "presence") return new TextDecoder().decode(jsonPresenceFrame(pubs));
          return new TextDecoder().decode(jsonEventsFrame(pubs.map(jsonEventFrame)));
        },
      },
    },
  },
};

describe("wire coverage", () => {
  it("drives every hand codec the table lists, and lists every codec driven", () => {
    expect(Object.keys(ROOTS).sort()).toEqual(Object.keys(WIRE_COVERAGE).sort());
  });

  for (const [codec, coverage] of Object.entries(WIRE_COVERAGE)) {
    describe(codec, () => {
      it("lists every field of every message it reaches by hand, and nothing else", () => {
        expect(coverageGaps(codec, coverage)).toEqual([]);
      });

      it("handles a message with every field listed as hand set by hand, as protobuf-es does", () => {
        expect(handFailures(codec, coverage, ROOTS[codec]!)).toEqual([]);
      });

      it("leaves a message with a field listed as protobufEs set to protobuf-es", () => {
        expect(deferredFailures(codec, coverage, ROOTS[codec]!)).toEqual([]);
      });
    });
  }
});

/**
 * The roots of publication.ts from a copy of realtime.link.v1's descriptors
 * in which Publication has one more field, `uint64 priority = 9`: what
 * proto/ would hold if a field were added and publication.ts were not
 * taught it.
 */
function rootsWithPriority(): DescMessage[] {
  const file = clone(FileDescriptorProtoSchema, file_realtime_link_v1_link.proto);
  file.messageType
    .find((m) => m.name === "Publication")!
    .field.push(
      create(FieldDescriptorProtoSchema, {
        name: "priority",
        jsonName: "priority",
        number: 9,
        label: FieldDescriptorProto_Label.OPTIONAL,
        type: FieldDescriptorProto_Type.UINT64,
      }),
    );
  const imports = [file_realtime_client_v1_client, file_google_protobuf_struct];
  const registry = createFileRegistry(file, (name) => imports.find((f) => f.proto.name === name));
  return WIRE_COVERAGE["publication.ts"]!.roots.map((root) => registry.getMessage(root.typeName)!);
}

describe("wire coverage: the checks fail where they must", () => {
  const publication = WIRE_COVERAGE["publication.ts"]!;
  const modified = (messages: CodecCoverage["messages"]): CodecCoverage => ({ roots: rootsWithPriority(), messages });

  it("names a field added to a message and not listed", () => {
    expect(coverageGaps("publication.ts", modified(publication.messages))).toEqual([
      "publication.ts: realtime.link.v1.Publication field 9 (priority) is not in src/wire/coverage.ts: teach publication.ts the field and list it as hand, or list it as protobufEs (messages holding it go to protobuf-es)",
    ]);
  });

  it("names a listed field that the codec does not handle by hand", () => {
    const messages = { ...publication.messages, "realtime.link.v1.Publication": { hand: [1, 2, 3, 4, 5, 6, 7, 8, 9] } };
    const coverage = modified(messages);
    expect(coverageGaps("publication.ts", coverage)).toEqual([]);
    const failures = handFailures("publication.ts", coverage, ROOTS["publication.ts"]!);
    // Each root, encoded and decoded, misses the priority.
    for (const root of ["Publication", "HubFrame", "EdgeFrame"]) {
      expect(failures.some((f) => new RegExp(`v1\\.${root} [0-9a-f]+: encoded by hand as`).test(f))).toBe(true);
      expect(failures.some((f) => new RegExp(`v1\\.${root} [0-9a-f]+: fell back to fromBinary`).test(f))).toBe(true);
    }
  });

  it("names a field listed as protobufEs that the codec handles by hand", () => {
    const messages = {
      ...publication.messages,
      "realtime.link.v1.Publication": { hand: [1, 2, 3, 4, 6, 7, 8], protobufEs: [5] },
    };
    const failures = deferredFailures("publication.ts", { ...publication, messages }, ROOTS["publication.ts"]!);
    expect(failures.map((f) => f.replace(/ \([0-9a-f]+\)/, ""))).toEqual(
      ["Publication", "HubFrame", "EdgeFrame"].flatMap((root) =>
        ["encoded", "decoded"].map(
          (how) =>
            `publication.ts: realtime.link.v1.${root} with realtime.link.v1.Publication field 5 set: ${how} by hand, but listed as protobufEs`,
        ),
      ),
    );
  });

  it("names a listed field that does not exist", () => {
    const messages = {
      ...publication.messages,
      "realtime.link.v1.Publication": { hand: [1, 2, 3, 4, 5, 6, 7, 8, 10] },
    };
    expect(coverageGaps("publication.ts", { ...publication, messages })).toEqual([
      "publication.ts: src/wire/coverage.ts lists field 10 of realtime.link.v1.Publication, which has no such field",
    ]);
  });

  it("keeps fromBinary a spy here", () => {
    expect(vi.isMockFunction(fromBinary)).toBe(true);
  });
});
