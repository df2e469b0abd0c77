import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type ClientFrame,
  type ServerFrame,
} from "../../gen/realtime/client/v1/client_pb.js";
import type { Publication } from "./broker.js";
import { Code, RealtimeError } from "./errors.js";
import { Encoding } from "./transport.js";

const textDecoder = new TextDecoder("utf-8", { fatal: true });
const textEncoder = new TextEncoder();

/** The commands a ClientFrame may carry, for error messages. */
const COMMANDS = "join, leave, updateProfile, send, broadcast, getMembers, ping, refresh";

/**
 * A frame that could not be decoded. requestId is the frame's id when it
 * could still be read, so that the error reply names the request.
 */
export class FrameError extends RealtimeError {
  constructor(
    message: string,
    readonly requestId = 0,
  ) {
    super(Code.InvalidArgument, message);
  }
}

/**
 * Decodes one client frame in the connection's encoding. Throws FrameError
 * with a message that says what to fix; never anything else.
 */
export function decodeClientFrame(data: Uint8Array, isBinary: boolean, encoding: Encoding): ClientFrame {
  let frame: ClientFrame;
  if (encoding === Encoding.Json) {
    if (isBinary)
      throw new FrameError(`this connection speaks ${Encoding.Json}: send text frames with JSON, not binary frames`);
    let text: string;
    try {
      text = textDecoder.decode(data);
    } catch {
      throw new FrameError("the text frame is not valid UTF-8");
    }
    try {
      frame = fromJsonString(ClientFrameSchema, text);
    } catch (err) {
      throw new FrameError(`malformed frame: ${describe(err)}`, peekJsonId(text));
    }
  } else {
    if (!isBinary)
      throw new FrameError(
        `this connection speaks ${Encoding.Proto}: send binary frames with protobuf, not text frames`,
      );
    try {
      frame = fromBinary(ClientFrameSchema, data);
    } catch (err) {
      throw new FrameError(`malformed frame: ${describe(err)}`);
    }
    const unknown = frame.$unknown?.[0];
    if (unknown) throw new FrameError(`malformed frame: unknown field number ${unknown.no} in ClientFrame`, frame.id);
  }
  if (frame.command.case === undefined) {
    throw new FrameError(`the frame has no command: set one of ${COMMANDS}`, frame.id);
  }
  return frame;
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

/**
 * The ServerFrame that carries pub's event, in protobuf binary, built from
 * the already-encoded event without decoding it: field 3 (event), wire type
 * 2 (length-delimited), then the event's bytes.
 */
export function binaryEventFrame(pub: Publication): Uint8Array {
  const len = pub.event.length;
  const head: number[] = [0x1a];
  let n = len;
  while (n > 0x7f) {
    head.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  head.push(n);
  const out = new Uint8Array(head.length + len);
  out.set(head, 0);
  out.set(pub.event, head.length);
  return out;
}

/** The ServerFrame that carries pub's event, in JSON, from its JSON. */
export function jsonEventFrame(pub: Publication): Uint8Array {
  return textEncoder.encode(`{"event":${pub.eventJson}}`);
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads the id of a JSON frame that failed to decode, if it has one. */
function peekJsonId(text: string): number {
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === "object" && "id" in value) {
      const id = (value as { id: unknown }).id;
      if (typeof id === "number" && Number.isInteger(id) && id > 0 && id <= 0xffffffff) return id;
    }
  } catch {
    // not JSON at all: no id to name
  }
  return 0;
}
