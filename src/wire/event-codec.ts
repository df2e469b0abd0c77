import type { UnknownField } from "@bufbuild/protobuf";
import type { ListValue, Struct, Value } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../gen/realtime/client/v1/client_pb.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { SYSTEM_EVENT_PREFIX } from "../protocol/system-events.js";
import {
  int32VarintSize,
  readVarint32,
  varint64Size,
  varintSize,
  writeInt32Varint,
  writeVarint,
  writeVarint64,
} from "./varint.js";

/**
 * realtime.client.v1.Event with an application payload (json or binary), in
 * both client encodings, written by hand: every published event is encoded
 * once per encoding on the hot path of the publish RPCs, where protobuf-es's
 * reflective encoders cost more than the rest of the publish (most of it in
 * the google.protobuf.Value tree). The output is exactly what protobuf-es
 * writes, and test/event-codec.test.ts checks that against it:
 * - binary: byte for byte `toBinary(EventSchema, event)`: fields in number
 *   order, proto3 defaults omitted but oneof members written even when
 *   default, map entries in the key order of `Object.keys`, unknown fields
 *   kept after the known ones, strings as UTF-8 with lone surrogates as
 *   U+FFFD;
 * - JSON: character for character `toJsonString(EventSchema, event)`.
 * System events (a Member payload) stay with protobuf-es: the caller asks
 * isApplicationEvent (src/core/publication.ts). src/wire/coverage.ts lists
 * the fields written here, and test/wire-coverage.test.ts fails when Event
 * or the Value tree gains one that is not listed, or when an event with
 * every listed field set is not written here as protobuf-es writes it.
 */

/** An Event whose payload is an application payload: json or binary. */
export type ApplicationEvent = Event & { payload: Extract<Event["payload"], { case: "json" | "binary" }> };

/** Whether this codec encodes event (its payload is json or binary). */
export function isApplicationEvent(event: Event): event is ApplicationEvent {
  return event.payload.case === "json" || event.payload.case === "binary";
}

/**
 * event in protobuf binary. Never throws for a well-formed message: NaN,
 * ±Infinity and a Value with no kind are valid in binary.
 */
export function encodeEventBinary(event: ApplicationEvent): Buffer {
  const lens: number[] = [];
  const out = Buffer.allocUnsafe(measureEvent(event, lens));
  new Writer(out, lens).event(event);
  return out;
}

/**
 * event in protobuf's canonical JSON mapping. Throws INVALID_ARGUMENT where
 * JSON cannot carry the payload (protobuf-es throws a plain Error there):
 * a number that is NaN or ±Infinity, or a Value with no kind set.
 */
export function encodeEventJson(event: ApplicationEvent): string {
  let json = "{";
  if (event.channel !== "") json += `"channel":${JSON.stringify(event.channel)},`;
  if (event.event !== "") json += `"event":${JSON.stringify(event.event)},`;
  const payload = event.payload;
  if (payload.case === "json") json += `"json":${valueJson(payload.value)},`;
  else
    json += `"binary":"${Buffer.from(payload.value.buffer, payload.value.byteOffset, payload.value.byteLength).toString("base64")}",`;
  if (event.id !== "") json += `"id":${JSON.stringify(event.id)},`;
  if (event.offset !== 0n) json += `"offset":"${event.offset}",`;
  if (event.epoch !== "") json += `"epoch":${JSON.stringify(event.epoch)},`;
  return json.slice(0, -1) + "}";
}

/** The bytes every system event's name starts with (SYSTEM_EVENT_PREFIX, "channel:"). */
const SYSTEM_NAME = Buffer.from(SYSTEM_EVENT_PREFIX);

/**
 * Whether event (an Event in protobuf binary, as a Publication carries it)
 * is a system event: its name, field 2 after the channel, field 1, starts
 * with SYSTEM_EVENT_PREFIX, which no one may send. Reads a few bytes, so
 * that an edge can tell for every publication it delivers; false for
 * anything that is not in the canonical field order our encoders write.
 */
export function isSystemEventBytes(event: Uint8Array): boolean {
  const at = { pos: 0 };
  const end = event.length;
  if (event[0] === 0x0a) {
    at.pos = 1;
    const len = readVarint32(event, at, end);
    at.pos += len;
  }
  if (event[at.pos] !== 0x12) return false;
  at.pos++;
  const len = readVarint32(event, at, end);
  if (len < SYSTEM_NAME.length || at.pos + SYSTEM_NAME.length > end) return false;
  for (let i = 0; i < SYSTEM_NAME.length; i++) if (event[at.pos + i] !== SYSTEM_NAME[i]) return false;
  return true;
}

/**
 * The event's bytes with its position (Event.offset, Event.epoch) appended:
 * what toBinary writes for the event with them set, given the bytes of the
 * event without them and without unknown fields (what encodeEventBinary and
 * protobuf-es write for the events the service makes). An edge gives each
 * publication its position this way, once, for all its recipients.
 */
