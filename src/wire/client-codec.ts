import { create, fromBinary, fromJson, toBinary, toJsonString, type JsonValue } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  ClientFrameSchema,
  EventSchema,
  PresenceChangeSchema,
  ServerFrameSchema,
  type ClientFrame,
  type ServerFrame,
} from "../../gen/realtime/client/v1/client_pb.js";
import type { Publication } from "./publication.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { Encoding } from "../protocol/encodings.js";
import { illFormedField, illFormedMessage } from "../protocol/unicode.js";
import { varint64Size, varintSize, writeVarint, writeVarint64 } from "./varint.js";
import { appendPositionBinary, appendPositionJson } from "./event-codec.js";
import { SystemEvent } from "../protocol/system-events.js";

/**
 * The client protocol's frames (realtime.client.v1, in the connection's
 * encoding, protobuf binary or JSON): ClientFrames decoded, and
 * ServerFrames encoded, with protobuf-es, under the rules stated on
 * decodeClientFrame (test/protocol-frames.test.ts, test/fuzz-input.test.ts);
 * except the frame of an event, the one sent to every recipient, which is
 * built by hand from the publication's already-encoded event
 * (binaryEventFrame, jsonEventFrame), and the frames that list events
 * (presence; events, spliced from the event frames): byte for byte what
 * protobuf-es writes, as test/wire-coverage.test.ts checks (and
 * src/wire/coverage.ts lists: a field added to ServerFrame fails that test
 * until it is placed).
 */

const textDecoder = new TextDecoder("utf-8", { fatal: true });
const textEncoder = new TextEncoder();

/** The command fields of ClientFrame (its oneof), by field number. */
const COMMAND_FIELDS = new Map(ClientFrameSchema.oneofs[0]!.fields.map((f) => [f.number, f]));
/** The commands a ClientFrame may carry, for error messages. */
const COMMANDS = [...COMMAND_FIELDS.values()].map((f) => f.jsonName).join(", ");
/** Every name a JSON ClientFrame's key may have: each field's JSON name and proto name. */
const JSON_KEYS = new Set(ClientFrameSchema.fields.flatMap((f) => [f.jsonName, f.name]));
/**
 * A frame that could not be decoded (INVALID_ARGUMENT), or that carries a
 * command this edge does not know (UNIMPLEMENTED). requestId is the
 * frame's id when it could still be read, so that the error reply names
 * the request.
 */
export class FrameError extends RealtimeError {
  constructor(
    message: string,
    readonly requestId = 0,
    code: typeof Code.InvalidArgument | typeof Code.Unimplemented = Code.InvalidArgument,
  ) {
    super(code, message);
  }
}

/**
 * Decodes one client frame in the connection's encoding. Throws FrameError
 * with a message that says what to fix; never anything else.
 *
 * The same rules in both encodings, proto3's: unknown fields are ignored
 * (and dropped, so that no recipient sees them), at any depth; a frame
 * whose only command-like field is unknown carries a command of a newer
 * protocol: UNIMPLEMENTED. Exactly one command; strings must be
 * well-formed Unicode (a lone surrogate, which only JSON can carry, would
 * reach JSON and binary recipients as different text).
 */
export function decodeClientFrame(data: Uint8Array, isBinary: boolean, encoding: Encoding): ClientFrame {
  return encoding === Encoding.Json ? decodeJson(data, isBinary) : decodeBinary(data, isBinary);
}

