/**
 * The client protocol's encodings (proto/realtime/client/v1/client.proto),
 * as the SDK speaks them: "realtime.v1.json" is protobuf's JSON mapping in
 * text frames, "realtime.v1.proto" the binary encoding in binary frames.
 *
 * The JSON encoding, the default, is src/wire/client-json.ts, written by
 * hand: it loads nothing of protobuf-es, so a browser bundle that speaks
 * JSON holds none of it. The binary encoding needs protobuf-es's runtime
 * (about 88 KB minified), so it is an entry point of its own, ./proto.ts
 * (`@switchboard/client/proto`), that the application imports and passes
 * as the `encoding` option. Everything here is pure and runtime-free, so
 * the SDK bundles for browsers.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { ServerFrame } from "../../gen/realtime/client/v1/client_pb.js";
import { illFormedField, illFormedMessage } from "../protocol/unicode.js";
import { Encoding } from "../protocol/encodings.js";
import {
  decodeServerFrameJson,
  encodeClientFrameJson,
  valueFromJson,
  valueToJson,
  type ClientFrameInit,
} from "../wire/client-json.js";
import { ErrorCode, RealtimeClientError } from "./errors.js";

export type { ClientFrameInit };

/** The SDK's names for the two encodings. */
export type EncodingName = "json" | "proto";

/**
 * One encoding of the client protocol: the WebSocket subprotocol it is
 * negotiated by, and its frames. The SDK has two, jsonEncoding (built in,
 * the default) and protoEncoding (`@switchboard/client/proto`); pass one
 * as RealtimeClient's `encoding` option.
 */
export interface ClientEncoding {
  readonly name: EncodingName;
  /** The subprotocol the SDK asks the edge for (src/protocol/encodings.ts, shared with the edge). */
  readonly subprotocol: Encoding;
  /** Encodes a frame for a WebSocket send: a string (a text frame) or bytes (a binary frame). */
  encodeClientFrame(frame: ClientFrameInit): string | Uint8Array;
  /**
   * Decodes one WebSocket message; throws, saying why, when it is not a
   * ServerFrame. Unknown JSON fields are ignored, so a newer edge can add
   * fields.
   */
  decodeServerFrame(data: unknown): ServerFrame;
}

/** The JSON encoding, without protobuf-es: text frames only (the edge sends nothing else on it). */
export const jsonEncoding: ClientEncoding = {
  name: "json",
  subprotocol: Encoding.Json,
  encodeClientFrame: encodeClientFrameJson,
  decodeServerFrame(data) {
    if (typeof data === "string") return decodeServerFrameJson(data);
    throw new TypeError(
      `unexpected WebSocket message data of type ${Object.prototype.toString.call(data)} on a ${Encoding.Json} connection: it carries text frames only`,
    );
  },
};

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
  return valueFromJson(JSON.parse(text) as JsonValue);
}

/** Turns a google.protobuf.Value into a JSON value; an absent Value is null. */
export function fromValue(value: Value | undefined): JsonValue {
  return value === undefined ? null : valueToJson(value);
}

/** data as bytes when it is binary (a Uint8Array, another ArrayBufferView, an ArrayBuffer); else undefined. */
export function asBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}
