/**
 * The WebSocket frame of one server-to-client message (RFC 6455 section
 * 5.2): FIN, opcode text (0x1) or binary (0x2), no mask, the payload length
 * in 7 bits, or 126 and 16 bits, or 127 and 64 bits (network byte order),
 * then the payload. Server frames are not masked (section 5.1), so one
 * message's frame is the same bytes for every recipient: the edge builds it
 * once and writes it as is to each socket (src/edge/ws-frames.ts writes it).
 * No extension: permessage-deflate is off on the edge, so RSV1 is clear.
 *
 * Byte-identical to what `ws` (its `Sender.frame`) writes for the same
 * message, for every length class: test/ws-frame.test.ts checks it.
 */

/**
 * The last frame built per opcode, with the payload it carries: the edge
 * hands one event's payload to all its recipients in a row, so one slot per
 * encoding is a hit for every recipient after the first (no lookup table).
 */
const lastText: { data?: Uint8Array; frame?: Buffer } = {};
const lastBinary: { data?: Uint8Array; frame?: Buffer } = {};

/**
 * The complete WebSocket frame (FIN, text or binary, unmasked) carrying
 * data. The same data (the same object) twice in a row, per opcode, gives
 * the same Buffer: callers must not change either.
 */
export function frameOf(data: Uint8Array, text: boolean): Buffer {
  const last = text ? lastText : lastBinary;
  if (last.data === data) return last.frame!;
  const frame = Buffer.allocUnsafe(headSize(data.length) + data.length);
  frame.set(data, writeHead(frame, data.length, text));
  last.data = data;
  last.frame = frame;
  return frame;
}

/** The size of the header of a frame that carries len bytes. */
export function frameHeadSize(len: number): number {
  return headSize(len);
}

function headSize(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

/**
 * Writes the header of a frame of len bytes at out[0]; returns its size:
 * for a payload that one connection gets (an events frame), written after
 * it in the same buffer, without frameOf's copy or slots.
 */
export function writeHead(out: Buffer, len: number, text: boolean): number {
  out[0] = 0x80 | (text ? 0x1 : 0x2);
  if (len < 126) {
    out[1] = len;
    return 2;
  }
  if (len < 65536) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
    return 4;
  }
  out[1] = 127;
  out.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
  out.writeUInt32BE(len >>> 0, 6);
  return 10;
}