export function appendPositionBinary(event: Uint8Array, offset: bigint, epoch: string): Buffer {
  const epochBytes = Buffer.byteLength(epoch);
  const size =
    event.length +
    (offset !== 0n ? 1 + varint64Size(offset) : 0) +
    (epochBytes > 0 ? 1 + varintSize(epochBytes) + epochBytes : 0);
  const out = Buffer.allocUnsafe(size);
  out.set(event, 0);
  let pos = event.length;
  if (offset !== 0n) {
    out[pos++] = 0x38; // 7 offset, varint
    pos = writeVarint64(out, pos, offset);
  }
  if (epochBytes > 0) {
    out[pos++] = 0x42; // 8 epoch
    pos = writeVarint(out, pos, epochBytes);
    out.write(epoch, pos, "utf8");
  }
  return out;
}

/**
 * The event's JSON with its position appended: what toJsonString writes for
 * the event with them set, given the JSON of the event without them
 * (protobuf's JSON mapping writes fields in field order, and these are the
 * last two). A uint64 is a JSON string.
 */
export function appendPositionJson(eventJson: string, offset: bigint, epoch: string): string {
  let tail = "";
  if (offset !== 0n) tail += `,"offset":"${offset}"`;
  if (epoch !== "") tail += `,"epoch":${JSON.stringify(epoch)}`;
  if (tail === "") return eventJson;
  return eventJson.length > 2 ? eventJson.slice(0, -1) + tail + "}" : "{" + tail.slice(1) + "}";
}

// Binary: a measure pass, then one write into a buffer of exactly that size.
// The measure pass pushes onto `lens`, in the order the writer needs them,
// the byte length of every length-delimited thing (strings, messages), so
// that nothing is measured twice.

function measureEvent(event: ApplicationEvent, lens: number[]): number {
  let size = stringField(event.channel, lens) + stringField(event.event, lens);
  const payload = event.payload;
  if (payload.case === "json") size += messageField(measureValue(payload.value, lens));
  else size += 1 + varintSize(payload.value.length) + payload.value.length;
  size += stringField(event.id, lens);
  if (event.offset !== 0n) size += 1 + varint64Size(event.offset);
  return size + stringField(event.epoch, lens) + unknownSize(event.$unknown);
}

function stringField(value: string, lens: number[]): number {
  if (value === "") return 0;
  const bytes = Buffer.byteLength(value);
  lens.push(bytes);
  return 1 + varintSize(bytes) + bytes;
}

/** The size of a length-delimited field (tag of one byte) of body bytes. */
function messageField(body: number): number {
  return 1 + varintSize(body) + body;
}

function measureValue(value: Value, lens: number[]): number {
  const slot = lens.push(0) - 1;
  const kind = value.kind;
  let size = 0;
  switch (kind.case) {
    case "nullValue":
      size = 1 + int32VarintSize(kind.value);
      break;
    case "numberValue":
      size = 9;
      break;
    case "stringValue": {
      const bytes = Buffer.byteLength(kind.value);
      lens.push(bytes);
      size = 1 + varintSize(bytes) + bytes;
      break;
    }
    case "boolValue":
      size = 2;
      break;
    case "structValue":
      size = messageField(measureStruct(kind.value, lens));
      break;
    case "listValue":
      size = messageField(measureList(kind.value, lens));
      break;
    // No kind set: an empty message, as protobuf-es writes it.
  }
  size += unknownSize(value.$unknown);
  lens[slot] = size;
  return size;
}

function measureStruct(struct: Struct, lens: number[]): number {
  const slot = lens.push(0) - 1;
  const fields = struct.fields;
  let size = 0;
  for (const key of Object.keys(fields)) {
    const keyBytes = Buffer.byteLength(key);
    lens.push(keyBytes);
    size += messageField(entrySize(keyBytes, measureValue(fields[key]!, lens)));
  }
  size += unknownSize(struct.$unknown);
  lens[slot] = size;
  return size;
}

/** A map<string, Value> entry: key = 1 and value = 2, both always written. */
function entrySize(keyBytes: number, valueBytes: number): number {
  return 1 + varintSize(keyBytes) + keyBytes + messageField(valueBytes);
}

function measureList(list: ListValue, lens: number[]): number {
  const slot = lens.push(0) - 1;
  let size = 0;
  for (const item of list.values) size += messageField(measureValue(item, lens));
  size += unknownSize(list.$unknown);
  lens[slot] = size;
  return size;
}

function unknownSize(unknown: UnknownField[] | undefined): number {
  if (unknown === undefined) return 0;
  let size = 0;
  for (const field of unknown) size += varintSize(tagOf(field)) + field.data.length;
  return size;
}

function tagOf(field: UnknownField): number {
  return ((field.no << 3) | field.wireType) >>> 0;
}

/** Writes what measureEvent measured, taking the lengths in the same order. */
class Writer {
  private pos = 0;
  private next = 0;
  constructor(
    private readonly out: Buffer,
    private readonly lens: number[],
  ) {}

