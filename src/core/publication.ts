import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { EventSchema, MemberSchema, type Event, type Member } from "../../gen/realtime/client/v1/client_pb.js";
import type { Publication } from "./broker.js";
import { Code, RealtimeError } from "./errors.js";
import { encodeEventBinary, encodeEventJson, isApplicationEvent } from "./event-codec.js";
import { illFormedField, illFormedMessage } from "./unicode.js";

/** The payload of an application event, as the generated messages carry it. */
export type Payload = Event["payload"];

/**
 * Creates event ids: unique across the service (a random prefix per process)
 * and cheap (a counter), so that ids cost nothing on the hot path.
 */
export class IdGenerator {
  private readonly prefix: string;
  private counter = 0;
  constructor(prefix = randomBytes(6).toString("base64url")) {
    this.prefix = prefix;
  }
  next(): string {
    return `${this.prefix}.${(++this.counter).toString(36)}`;
  }
}

/**
 * Encodes event once in both client encodings: an application event with
 * the hand-written codec of event-codec.ts, a system event with protobuf-es.
 * Throws RESOURCE_EXHAUSTED when the encoded event is larger than
 * maxEventBytes, and INVALID_ARGUMENT when its payload cannot be written as
 * JSON (NaN, ±Infinity, a Value with no kind) or holds a string that is not
 * well-formed Unicode (a lone surrogate: JSON and binary recipients would
 * get different text; only a JSON request can carry one).
 */
export function createPublication(event: Event, maxEventBytes: number, origin = "", skipOrigin = false): Publication {
  const application = isApplicationEvent(event);
  const bytes = application ? encodeEventBinary(event) : toBinary(EventSchema, event);
  if (bytes.length > maxEventBytes) {
    throw new RealtimeError(
      Code.ResourceExhausted,
      `the event is ${bytes.length} bytes encoded; the limit is ${maxEventBytes} bytes: send a smaller payload`,
    );
  }
  const eventJson = application ? encodeEventJson(event) : toJsonString(EventSchema, event);
  const field = illFormedField(eventJson);
  if (field !== undefined) throw new RealtimeError(Code.InvalidArgument, illFormedMessage(field));
  return { channel: event.channel, event: bytes, eventJson, origin, skipOrigin };
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
