/**
 * The client protocol's two encodings (proto/realtime/client/v1/client.proto):
 * "realtime.v1.json" is protobuf's JSON mapping in text frames,
 * "realtime.v1.proto" the binary encoding in binary frames. Everything here
 * is pure and runtime-free, so the SDK bundles for browsers.
 */
import { create, fromBinary, fromJson, fromJsonString, toBinary, toJson, toJsonString } from "@bufbuild/protobuf";
import type { JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { ClientFrameSchema, ServerFrameSchema, type ServerFrame } from "../../gen/realtime/client/v1/client_pb.js";
import { illFormedField, illFormedMessage } from "../protocol/unicode.js";
import { Encoding } from "../protocol/encodings.js";
import { ErrorCode, RealtimeClientError } from "./errors.js";

/** The SDK's names for the two encodings. */
export type EncodingName = "json" | "proto";

/** The WebSocket subprotocol of each encoding (src/protocol/encodings.ts, shared with the edge). */
export const SUBPROTOCOL: Readonly<Record<EncodingName, Encoding>> = {
  json: Encoding.Json,
  proto: Encoding.Proto,
};

/** A ClientFrame as `create` accepts it. */
export type ClientFrameInit = MessageInitShape<typeof ClientFrameSchema>;

/** Encodes frame for a WebSocket send: a string for json, bytes for proto. */
export function encodeClientFrame(encoding: EncodingName, init: ClientFrameInit): string | Uint8Array {
  const frame = create(ClientFrameSchema, init);
  return encoding === "json" ? toJsonString(ClientFrameSchema, frame) : toBinary(ClientFrameSchema, frame);
}

/**
 * Decodes one WebSocket message. The frame type decides the decoding, not
 * the negotiated encoding: text is JSON, anything binary is protobuf.
 * Unknown JSON fields are ignored, so a newer edge can add fields.
 * Throws when data is neither or does not parse.
 */
export function decodeServerFrame(data: unknown): ServerFrame {
  if (typeof data === "string") {
    return fromJsonString(ServerFrameSchema, data, { ignoreUnknownFields: true });
  }
  const bytes = asBytes(data);
  if (bytes === undefined) {
    throw new TypeError(`unexpected WebSocket message data of type ${Object.prototype.toString.call(data)}`);
  }
  return fromBinary(ServerFrameSchema, bytes);
}

/** The payload oneof of Send and Broadcast. */
export type PayloadInit = { case: "json"; value: Value } | { case: "binary"; value: Uint8Array };

/**
 * Turns an application message into a payload. Bytes (a Uint8Array, any
 * other ArrayBufferView, or an ArrayBuffer) become a binary payload, sent
 * as is. Anything else becomes a JSON payload with JSON.stringify's
 * semantics, so a receiver gets exactly JSON.parse(JSON.stringify(message)):
 * toJSON() is honoured, undefined properties are dropped, NaN becomes null.
 * Rejects (INVALID_ARGUMENT) what JSON.stringify cannot encode, and strings
 * that are not well-formed Unicode (a lone surrogate), which the edge
 * refuses (docs/protocol.md).
 */
export function toPayload(message: unknown): PayloadInit {
  const bytes = asBytes(message);
  if (bytes !== undefined) return { case: "binary", value: bytes };
  return { case: "json", value: toValue(message, "message") };
}

/** Turns a JSON value into a google.protobuf.Value, with the rules of toPayload. */
export function toValue(json: unknown, what: string): Value {
  let text: string | undefined;
  try {
    text = JSON.stringify(json);
  } catch (err) {
    throw new RealtimeClientError(
      ErrorCode.InvalidArgument,
      `${what} is not JSON-serializable: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (text === undefined) {
    throw new RealtimeClientError(ErrorCode.InvalidArgument, `${what} is not a JSON value (got ${typeof json})`);
  }
  // The edge refuses a lone surrogate in a JSON frame, and the binary
  // encoding would turn it into U+FFFD: refused here, in both encodings.
  const field = illFormedField(text);
  if (field !== undefined) {
    throw new RealtimeClientError(
      ErrorCode.InvalidArgument,
      illFormedMessage(field === "the value" ? what : `${what}.${field}`),
    );
  }
  return fromJson(ValueSchema, JSON.parse(text) as JsonValue);
}

/** Turns a google.protobuf.Value into a JSON value; an absent Value is null. */
export function fromValue(value: Value | undefined): JsonValue {
  return value === undefined ? null : toJson(ValueSchema, value);
}

function asBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}
