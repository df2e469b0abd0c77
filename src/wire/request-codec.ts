import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { ListValue, Struct, Value } from "@bufbuild/protobuf/wkt";
import {
  BroadcastRequestSchema,
  PublishRequestSchema,
  SendBatchRequestSchema,
  SendRequestSchema,
  type BroadcastRequest,
  type PublishRequest,
  type SendBatchRequest,
  type SendRequest,
} from "../../gen/realtime/v1/realtime_pb.js";
import { decodeString } from "./utf8.js";
import { readVarint32, type Cursor } from "./varint.js";

/**
 * The publish requests of realtime.v1 (PublishRequest, SendRequest,
 * BroadcastRequest, SendBatchRequest) decoded from protobuf binary by hand:
 * every published event is decoded once on the hot path of the publish RPCs,
 * where protobuf-es's reflective `fromBinary` costs more than the rest of the
 * decode (most of it in the google.protobuf.Value tree). The counterpart of
 * the hand-written encoders in event-codec.ts and publication.ts.
 *
 * Only the canonical shape is decoded here: the known fields with their
 * wire types, each at most once (at most one member of a oneof), one-byte
 * tags, lengths of at most four varint bytes that stay inside the enclosing
 * message, map entries as key then value, null_value 0 and bool_value 0 or
 * 1 as one byte, no unknown fields, no "__proto__" map key, strings that
 * are valid UTF-8, and nesting within protobuf-es's recursion limit. On
 * anything else the whole top-level message goes to `fromBinary` instead,
 * which gives its usual result or throws its usual error; so the result is
 * always what `fromBinary(Schema, bytes)` returns (`equals` holds), and
 * test/request-codec.test.ts checks that against protobuf-es.
 *
 * The messages are built as protobuf-es builds them: plain objects with
 * `$typeName`, the same properties in the same order, oneof members set even
 * when default, Struct fields assigned in wire order into a plain object
 * (a repeated key: the last value, at the first key's place), strings
 * decoded as protobuf-es decodes them (a leading BOM dropped). One
 * deliberate difference: a `binary` payload is a copy, where protobuf-es
 * returns a view into `bytes` (which grpc-js may reuse).
 *
 * Why the fallback is not a silent slow path: src/wire/coverage.ts lists
 * every field of these messages (and of Value, Struct and ListValue) as
 * decoded here, and test/wire-coverage.test.ts fails, naming the message
 * and the field, when our proto gains a field that it does not list, or
 * when a request with every listed field set is not decoded here. A field
 * added to proto/ cannot be absorbed by `fromBinary` unnoticed: what
 * reaches it is only what protobuf-es itself never writes (a field twice,
 * non-minimal values, unknown fields from a newer client, bad bytes).
 */

/** realtime.v1.PublishRequest from protobuf binary; throws where fromBinary throws. */
export function decodePublishRequest(bytes: Uint8Array): PublishRequest {
  return decode(bytes, PublishRequestSchema, publishRequest);
}

/** realtime.v1.SendRequest from protobuf binary; throws where fromBinary throws. */
export function decodeSendRequest(bytes: Uint8Array): SendRequest {
  return decode(bytes, SendRequestSchema, sendRequest);
}

/** realtime.v1.BroadcastRequest from protobuf binary; throws where fromBinary throws. */
export function decodeBroadcastRequest(bytes: Uint8Array): BroadcastRequest {
  return decode(bytes, BroadcastRequestSchema, broadcastRequest);
}

/** realtime.v1.SendBatchRequest from protobuf binary; throws where fromBinary throws. */
export function decodeSendBatchRequest(bytes: Uint8Array): SendBatchRequest {
  return decode(bytes, SendBatchRequestSchema, sendBatchRequest);
}

/**
 * The decoders by message type name, as the gRPC adapter's
 * `requestDecoders` option takes them.
 */
export const REQUEST_DECODERS: Readonly<Record<string, (bytes: Uint8Array) => unknown>> = {
  [PublishRequestSchema.typeName]: decodePublishRequest,
  [SendRequestSchema.typeName]: decodeSendRequest,
  [BroadcastRequestSchema.typeName]: decodeBroadcastRequest,
  [SendBatchRequestSchema.typeName]: decodeSendBatchRequest,
};

/** protobuf-es's default recursion limit: the top-level message is depth 1. */
const RECURSION_LIMIT = 100;

/**
 * Thrown (never outside this module) where the bytes are not the canonical
 * shape: the caller hands them to fromBinary. One instance, so throwing it
 * costs no stack trace.
 */
