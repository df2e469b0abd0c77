import type { DescMessage } from "@bufbuild/protobuf";
import { ListValueSchema, StructSchema, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  EventSchema,
  EventsSchema,
  PresenceSchema,
  ServerFrameSchema,
} from "../../gen/realtime/client/v1/client_pb.js";
import { EdgeFrameSchema, HubFrameSchema, PublicationSchema } from "../../gen/realtime/link/v1/link_pb.js";
import {
  BroadcastRequestSchema,
  PublishRequestSchema,
  SendBatchRequestSchema,
  SendRequestSchema,
} from "../../gen/realtime/v1/realtime_pb.js";

/**
 * What each hand codec of src/wire/ handles, field by field, so that a
 * field added to proto/ cannot be silently missed by one: for each codec,
 * the messages its entry points take or give (its roots) and, for every
 * message it reads or writes by hand from them, each field number, listed
 * as handled by hand, as copied already encoded, or as left to protobuf-es.
 *
 * test/wire-coverage.test.ts walks the descriptors of gen/ from each
 * codec's roots, through every field handled by hand, and fails naming the
 * message and the field when a field exists that is listed nowhere here, a
 * number listed here does not exist, or a message is reached that has no
 * entry (or has one but is not reached). It then builds, from the
 * descriptors, messages with every field listed `hand` set, and fails
 * unless the codec handles them by hand exactly as protobuf-es does; and
 * messages with a field listed `protobufEs` set, and fails unless the codec
 * leaves them to protobuf-es. So a new field fails a test until someone
 * teaches the codec the field (and lists it `hand`) or decides that
 * messages holding it go to protobuf-es (and lists it `protobufEs`).
 *
 * client-json.ts is not listed: it leaves nothing to protobuf-es, and
 * handles every field of the client protocol from a table of its own
 * (MESSAGES), which test/client-json.test.ts holds against the same
 * descriptors.
 */
export interface MessageCoverage {
  /** Fields the codec reads or writes itself; message fields among them are walked into. */
  readonly hand: readonly number[];
  /**
   * Message fields written by hand from bytes another codec already
   * encoded (ServerFrame.event: the event-codec's bytes, copied): not
   * walked into here.
   */
  readonly encoded?: readonly number[];
  /**
   * Fields the codec leaves to protobuf-es: a message that holds one is
   * encoded or decoded by protobuf-es whole (a system event's member; the
   * link's replies, hello and presence frames).
   */
  readonly protobufEs?: readonly number[];
}

export interface CodecCoverage {
  /** The messages the codec's entry points take or give. */
  readonly roots: readonly DescMessage[];
  /** Every message the codec handles by hand from its roots, by type name. */
  readonly messages: Readonly<Record<string, MessageCoverage>>;
}

/** google.protobuf.Value and what it holds, encoded (event-codec) and decoded (request-codec) by hand. */
const VALUE_TREE: Readonly<Record<string, MessageCoverage>> = {
  [ValueSchema.typeName]: { hand: [1, 2, 3, 4, 5, 6] }, // null, number, string, bool, struct, list
  [StructSchema.typeName]: { hand: [1] }, // fields (a map<string, Value>)
  [ListValueSchema.typeName]: { hand: [1] }, // values
};

/** Each hand codec, by its file in src/wire/. */
export const WIRE_COVERAGE: Readonly<Record<string, CodecCoverage>> = {
  "event-codec.ts": {
    roots: [EventSchema],
    messages: {
      // channel, event, json, binary, id, offset, epoch; a member payload is a system event (protobuf-es).
      [EventSchema.typeName]: { hand: [1, 2, 3, 4, 6, 7, 8], protobufEs: [5] },
      ...VALUE_TREE,
    },
  },
  "request-codec.ts": {
    roots: [PublishRequestSchema, SendRequestSchema, BroadcastRequestSchema, SendBatchRequestSchema],
    messages: {
      [PublishRequestSchema.typeName]: { hand: [1, 2] }, // send, broadcast
      // channel, event, json, binary, idempotency_key, user_id, exclude_connection_id
      [SendRequestSchema.typeName]: { hand: [1, 2, 3, 4, 5, 6, 7] },
      // event, json, binary, idempotency_key, exclude_connection_id
      [BroadcastRequestSchema.typeName]: { hand: [1, 2, 3, 4, 5] },
      [SendBatchRequestSchema.typeName]: { hand: [1] }, // requests
      ...VALUE_TREE,
    },
  },
  "publication.ts": {
    roots: [PublicationSchema, HubFrameSchema, EdgeFrameSchema],
    messages: {
      // channel, event, event_json, origin, skip_origin, offset, epoch, accepted_unix_ms
      [PublicationSchema.typeName]: { hand: [1, 2, 3, 4, 5, 6, 7, 8] },
      [HubFrameSchema.typeName]: { hand: [1], protobufEs: [2, 3] }, // publication; reply, challenge
      // id, publish; hello, subscribe, unsubscribe, presence_add, presence_remove, members, synced, members_page,
      // history, presence_departed
      [EdgeFrameSchema.typeName]: { hand: [1, 5], protobufEs: [2, 3, 4, 6, 7, 8, 9, 10, 11, 12] },
    },
  },
  "client-codec.ts": {
    // binaryEventFrame, jsonEventFrame: the ServerFrame of an event; binaryPresenceFrame, jsonPresenceFrame:
    // of a presence (events already encoded); compactPresenceFrame: of a compact presence (changes encoded); binaryEventsFrame, jsonEventsFrame: of several events (spliced
    // from their event frames); the other frames are protobuf-es's.
    roots: [ServerFrameSchema],
    messages: {
      // presence, events; event; connected, reply, resync, subscribed, unsubscribed
      [ServerFrameSchema.typeName]: { hand: [5, 8], encoded: [3], protobufEs: [1, 2, 4, 6, 7] },
      // channel, epoch, first_offset (the compact form); events, changes (each encoded once, then spliced)
      [PresenceSchema.typeName]: { hand: [2, 3, 4], encoded: [1, 5] },
      [EventsSchema.typeName]: { hand: [], encoded: [1] }, // events
    },
  },
};
