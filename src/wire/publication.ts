import { fromBinary } from "@bufbuild/protobuf";
import {
  EdgeFrameSchema,
  HubFrameSchema,
  PublicationSchema,
  type EdgeFrame,
  type HubFrame,
  type Publication as PublicationMessage,
} from "../../gen/realtime/link/v1/link_pb.js";
import { decodeString } from "./utf8.js";
import {
  readVarint32,
  readVarint64,
  varint64Size,
  varintSize,
  writeVarint,
  writeVarint64,
  type Cursor,
} from "./varint.js";

/**
 * The publish path of the link and of Redis, written by hand:
 * realtime.link.v1.Publication, and the two link frames that carry one
 * (EdgeFrame{id, publish} from an edge, HubFrame{publication} to an edge),
 * in protobuf binary, both ways. Every event crosses this codec on the hot
 * path (encoded once by its publisher, decoded once by the hub or each
 * Redis node, encoded once by the hub for every edge, decoded once by each
 * edge), where protobuf-es's reflective codec costs more than the rest of
 * the hub's and the edge's work. The other link frames (hello, subscribe,
 * presence, replies, the challenge) stay with protobuf-es.
 *
 * Encoding: byte for byte what `toBinary(Schema, …)` writes — fields in
 * number order, proto3 defaults omitted, a oneof member written even when
 * empty, strings as UTF-8 with lone surrogates as U+FFFD.
 *
 * Decoding: the result is always what `fromBinary(Schema, bytes)` returns,
 * value for value (the same plain objects, properties in the same order),
 * and, as there, `event` is a view of `bytes` (no copy). Only the
 * canonical shape is decoded here: the known fields with their wire types
 * and one-byte tags, each at most once, skip_origin as one byte 0 or 1, ids
 * and lengths as varints of at most five bytes that stay within the frame,
 * no unknown fields, strings that are valid UTF-8; for a frame, the
 * publication as its only frame (after the id, for an EdgeFrame). Anything
 * else (another frame, unknown fields, non-canonical input) is deferred:
 * the whole frame goes to `fromBinary`, which gives its usual result or
 * throws its usual error. Nothing is refused and nothing is read
 * differently from protobuf-es.
 *
 * Why deferring is not a silent slow path: src/wire/coverage.ts lists
 * every field of these messages as handled here or left to protobuf-es,
 * and test/wire-coverage.test.ts fails when our proto gains a field that
 * the list does not name, or when a message with every handled field set
 * is not decoded here. What reaches `fromBinary` is then only what our own
 * encoders never write: other frames, another version's fields (a newer
 * node on Redis during a rolling upgrade), or hand-crafted bytes.
 *
 * test/publication-codec.test.ts checks all of it against protobuf-es.
 */

/**
 * One event on its way to the edges, encoded once by its publisher in both
 * client encodings, so that neither the broker nor an edge encodes anything
 * per recipient. Mirrors realtime.link.v1.Publication.
 */
export interface Publication {
  /** The channel; "" for a broadcast to every connection. */
  readonly channel: string;
  /** The event, realtime.client.v1.Event in protobuf binary. */
  readonly event: Uint8Array;
  /** The same event in protobuf's JSON mapping. */
  readonly eventJson: string;
  /** The connection that caused the event; "" when a backend sent it. */
  readonly origin: string;
  /** True when the origin connection must not receive the event. */
  readonly skipOrigin: boolean;
  /**
   * The event's offset in its channel, set by the broker that orders the
   * channel (src/core/broker.ts); 0n or absent: no position.
   */
  readonly offset?: bigint;
  /** The channel's epoch; "" or absent when the publication has no position. */
  readonly epoch?: string;
  /**
   * When the API accepted the event, in milliseconds since the Unix epoch
   * by its wall clock (the edges measure delivery latency from it); 0n or
   * absent: not stamped, not measured.
   */
  readonly acceptedUnixMs?: bigint;
}

// Encoding

/** realtime.link.v1.Publication in protobuf binary. */
export function encodePublication(pub: Publication): Buffer {
  const sizes = measure(pub);
  const out = Buffer.allocUnsafe(sizes.total);
  writeBody(out, 0, pub, sizes);
  return out;
}

/** realtime.link.v1.HubFrame{publication} in protobuf binary. */
export function encodeHubPublication(pub: Publication): Buffer {
  const sizes = measure(pub);
  const head = 1 + varintSize(sizes.total);
  const out = Buffer.allocUnsafe(head + sizes.total);
  out[0] = 0x0a; // HubFrame field 1 (publication), length-delimited
  writeVarint(out, 1, sizes.total);
  writeBody(out, head, pub, sizes);
  return out;
}