const notCanonical = new Error("request-codec: not the canonical shape");

// The decoder's state, for one top-level decode at a time (decoding is
// synchronous and calls nothing that could decode again).
let buf: Uint8Array = new Uint8Array(0);
let depth = 0;
/** The read position in buf (a cursor: readVarint32 moves it). */
const at: Cursor = { pos: 0 };

function decode<Desc extends DescMessage>(
  bytes: Uint8Array,
  schema: Desc,
  body: (end: number) => MessageShape<Desc>,
): MessageShape<Desc> {
  buf = bytes;
  at.pos = 0;
  depth = 1;
  try {
    return body(bytes.length);
  } catch {
    // notCanonical, or anything else the fast path met: protobuf-es decides.
    return fromBinary(schema, bytes);
  } finally {
    buf = EMPTY; // keep no reference to the caller's bytes
  }
}

const EMPTY = new Uint8Array(0);

// Each reader below decodes the fields of one message from pos up to end,
// where end is checked (by the caller) to lie within the enclosing message,
// and leaves pos at end.

function publishRequest(end: number): PublishRequest {
  let event: PublishRequest["event"] = { case: undefined };
  while (at.pos < end) {
    if (event.case !== undefined) throw notCanonical; // a oneof member twice
    const tag = buf[at.pos++];
    if (tag === 0x0a)
      event = { case: "send", value: sendRequest(nested(end)) }; // 1 send
    else if (tag === 0x12)
      event = { case: "broadcast", value: broadcastRequest(nested(end)) }; // 2 broadcast
    else throw notCanonical;
  }
  return { $typeName: "realtime.v1.PublishRequest", event };
}

function sendRequest(end: number): SendRequest {
  let channel = "";
  let event = "";
  let payload: SendRequest["payload"] = { case: undefined };
  let idempotencyKey = "";
  let userId = "";
  let excludeConnectionId = "";
  let seen = 0; // a bit a field (the payload oneof as one)
  while (at.pos < end) {
    const tag = buf[at.pos++];
    if (tag === 0x0a && !(seen & 1)) {
      seen |= 1;
      channel = string(end); // 1 channel
    } else if (tag === 0x12 && !(seen & 2)) {
      seen |= 2;
      event = string(end); // 2 event
    } else if ((tag === 0x1a || tag === 0x22) && !(seen & 4)) {
      seen |= 4;
      payload = eventPayload(tag === 0x1a, end); // 3 json, 4 binary
    } else if (tag === 0x2a && !(seen & 8)) {
      seen |= 8;
      idempotencyKey = string(end); // 5 idempotency_key
    } else if (tag === 0x32 && !(seen & 16)) {
      seen |= 16;
      userId = string(end); // 6 user_id
    } else if (tag === 0x3a && !(seen & 32)) {
      seen |= 32;
      excludeConnectionId = string(end); // 7 exclude_connection_id
    } else {
      throw notCanonical; // another field, or one again
    }
  }
  depth--;
  return {
    $typeName: "realtime.v1.SendRequest",
    channel,
    event,
    payload,
    idempotencyKey,
    userId,
    excludeConnectionId,
  };
}

function broadcastRequest(end: number): BroadcastRequest {
  let event = "";
  let payload: BroadcastRequest["payload"] = { case: undefined };
  let idempotencyKey = "";
  let excludeConnectionId = "";
  let seen = 0;
  while (at.pos < end) {
    const tag = buf[at.pos++];
    if (tag === 0x0a && !(seen & 1)) {
      seen |= 1;
      event = string(end); // 1 event
    } else if ((tag === 0x12 || tag === 0x1a) && !(seen & 2)) {
      seen |= 2;
      payload = eventPayload(tag === 0x12, end); // 2 json, 3 binary
    } else if (tag === 0x22 && !(seen & 4)) {
      seen |= 4;
      idempotencyKey = string(end); // 4 idempotency_key
    } else if (tag === 0x2a && !(seen & 8)) {
      seen |= 8;
      excludeConnectionId = string(end); // 5 exclude_connection_id
    } else {
      throw notCanonical;
    }
  }
  depth--;
  return { $typeName: "realtime.v1.BroadcastRequest", event, payload, idempotencyKey, excludeConnectionId };
}

/** The payload oneof of SendRequest and BroadcastRequest, its tag read. */
function eventPayload(json: boolean, end: number): SendRequest["payload"] & BroadcastRequest["payload"] {
  return json ? { case: "json", value: value(nested(end)) } : { case: "binary", value: bytesField(end) };
}

