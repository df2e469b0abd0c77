import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { EventSchema, MemberSchema, type Event, type Member } from "../../gen/realtime/client/v1/client_pb.js";
import type { Publication } from "./broker.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { encodeEventBinary, encodeEventJson, isApplicationEvent } from "../wire/event-codec.js";
import { illFormedField, illFormedMessage } from "../protocol/unicode.js";
import { varintSize } from "../wire/varint.js";

/** The payload of an application event, as the generated messages carry it. */
export type Payload = Event["payload"];

/** Longest prefix of an IdGenerator (the default is 8 characters of base64url). */
export const MAX_ID_PREFIX_LENGTH = 12;
/**
 * Longest id an IdGenerator makes, in bytes: its prefix, ".", and the
 * counter in base 36 (11 digits reach 2^53). The event size limit does not
 * count an event's id (a publisher cannot know it): this bounds what it
 * adds to a frame.
 */
export const MAX_EVENT_ID_BYTES = MAX_ID_PREFIX_LENGTH + 1 + 11;

/**
 * Creates event ids: unique across the service (a random prefix per process)
 * and cheap (a counter), so that ids cost nothing on the hot path. An id is
 * at most MAX_EVENT_ID_BYTES long (ASCII).
 */
export class IdGenerator {
  private readonly prefix: string;
  private counter = 0;
  constructor(prefix = randomBytes(6).toString("base64url")) {
    if (prefix.length > MAX_ID_PREFIX_LENGTH || !/^[\x21-\x7e]*$/.test(prefix))
      throw new Error(`an id prefix is at most ${MAX_ID_PREFIX_LENGTH} printable ASCII characters`);
    this.prefix = prefix;
  }
  next(): string {
    return `${this.prefix}.${(++this.counter).toString(36)}`;
  }
}

/**
 * Encodes event once in both client encodings: an application event with
 * the hand-written codec of event-codec.ts, a system event with protobuf-es.
 * Throws RESOURCE_EXHAUSTED when the event is larger than maxEventBytes,
 * counted as its publisher can: the protobuf binary encoding of the event
 * without its id (the channel, event name and payload fields; the id is the
 * service's, MAX_EVENT_ID_BYTES long at most). Throws INVALID_ARGUMENT when
 * its payload cannot be written as JSON (NaN, ±Infinity, a Value with no
 * kind) or holds a string that is not well-formed Unicode (a lone
 * surrogate: JSON and binary recipients would get different text; only a
 * JSON request can carry one). acceptedUnixMs: when the API accepted the
 * event (acceptedNow()); 0n, for events the API did not accept, leaves it
 * unmeasured.
 */
export function createPublication(
  event: Event,
  maxEventBytes: number,
  origin = "",
  skipOrigin = false,
  acceptedUnixMs = 0n,
): Publication {
  const application = isApplicationEvent(event);
  const bytes = application ? encodeEventBinary(event) : toBinary(EventSchema, event);
  const size = bytes.length - stringFieldSize(event.id);
  if (size > maxEventBytes) {
    throw new RealtimeError(
      Code.ResourceExhausted,
      `the event is ${size} bytes encoded (channel, event name and payload, protobuf binary); the limit is ${maxEventBytes} bytes: send a smaller payload`,
    );
  }
  const eventJson = application ? encodeEventJson(event) : toJsonString(EventSchema, event);
  const field = illFormedField(eventJson);
  if (field !== undefined) throw new RealtimeError(Code.InvalidArgument, illFormedMessage(field));
  return { channel: event.channel, event: bytes, eventJson, origin, skipOrigin, acceptedUnixMs };
}

/**
 * The accept time of an event the API accepts now (Publication.acceptedUnixMs):
 * this process's wall clock, in milliseconds since the Unix epoch. A wall
 * clock, not a monotonic one, because the edge that measures from it is
 * another process, possibly on another machine.
 */
export function acceptedNow(): bigint {
  return BigInt(Date.now());
}

/**
 * The delivery latency of a publication accepted at acceptedUnixMs (not 0n)
 * and written now, nowMs by this process's wall clock (Date.now()), in
 * seconds. Across machines it includes the clocks' skew; a negative one
 * (this clock behind the API's) is 0. Resolution: 1 ms.
 */
export function deliveryLatencySeconds(acceptedUnixMs: bigint, nowMs: number): number {
  const ms = nowMs - Number(acceptedUnixMs);
  return ms > 0 ? ms / 1000 : 0;
}

/** The size of a string field of a message (tag of one byte), 0 when empty (proto3 omits it). */
function stringFieldSize(value: string): number {
  if (value === "") return 0;
  const bytes = Buffer.byteLength(value);
  return 1 + varintSize(bytes) + bytes;
}

/** Throws INVALID_ARGUMENT unless the payload is set. */
export function checkPayload(payload: Payload, field = "payload"): void {
  if (payload.case !== "json" && payload.case !== "binary") {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is required: set "json" (any JSON value) or "binary" (bytes)`,
    );
  }
}

/** Builds the system event (channel:join/leave/update) about member. */
export function systemEvent(id: string, channel: string, name: string, member: Member): Event {
  return create(EventSchema, {
    id,
    channel,
    event: name,
    payload: {
      case: "member",
      value: create(MemberSchema, { id: member.id, data: member.data, userId: member.userId }),
    },
  });
}