  event(event: ApplicationEvent): void {
    this.string(0x0a, event.channel); // 1 channel
    this.string(0x12, event.event); // 2 event
    const payload = event.payload;
    if (payload.case === "json") {
      this.out[this.pos++] = 0x1a; // 3 json
      this.value(payload.value);
    } else {
      this.out[this.pos++] = 0x22; // 4 binary
      this.varint(payload.value.length);
      this.out.set(payload.value, this.pos);
      this.pos += payload.value.length;
    }
    this.string(0x32, event.id); // 6 id
    if (event.offset !== 0n) {
      this.out[this.pos++] = 0x38; // 7 offset, varint
      this.pos = writeVarint64(this.out, this.pos, event.offset);
    }
    this.string(0x42, event.epoch); // 8 epoch
    this.unknown(event.$unknown);
  }

  /** A google.protobuf.Value, length first; its tag is written already. */
  private value(value: Value): void {
    this.varint(this.lens[this.next++]!);
    const kind = value.kind;
    switch (kind.case) {
      case "nullValue":
        this.out[this.pos++] = 0x08; // 1 null_value, varint
        this.pos = writeInt32Varint(this.out, this.pos, kind.value);
        break;
      case "numberValue":
        this.out[this.pos++] = 0x11; // 2 number_value, 64-bit
        this.pos = this.out.writeDoubleLE(kind.value, this.pos);
        break;
      case "stringValue":
        this.out[this.pos++] = 0x1a; // 3 string_value
        this.varint(this.lens[this.next++]!);
        this.pos += this.out.write(kind.value, this.pos, "utf8");
        break;
      case "boolValue":
        this.out[this.pos++] = 0x20; // 4 bool_value, varint
        this.out[this.pos++] = kind.value ? 1 : 0;
        break;
      case "structValue":
        this.out[this.pos++] = 0x2a; // 5 struct_value
        this.struct(kind.value);
        break;
      case "listValue":
        this.out[this.pos++] = 0x32; // 6 list_value
        this.list(kind.value);
        break;
    }
    this.unknown(value.$unknown);
  }

  private struct(struct: Struct): void {
    this.varint(this.lens[this.next++]!);
    const fields = struct.fields;
    for (const key of Object.keys(fields)) {
      const keyBytes = this.lens[this.next++]!;
      this.out[this.pos++] = 0x0a; // 1 fields, one map entry
      this.varint(entrySize(keyBytes, this.lens[this.next]!)); // the value's length is next
      this.out[this.pos++] = 0x0a; // entry key
      this.varint(keyBytes);
      this.pos += this.out.write(key, this.pos, "utf8");
      this.out[this.pos++] = 0x12; // entry value
      this.value(fields[key]!);
    }
    this.unknown(struct.$unknown);
  }

  private list(list: ListValue): void {
    this.varint(this.lens[this.next++]!);
    for (const item of list.values) {
      this.out[this.pos++] = 0x0a; // 1 values
      this.value(item);
    }
    this.unknown(list.$unknown);
  }

  /** A string field, omitted when empty (proto3 implicit presence). */
  private string(tag: number, value: string): void {
    if (value === "") return;
    this.out[this.pos++] = tag;
    this.varint(this.lens[this.next++]!);
    this.pos += this.out.write(value, this.pos, "utf8");
  }

  private unknown(unknown: UnknownField[] | undefined): void {
    if (unknown === undefined) return;
    for (const field of unknown) {
      this.varint(tagOf(field));
      this.out.set(field.data, this.pos);
      this.pos += field.data.length;
    }
  }

  /** An unsigned varint of at most 32 bits. */
  private varint(n: number): void {
    this.pos = writeVarint(this.out, this.pos, n);
  }
}

// JSON: protobuf-es builds a plain object and JSON.stringify()s it; this
// writes the same text directly.

function valueJson(value: Value): string {
  const kind = value.kind;
  switch (kind.case) {
    case "nullValue":
      return "null";
    case "numberValue":
      if (!Number.isFinite(kind.value)) {
        throw new RealtimeError(
          Code.InvalidArgument,
          "payload holds NaN or Infinity, which JSON cannot carry: send a finite number",
        );
      }
      return String(kind.value); // what JSON.stringify writes for a finite number, -0 as 0
    case "stringValue":
      return JSON.stringify(kind.value); // escapes lone surrogates as \udxxx
    case "boolValue":
      return kind.value ? "true" : "false";
    case "structValue":
      return structJson(kind.value);
    case "listValue": {
      let json = "[";
      for (const item of kind.value.values) json += `${valueJson(item)},`;
      return json.length === 1 ? "[]" : json.slice(0, -1) + "]";
    }
    default:
      throw new RealtimeError(
        Code.InvalidArgument,
        "payload holds a google.protobuf.Value with no kind set, which JSON cannot carry: set one of null_value, number_value, string_value, bool_value, struct_value or list_value",
      );
  }
}

function structJson(struct: Struct): string {
  const fields = struct.fields;
  let json = "{";
  for (const key of Object.keys(fields)) {
    const value = valueJson(fields[key]!);
    // protobuf-es assigns each key to a fresh {}, where "__proto__" sets the
    // prototype instead of a property, so JSON.stringify drops it (after
    // the value is checked: a NaN under it still throws).
    if (key === "__proto__") continue;
    json += `${JSON.stringify(key)}:${value},`;
  }
  return json.length === 1 ? "{}" : json.slice(0, -1) + "}";
}
