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

/** Writes data as one frame to a WebSocket's socket (see above). */
export type FrameWriter = (socket: Duplex, data: Uint8Array, text: boolean) => void;

/**
 * A writer whose corked sockets are uncorked together at the end of this
 * turn of the event loop (delayMs 0), or delayMs after the first write to a
 * socket that was not corked (REALTIME_WRITE_DELAY_MS): every frame then
 * waits at most delayMs, and a connection that receives many events in that
 * time gets them in one writev, one syscall, instead of one per turn.
 * Whatever ws writes meanwhile (a ping, the close frame) waits with them, in
 * order: a close still follows the frames written before it.
 */
export function frameWriter(delayMs = 0): FrameWriter {
  let corked: Duplex[] = [];
  const uncorkAll = (): void => {
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
  };
  const schedule = delayMs > 0 ? () => setTimeout(uncorkAll, delayMs) : () => setImmediate(uncorkAll);
  return (socket, data, text) => {
    if (socket.destroyed) return;
    if (!socket.writableCorked) {
      socket.cork();
      if (corked.push(socket) === 1) schedule();
    }
    socket.write(frameOf(data, text));
  };
}

/** The writer without delay (corked to the end of the turn). */
export const writeFrame: FrameWriter = frameWriter(0);