function decodeJson(data: Uint8Array, isBinary: boolean): ClientFrame {
  if (isBinary)
    throw new FrameError(`this connection speaks ${Encoding.Json}: send text frames with JSON, not binary frames`);
  let text: string;
  try {
    text = textDecoder.decode(data);
  } catch {
    throw new FrameError("the text frame is not valid UTF-8");
  }
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new FrameError(`malformed frame: the text is not valid JSON (${describe(err)})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw new FrameError('malformed frame: a frame is a JSON object, {"id":1,"ping":{}} say');
  const id = peekJsonId(json);
  const field = illFormedField(text, json);
  if (field !== undefined) throw new FrameError(illFormedMessage(field), id);
  let frame: ClientFrame;
  try {
    frame = fromJson(ClientFrameSchema, json, { ignoreUnknownFields: true });
  } catch (err) {
    throw new FrameError(`malformed frame: ${describe(err)}`, id);
  }
  if (frame.command.case === undefined) {
    const unknown = Object.keys(json).find((key) => !JSON_KEYS.has(key));
    if (unknown !== undefined)
      throw new FrameError(
        `unknown command ${JSON.stringify(unknown)}: this edge knows ${COMMANDS} (it is older than the client?)`,
        frame.id,
        Code.Unimplemented,
      );
    throw noCommand(frame.id);
  }
  return frame;
}

function decodeBinary(data: Uint8Array, isBinary: boolean): ClientFrame {
  if (!isBinary)
    throw new FrameError(`this connection speaks ${Encoding.Proto}: send binary frames with protobuf, not text frames`);
  const scan = scanFrame(data);
  let frame: ClientFrame;
  try {
    frame = fromBinary(ClientFrameSchema, data, { readUnknownFields: false });
  } catch (err) {
    throw new FrameError(`malformed frame: ${describe(err)}`, scan.id);
  }
  if (scan.commands.size > 1) {
    const names = [...scan.commands].map((no) => COMMAND_FIELDS.get(no)!.jsonName);
    throw new FrameError(`the frame has ${names.length} commands (${names.join(", ")}): send exactly one`, frame.id);
  }
  if (frame.command.case === undefined) {
    if (scan.unknown !== undefined)
      throw new FrameError(
        `unknown command: field number ${scan.unknown} of ClientFrame is not a command this edge knows (${COMMANDS}; it is older than the client?)`,
        frame.id,
        Code.Unimplemented,
      );
    throw noCommand(frame.id);
  }
  return frame;
}

function noCommand(id: number): FrameError {
  return new FrameError(`the frame has no command: set one of ${COMMANDS}`, id);
}

/**
 * Reads a binary ClientFrame's top level as far as it is well-formed: its
 * id (field 1, the last one before any damage), the command fields it
 * holds, and its first unknown field number. Never throws.
 */
function scanFrame(data: Uint8Array): { id: number; commands: Set<number>; unknown: number | undefined } {
  const reader = new BinaryReader(data);
  const out = { id: 0, commands: new Set<number>(), unknown: undefined as number | undefined };
  try {
    while (reader.pos < reader.len) {
      const [no, wireType] = reader.tag();
      if (no === 1 && wireType === WireType.Varint) {
        out.id = reader.uint32();
        continue;
      }
      if (COMMAND_FIELDS.has(no)) out.commands.add(no);
      else if (no !== 1) out.unknown ??= no;
      reader.skip(wireType, no);
    }
  } catch {
    // damaged from here on: what was read stands
  }
  return out;
}

/** Encodes a frame for one connection (replies, the connected frame). */
export function encodeServerFrame(frame: ServerFrame, encoding: Encoding): Uint8Array {
  return encoding === Encoding.Json
    ? textEncoder.encode(toJsonString(ServerFrameSchema, frame))
    : toBinary(ServerFrameSchema, frame);
}

/** Shorthand: builds and encodes a ServerFrame. */
export function serverFrame(
  init: Parameters<typeof create<typeof ServerFrameSchema>>[1],
  encoding: Encoding,
): Uint8Array {
  return encodeServerFrame(create(ServerFrameSchema, init), encoding);
}

/** pub's event with its position (Event fields 7 offset and 8 epoch, the last two) when it has one, in protobuf binary. */
function positionedEventBinary(pub: Publication): Uint8Array {
  return pub.offset ? appendPositionBinary(pub.event, pub.offset, pub.epoch ?? "") : pub.event;
}

/** pub's event with its position when it has one, in JSON. */
function positionedEventJson(pub: Publication): string {
  return pub.offset ? appendPositionJson(pub.eventJson, pub.offset, pub.epoch ?? "") : pub.eventJson;
}

/** A length-delimited field of one-byte tag whose value is bytes, written at out[pos]; returns the end. */
function writeBytesField(out: Uint8Array, pos: number, tag: number, bytes: Uint8Array): number {
  out[pos++] = tag;
  pos = writeVarint(out, pos, bytes.length);
  out.set(bytes, pos);
  return pos + bytes.length;
}

/**
 * The ServerFrame that carries pub's event, in protobuf binary, built from
 * the already-encoded event without decoding it: field 3 (event), wire type
 * 2 (length-delimited), then the event's bytes, then its position when the
 * publication has one.
 */
export function binaryEventFrame(pub: Publication): Uint8Array {
  const event = positionedEventBinary(pub);
  const out = new Uint8Array(1 + varintSize(event.length) + event.length);
  writeBytesField(out, 0, 0x1a, event);
  return out;
}

/** The ServerFrame that carries pub's event, in JSON, from its JSON (with its position when it has one). */
export function jsonEventFrame(pub: Publication): Uint8Array {
  return textEncoder.encode(`{"event":${positionedEventJson(pub)}}`);
}

/**
 * The ServerFrame{presence} that lists pubs' events (system events of one
 * channel, in its order), in protobuf binary: field 5 (presence), then
 * Presence's field 1 (events) once per event, each the event's bytes with
 * its position, as binaryEventFrame writes them; byte for byte what
 * protobuf-es writes.
 */
export function binaryPresenceFrame(pubs: readonly Publication[]): Uint8Array {
  const events = pubs.map(positionedEventBinary);
  let inner = 0;
  for (const e of events) inner += 1 + varintSize(e.length) + e.length;
  const out = new Uint8Array(1 + varintSize(inner) + inner);
  out[0] = 0x2a;
  let pos = writeVarint(out, 1, inner);
  for (const e of events) pos = writeBytesField(out, pos, 0x0a, e);
  return out;
}

/** The ServerFrame{presence} that lists pubs' events, in JSON: {"presence":{"events":[…]}}. */
export function jsonPresenceFrame(pubs: readonly Publication[]): Uint8Array {
  if (pubs.length === 0) return textEncoder.encode('{"presence":{}}'); // as protobuf-es: an empty list is omitted
  return textEncoder.encode(`{"presence":{"events":[${pubs.map(positionedEventJson).join(",")}]}}`);
}

/** The oneof case of a compact presence change, by system event name. */
const CHANGE_CASES: ReadonlyMap<string, "join" | "leave" | "update"> = new Map([
  [SystemEvent.Join, "join"],
  [SystemEvent.Leave, "leave"],
  [SystemEvent.Update, "update"],
]);

/**
 * A change of a compact presence frame (presence=compact), encoded once for
 * every frame that lists it: its PresenceChange in protobuf binary and in
 * JSON, as protobuf-es writes them, and its size in a frame (protobuf
 * binary: tag, length and bytes).
 */
export interface CompactChange {
  readonly binary: Uint8Array;
  readonly json: string;
  readonly bytes: number;
}

/**
 * pub's system event as a change of a compact presence frame; undefined for
 * an event the compact form cannot carry (not channel:join, channel:leave
 * or channel:update). Decodes the event and encodes the change once per
 * publication (the members that joined during a window read it again from
 * a later index).
 */
export function presenceChange(pub: Publication): CompactChange | undefined {
  const known = changes.get(pub);
  if (known !== undefined || changes.has(pub)) return known;
  const event = fromBinary(EventSchema, pub.event);
  const which = CHANGE_CASES.get(event.event);
  let found: CompactChange | undefined;
  if (which !== undefined && event.payload.case === "member") {
    const change = create(PresenceChangeSchema, { change: { case: which, value: event.payload.value }, id: event.id });
    const binary = toBinary(PresenceChangeSchema, change);
    found = {
      binary,
      json: toJsonString(PresenceChangeSchema, change),
      bytes: 1 + varintSize(binary.length) + binary.length,
    };
  }
  changes.set(pub, found);
  return found;
}
/** presenceChange's answers, once per publication. */
const changes = new WeakMap<Publication, CompactChange | undefined>();

/**
 * The compact ServerFrame{presence} (presence=compact) of changes, system
 * events of one channel and epoch with consecutive offsets from
 * firstOffset (0: no positions): fields 2 channel, 3 epoch, 4 first_offset
 * and 5 changes (each the change's bytes) of Presence, spliced from the
 * changes already encoded; byte for byte what protobuf-es writes
 * (test/presence-frame.test.ts).
 */
export function compactPresenceFrame(
  channel: string,
  epoch: string,
  firstOffset: bigint,
  list: readonly CompactChange[],
  encoding: Encoding,
): Uint8Array {
  if (encoding === Encoding.Json) {
    let head = "";
    if (channel !== "") head += `,"channel":${JSON.stringify(channel)}`;
    if (epoch !== "") head += `,"epoch":${JSON.stringify(epoch)}`;
    if (firstOffset !== 0n) head += `,"firstOffset":"${firstOffset}"`;
    if (list.length > 0) head += `,"changes":[${list.map((c) => c.json).join(",")}]`;
    return textEncoder.encode(`{"presence":{${head.slice(1)}}}`);
  }
  const channelBytes = textEncoder.encode(channel);
  const epochBytes = textEncoder.encode(epoch);
  let inner = 0;
  if (channelBytes.length > 0) inner += 1 + varintSize(channelBytes.length) + channelBytes.length;
  if (epochBytes.length > 0) inner += 1 + varintSize(epochBytes.length) + epochBytes.length;
  if (firstOffset !== 0n) inner += 1 + varint64Size(firstOffset);
  for (const c of list) inner += c.bytes;
  const out = new Uint8Array(1 + varintSize(inner) + inner);
  out[0] = 0x2a; // 5 presence
  let pos = writeVarint(out, 1, inner);
  if (channelBytes.length > 0) pos = writeBytesField(out, pos, 0x12, channelBytes); // 2 channel
  if (epochBytes.length > 0) pos = writeBytesField(out, pos, 0x1a, epochBytes); // 3 epoch
  if (firstOffset !== 0n) {
    out[pos++] = 0x20; // 4 first_offset, varint
    pos = writeVarint64(out, pos, firstOffset);
  }
  for (const c of list) pos = writeBytesField(out, pos, 0x2a, c.binary); // 5 changes
  return out;
}

/** The first byte of every ServerFrame{event} in protobuf binary: field 3 (event), wire type 2. */
const EVENT_FRAME_TAG = 0x1a;
/** What every ServerFrame{event} in JSON starts with; it ends with the "}" that closes it, right after the event. */
const EVENT_FRAME_JSON_HEAD = textEncoder.encode('{"event":');
const EVENTS_FRAME_JSON_HEAD = textEncoder.encode('{"events":{"events":[');
const EVENTS_FRAME_JSON_TAIL = textEncoder.encode("]}}");
/** As protobuf-es writes an events frame without events: an empty list is omitted. */
const EMPTY_EVENTS_FRAME_JSON = textEncoder.encode('{"events":{}}');

/**
 * The ServerFrame{events} that carries the events of eventFrames, each a
 * ServerFrame{event} in protobuf binary as binaryEventFrame writes it, in
 * their order; byte for byte what protobuf-es writes, and spliced without
 * decoding: field 8 (events), then Events' field 1 once per event, which is
 * the event frame itself with its tag changed (field 3 of ServerFrame to
 * field 1 of Events; same wire type, same length, same bytes). Throws on a
 * frame that is not an event frame: the caller handed the wrong frame.
 */
export function binaryEventsFrame(eventFrames: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(eventsFrameSize(eventFrames, false));
  writeEventsFrame(out, 0, eventFrames, false);
  return out;
}

/**
 * The ServerFrame{events} that carries the events of eventFrames, each a
 * ServerFrame{event} in JSON as jsonEventFrame writes it
 * (`{"event":…}`), in their order: `{"events":{"events":[…,…]}}`,
 * character for character what protobuf-es writes, spliced from the
 * frames' bytes without parsing them. Throws on a frame that is not an
 * event frame.
 */
export function jsonEventsFrame(eventFrames: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(eventsFrameSize(eventFrames, true));
  writeEventsFrame(out, 0, eventFrames, true);
  return out;
}

/**
 * The size of the events frame of eventFrames (binaryEventsFrame, or with
 * json jsonEventsFrame), so that a caller can write it into a buffer of its
 * own (writeEventsFrame: the edge puts the WebSocket header in front). Throws
 * on a frame that is not an event frame.
 */
export function eventsFrameSize(eventFrames: readonly Uint8Array[], json: boolean): number {
  if (json) {
    if (eventFrames.length === 0) return EMPTY_EVENTS_FRAME_JSON.length;
    const head = EVENT_FRAME_JSON_HEAD.length;
    let size = EVENTS_FRAME_JSON_HEAD.length + EVENTS_FRAME_JSON_TAIL.length - 1;
    for (const frame of eventFrames) {
      if (!isJsonEventFrame(frame)) throw new Error("jsonEventsFrame: not a ServerFrame{event} in JSON");
      size += frame.length - head - 1 + 1; // the event, and a comma or the closing bracket
    }
    return size;
  }
  let inner = 0;
  for (const frame of eventFrames) {
    if (frame[0] !== EVENT_FRAME_TAG) throw new Error("binaryEventsFrame: not a ServerFrame{event} in protobuf binary");
    inner += frame.length;
  }
  return 1 + varintSize(inner) + inner;
}

/** Writes the events frame of eventFrames at out[pos] (eventsFrameSize bytes, checked by it); returns the end. */
export function writeEventsFrame(
  out: Uint8Array,
  pos: number,
  eventFrames: readonly Uint8Array[],
  json: boolean,
): number {
  if (json) {
    if (eventFrames.length === 0) {
      out.set(EMPTY_EVENTS_FRAME_JSON, pos);
      return pos + EMPTY_EVENTS_FRAME_JSON.length;
    }
    const head = EVENT_FRAME_JSON_HEAD.length;
    out.set(EVENTS_FRAME_JSON_HEAD, pos);
    pos += EVENTS_FRAME_JSON_HEAD.length;
    for (let i = 0; i < eventFrames.length; i++) {
      const frame = eventFrames[i]!;
      if (i > 0) out[pos++] = 0x2c; // ,
      out.set(frame.subarray(head, frame.length - 1), pos);
      pos += frame.length - head - 1;
    }
    out.set(EVENTS_FRAME_JSON_TAIL, pos);
    return pos + EVENTS_FRAME_JSON_TAIL.length;
  }
  let inner = 0;
  for (const frame of eventFrames) inner += frame.length;
  out[pos] = 0x42; // 8 events, length-delimited
  pos = writeVarint(out, pos + 1, inner);
  for (const frame of eventFrames) {
    out.set(frame, pos);
    out[pos] = 0x0a; // Events 1 events, length-delimited
    pos += frame.length;
  }
  return pos;
}

function isJsonEventFrame(frame: Uint8Array): boolean {
  if (frame.length < EVENT_FRAME_JSON_HEAD.length + 2 || frame[frame.length - 1] !== 0x7d) return false;
  for (let i = 0; i < EVENT_FRAME_JSON_HEAD.length; i++) if (frame[i] !== EVENT_FRAME_JSON_HEAD[i]) return false;
  return true;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The id of a JSON frame, for its error reply: 0 unless it is a valid uint32. */
function peekJsonId(frame: { [key: string]: JsonValue }): number {
  const id = frame.id;
  return typeof id === "number" && Number.isInteger(id) && id > 0 && id <= 0xffffffff ? id : 0;
}
