import type { Socket } from "node:net";
import { frameHead } from "../wire/link-framing.js";

/**
 * Writes length-prefixed link frames (src/wire/link-framing.ts) to a TCP
 * socket. Writes made in one turn of the event loop are corked together and
 * leave in one syscall, at the end of the turn (setImmediate): every frame
 * that the I/O of this turn produced (e.g. all the events read from one
 * chunk of a Publish stream, however many promise hops each took) shares it.
 */
export class FrameWriter {
  private corked = false;
  constructor(private readonly socket: Socket) {}

  /** Queues one frame; returns false once the socket's buffer is full. */
  write(frame: Uint8Array): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(frameHead(frame.length));
    return this.socket.write(frame);
  }

  /** Bytes queued and not yet handed to the kernel. */
  get buffered(): number {
    return this.socket.writableLength;
  }
}
