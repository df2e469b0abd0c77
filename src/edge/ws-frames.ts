import type { Duplex } from "node:stream";
import { frameOf } from "../wire/ws-frame.js";

/**
 * The edge's write path for server-to-client frames, beside `ws`'s own
 * Sender. Server frames are not masked (RFC 6455 section 5.1), so one
 * message's frame is the same bytes for every recipient: it is built once
 * (header and payload in one buffer, src/wire/ws-frame.ts) and written as is
 * to each socket.
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

/** Sockets corked in this turn of the event loop, uncorked together at its end. */
let corked: Duplex[] = [];

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