/** realtime.link.v1.EdgeFrame{id, publish} in protobuf binary; id is a uint32 (0: no reply wanted). */
export function encodeEdgePublish(id: number, pub: Publication): Buffer {
  const sizes = measure(pub);
  const idSize = id === 0 ? 0 : 1 + varintSize(id);
  const head = idSize + 1 + varintSize(sizes.total);
  const out = Buffer.allocUnsafe(head + sizes.total);
  let pos = 0;
  if (id !== 0) {
    out[pos++] = 0x08; // EdgeFrame field 1 (id), varint
    pos = writeVarint(out, pos, id);
  }
  out[pos++] = 0x2a; // EdgeFrame field 5 (publish), length-delimited
  writeVarint(out, pos, sizes.total);
  writeBody(out, head, pub, sizes);
  return out;
}

interface Sizes {
  channel: number;
  eventJson: number;
  origin: number;
  epoch: number;
  total: number;
}

function measure(pub: Publication): Sizes {
  const channel = Buffer.byteLength(pub.channel);
  const eventJson = Buffer.byteLength(pub.eventJson);
  const origin = Buffer.byteLength(pub.origin);
  let total = 0;
  if (channel > 0) total += 1 + varintSize(channel) + channel;
  if (pub.event.length > 0) total += 1 + varintSize(pub.event.length) + pub.event.length;
  if (eventJson > 0) total += 1 + varintSize(eventJson) + eventJson;
  if (origin > 0) total += 1 + varintSize(origin) + origin;
  if (pub.skipOrigin) total += 2;
  const offset = pub.offset ?? 0n;
  if (offset !== 0n) total += 1 + varint64Size(offset);
  const epoch = pub.epoch ? Buffer.byteLength(pub.epoch) : 0;
  if (epoch > 0) total += 1 + varintSize(epoch) + epoch;
  total += tailSize(pub); // the fields above epoch, written last (see positionIndex)
  return { channel, eventJson, origin, epoch, total };
}

/**
 * Where a publication's position (offset and epoch) goes in its encoding,
 * for a broker that writes the position into bytes another node encoded
 * (the Redis publish script, history-redis.ts): after the fields numbered
 * below offset, before those above epoch, so that the result is what
 * protobuf-es writes for the publication with its position. bytes is
 * encodePublication(pub), for a pub without a position of its own.
 */
export function positionIndex(pub: Publication, bytes: Uint8Array): number {
  return bytes.length - tailSize(pub);
}

/** The size of the fields above epoch: 8 accepted_unix_ms. */
function tailSize(pub: Publication): number {
  const accepted = pub.acceptedUnixMs ?? 0n;
  return accepted !== 0n ? 1 + varint64Size(accepted) : 0;
}

function writeBody(out: Buffer, pos: number, pub: Publication, sizes: Sizes): void {
  pos = writeString(out, pos, 0x0a, pub.channel, sizes.channel); // 1 channel
  if (pub.event.length > 0) {
    out[pos++] = 0x12; // 2 event
    pos = writeVarint(out, pos, pub.event.length);
    out.set(pub.event, pos);
    pos += pub.event.length;
  }
  pos = writeString(out, pos, 0x1a, pub.eventJson, sizes.eventJson); // 3 event_json
  pos = writeString(out, pos, 0x22, pub.origin, sizes.origin); // 4 origin
  if (pub.skipOrigin) {
    out[pos++] = 0x28; // 5 skip_origin, varint
    out[pos++] = 1;
  }
  const offset = pub.offset ?? 0n;
  if (offset !== 0n) {
    out[pos++] = 0x30; // 6 offset, varint
    pos = writeVarint64(out, pos, offset);
  }
  pos = writeString(out, pos, 0x3a, pub.epoch ?? "", sizes.epoch); // 7 epoch
  // The tail (see positionIndex): the fields above epoch.
  const accepted = pub.acceptedUnixMs ?? 0n;
  if (accepted !== 0n) {
    out[pos++] = 0x40; // 8 accepted_unix_ms, varint
    writeVarint64(out, pos, accepted);
  }
}

function writeString(out: Buffer, pos: number, tag: number, value: string, bytes: number): number {
  if (bytes === 0) return pos;
  out[pos++] = tag;
  pos = writeVarint(out, pos, bytes);
  return pos + out.write(value, pos, "utf8");
}

// Decoding. Each reader throws notCanonical (or the strict UTF-8 decoder's
// error) where the bytes are not the canonical shape; the entry points
// catch it and hand the bytes to fromBinary.

/** realtime.link.v1.Publication from protobuf binary (a Redis message): what fromBinary returns. */
export function decodePublication(bytes: Uint8Array): PublicationMessage {
  try {
    at.pos = 0;
    return readPublication(bytes, bytes.length);
  } catch {
    return fromBinary(PublicationSchema, bytes);
  }
}

