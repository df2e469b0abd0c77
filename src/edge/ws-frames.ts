import type { Duplex } from "node:stream";

/**
 * The edge's write path for server-to-client frames, beside `ws`'s own
 * Sender. Server frames are not masked (RFC 6455 section 5.1), so one
 * message's frame is the same bytes for every recipient: it is built once
 * (header and payload in one buffer) and written as is to each socket.
 * Writes to one socket within one turn of the event loop are corked together
 * and leave in one writev when the loop turns (setImmediate: after every
 * I/O callback of this turn, so events that arrived in several link reads of
 * one poll share it too), so a burst of messages costs one syscall per
 * connection, not one per message, and adds no timer delay.
 *
 * The socket is the one the upgrade handed to ws (WebSocketServer.handleUpgrade
 * takes it as an argument: a public reference, kept by the edge's transport).
 * Writing to it beside ws is safe because ws writes to it synchronously, in
 * call order, too: permessage-deflate is off on the edge (no compression
 * queue) and the edge never sends a Blob (ws reads those asynchronously), so
 * a frame written here and ws's own (pings, the close) leave in the order
 * they were made; ws's cork/uncork pairs nest inside ours. What is written
 * here counts in ws's `bufferedAmount` (it includes the socket's buffer).
 * test/ws-transport.test.ts pins the order and the count against this ws.
 *
 * Contract: the caller checks that the WebSocket is OPEN; frames are written
 * in call order, in order with `ws`'s own frames, and count in `bufferedAmount`.
 */

/**
 * The last frame built per opcode, with the payload it carries: the edge
 * hands one event's payload to all its recipients in a row, so one slot per
 * encoding is a hit for every recipient after the first (no lookup table).
 */
const lastText: { data?: Uint8Array; frame?: Buffer } = {};
const lastBinary: { data?: Uint8Array; frame?: Buffer } = {};
/** Sockets corked in this turn of the event loop, uncorked together at its end. */
let corked: Duplex[] = [];

/** The complete WebSocket frame (FIN, text or binary, unmasked) carrying data. */
export function frameOf(data: Uint8Array, text: boolean): Buffer {
  const last = text ? lastText : lastBinary;
  if (last.data === data) return last.frame!;
  const len = data.length;
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x80 | (text ? 0x1 : 0x2);
  if (len < 126) {
    frame[1] = len;
  } else if (len < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  frame.set(data, head);
  last.data = data;
  last.frame = frame;
  return frame;
}

/** Writes data as one frame to a WebSocket's socket (see above), corked until this turn of the event loop ends. */
export function writeFrame(socket: Duplex, data: Uint8Array, text: boolean): void {
  if (socket.destroyed) return;
  if (!socket.writableCorked) {
    socket.cork();
    if (corked.push(socket) === 1) setImmediate(uncorkAll);
  }
  socket.write(frameOf(data, text));
}

function uncorkAll(): void {
  const sockets = corked;
  corked = [];
  for (const socket of sockets) {
    // Every socket must be uncorked, or it would hold its writes forever:
    // one that fails (destroyed meanwhile) must not stop the others.
    try {
      socket.uncork();
    } catch {
      socket.destroy();
    }
  }
}