function sendBatchRequest(end: number): SendBatchRequest {
  const requests: SendRequest[] = [];
  while (at.pos < end) {
    if (buf[at.pos++] !== 0x0a) throw notCanonical; // 1 requests
    requests.push(sendRequest(nested(end)));
  }
  return { $typeName: "realtime.v1.SendBatchRequest", requests };
}

/** A google.protobuf.Value: at most one field, its kind. */
function value(end: number): Value {
  let kind: Value["kind"];
  if (at.pos === end) {
    kind = { case: undefined };
  } else {
    const tag = buf[at.pos++];
    switch (tag) {
      case 0x08: // 1 null_value, varint: NULL_VALUE (0) in one byte only
        if (at.pos >= end || buf[at.pos] !== 0) throw notCanonical;
        at.pos++;
        kind = { case: "nullValue", value: 0 };
        break;
      case 0x11: // 2 number_value, 64-bit
        if (end - at.pos < 8) throw notCanonical;
        kind = { case: "numberValue", value: double() };
        break;
      case 0x1a: // 3 string_value
        kind = { case: "stringValue", value: string(end) };
        break;
      case 0x20: {
        // 4 bool_value, varint: 0 or 1 in one byte only
        const b = at.pos < end ? buf[at.pos] : 2;
        if (b > 1) throw notCanonical;
        at.pos++;
        kind = { case: "boolValue", value: b === 1 };
        break;
      }
      case 0x2a: // 5 struct_value
        kind = { case: "structValue", value: struct(nested(end)) };
        break;
      case 0x32: // 6 list_value
        kind = { case: "listValue", value: list(nested(end)) };
        break;
      default:
        throw notCanonical;
    }
    if (at.pos !== end) throw notCanonical; // a second field
  }
  depth--;
  return { $typeName: "google.protobuf.Value", kind };
}

function struct(end: number): Struct {
  // protobuf-es assigns each entry into a fresh {} in wire order: a repeated
  // key keeps its first place and takes the last value, as here.
  const fields: { [key: string]: Value } = {};
  while (at.pos < end) {
    if (buf[at.pos++] !== 0x0a) throw notCanonical; // 1 fields, one map entry
    const entryEnd = length(end);
    if (at.pos >= entryEnd || buf[at.pos++] !== 0x0a) throw notCanonical; // entry key
    const key = string(entryEnd);
    if (at.pos >= entryEnd || buf[at.pos++] !== 0x12) throw notCanonical; // entry value
    const item = value(nested(entryEnd));
    if (at.pos !== entryEnd) throw notCanonical;
    // Assigning "__proto__" would set the object's prototype: leave that
    // to protobuf-es.
    if (key === "__proto__") throw notCanonical;
    fields[key] = item;
  }
  depth--;
  return { $typeName: "google.protobuf.Struct", fields };
}

function list(end: number): ListValue {
  const values: Value[] = [];
  while (at.pos < end) {
    if (buf[at.pos++] !== 0x0a) throw notCanonical; // 1 values
    values.push(value(nested(end)));
  }
  depth--;
  return { $typeName: "google.protobuf.ListValue", values };
}

/**
 * The length of a length-delimited field, at most four varint bytes (under
 * 256 MiB), within end; returns the position after the data.
 */
function length(end: number): number {
  const len = readVarint32(buf, at, end, MAX_LENGTH_BYTES);
  if (len < 0 || len > end - at.pos) throw notCanonical; // VARINT_INCOMPLETE or _INVALID, or too long
  return at.pos + len;
}

/** The most varint bytes of a length decoded here (a length under 256 MiB). */
const MAX_LENGTH_BYTES = 4;

/** The end of an embedded message within end, one level deeper. */
function nested(end: number): number {
  const messageEnd = length(end);
  if (++depth > RECURSION_LIMIT) throw notCanonical;
  return messageEnd;
}

function bytesField(end: number): Uint8Array {
  const dataEnd = length(end);
  const data = new Uint8Array(buf.subarray(at.pos, dataEnd)); // a copy, even of a Buffer
  at.pos = dataEnd;
  return data;
}

/** A string field, as protobuf-es reads a proto3 string (utf8.ts). */
function string(end: number): string {
  const stringEnd = length(end);
  const start = at.pos;
  at.pos = stringEnd;
  return decodeString(buf, start, stringEnd);
}

const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

/** A little-endian double at pos (8 bytes there, checked by the caller). */
function double(): number {
  for (let i = 0; i < 8; i++) scratch[i] = buf[at.pos + i];
  at.pos += 8;
  return scratchView.getFloat64(0, true);
}