/** realtime.link.v1.HubFrame from protobuf binary: what fromBinary returns; a publication is decoded here. */
export function decodeHubFrame(bytes: Uint8Array): HubFrame {
  if (bytes[0] === 0x0a) {
    // 1 publication, the whole frame
    try {
      at.pos = 1;
      if (length(bytes, bytes.length) === bytes.length)
        return {
          $typeName: "realtime.link.v1.HubFrame",
          frame: { case: "publication", value: readPublication(bytes, bytes.length) },
        };
    } catch {
      // not the canonical shape: fromBinary decides
    }
  }
  return fromBinary(HubFrameSchema, bytes);
}

/** realtime.link.v1.EdgeFrame from protobuf binary: what fromBinary returns; a publish is decoded here. */
export function decodeEdgeFrame(bytes: Uint8Array): EdgeFrame {
  try {
    at.pos = 0;
    let id = 0;
    if (bytes[0] === 0x08) {
      // 1 id, varint
      at.pos = 1;
      id = readVarint32(bytes, at, bytes.length);
      if (id < 0) throw notCanonical;
    }
    if (bytes[at.pos] === 0x2a) {
      // 5 publish, the rest of the frame
      at.pos++;
      if (length(bytes, bytes.length) === bytes.length)
        return {
          $typeName: "realtime.link.v1.EdgeFrame",
          id,
          frame: { case: "publish", value: readPublication(bytes, bytes.length) },
        };
    }
  } catch {
    // not the canonical shape: fromBinary decides
  }
  return fromBinary(EdgeFrameSchema, bytes);
}

/**
 * Thrown (never outside this module) where the bytes are not the canonical
 * shape. One instance, so throwing it costs no stack trace.
 */
const notCanonical = new Error("publication codec: not the canonical shape");

/** The read position, for one decode at a time (decoding is synchronous). */
const at: Cursor = { pos: 0 };

/** The fields of a Publication, from at.pos up to end (checked to lie within buf). */
function readPublication(buf: Uint8Array, end: number): PublicationMessage {
  let channel = "";
  let event: Uint8Array | undefined;
  let eventJson = "";
  let origin = "";
  let skipOrigin = false;
  let offset = 0n;
  let epoch = "";
  let acceptedUnixMs = 0n;
  let seen = 0; // a bit a field
  while (at.pos < end) {
    const tag = buf[at.pos++];
    const bit =
      tag === 0x0a
        ? 1
        : tag === 0x12
          ? 2
          : tag === 0x1a
            ? 4
            : tag === 0x22
              ? 8
              : tag === 0x28
                ? 16
                : tag === 0x30
                  ? 32
                  : tag === 0x3a
                    ? 64
                    : tag === 0x40
                      ? 128
                      : 0;
    if (bit === 0 || seen & bit) throw notCanonical; // another field, or one again
    seen |= bit;
    if (tag === 0x30) {
      // 6 offset, varint (uint64)
      offset = readVarint64(buf, at, end);
      if (offset < 0n) throw notCanonical;
      continue;
    }
    if (tag === 0x40) {
      // 8 accepted_unix_ms, varint (uint64)
      acceptedUnixMs = readVarint64(buf, at, end);
      if (acceptedUnixMs < 0n) throw notCanonical;
      continue;
    }
    if (tag === 0x28) {
      // 5 skip_origin, varint: 0 or 1 in one byte only
      const b = at.pos < end ? buf[at.pos] : 2;
      if (b > 1) throw notCanonical;
      at.pos++;
      skipOrigin = b === 1;
      continue;
    }
    const dataEnd = length(buf, end);
    const dataStart = at.pos;
    at.pos = dataEnd;
    if (tag === 0x12)
      event = buf.subarray(dataStart, dataEnd); // 2 event: a view, as fromBinary's
    else if (tag === 0x0a)
      channel = decodeString(buf, dataStart, dataEnd); // 1 channel
    else if (tag === 0x1a)
      eventJson = decodeString(buf, dataStart, dataEnd); // 3 event_json
    else if (tag === 0x22)
      origin = decodeString(buf, dataStart, dataEnd); // 4 origin
    else epoch = decodeString(buf, dataStart, dataEnd); // 7 epoch
  }
  return {
    $typeName: "realtime.link.v1.Publication",
    channel,
    event: event ?? new Uint8Array(0),
    eventJson,
    origin,
    skipOrigin,
    offset,
    epoch,
    acceptedUnixMs,
  };
}

/**
 * The length of a length-delimited field at at.pos, within end: moves at.pos
 * past the length and returns the end of the data.
 */
function length(buf: Uint8Array, end: number): number {
  const len = readVarint32(buf, at, end);
  if (len < 0 || len > end - at.pos) throw notCanonical; // cut short, too long, or past end
  return at.pos + len;
}
