import { varintSize, writeVarint } from "./varint.js";

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
}

/**
 * realtime.link.v1.Publication (and the HubFrame that carries one) in
 * protobuf binary, written by hand: a publication is encoded once per event
 * on the hot path, where protobuf-es's reflective encoder costs more than
 * the rest of the hub's work. The output is byte for byte what
 * `toBinary(PublicationSchema, …)` writes — fields in number order, proto3
 * defaults omitted — and test/publication-codec.test.ts checks that against
 * protobuf-es. Decoding stays with protobuf-es.
 */

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

interface Sizes {
  channel: number;
  eventJson: number;
  origin: number;
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
  return { channel, eventJson, origin, total };
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
    out[pos] = 1;
  }
}

function writeString(out: Buffer, pos: number, tag: number, value: string, bytes: number): number {
  if (bytes === 0) return pos;
  out[pos++] = tag;
  pos = writeVarint(out, pos, bytes);
  return pos + out.write(value, pos, "utf8");
}
