import type { Socket } from "node:net";

/**
 * Length-prefixed frames on a TCP socket: a varint length, then the frame.
 * Writes made in one turn of the event loop are corked together and leave
 * in one syscall, at the end of the turn (setImmediate): every frame that
 * the I/O of this turn produced (e.g. all the events read from one chunk of
 * a Publish stream, however many promise hops each took) shares it.
 */

/** The largest frame either end accepts (a members reply can be large). */
export const LINK_MAX_FRAME_BYTES = 64 * 1024 * 1024;

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
    this.socket.write(varint(frame.length));
    return this.socket.write(frame);
  }

  /** Bytes queued and not yet handed to the kernel. */
  get buffered(): number {
    return this.socket.writableLength;
  }
}

/**
 * Splits a byte stream into frames. push() calls onFrame for each complete
 * frame; a frame longer than LINK_MAX_FRAME_BYTES throws.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (frame: Uint8Array) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let offset = 0;
    for (;;) {
      let len = 0;
      let shift = 0;
      let pos = offset;
      let complete = false;
      while (pos < this.buf.length && shift < 35) {
        const b = this.buf[pos++]!;
        len |= (b & 0x7f) << shift;
        if (b < 0x80) {
          complete = true;
          break;
        }
        shift += 7;
      }
      if (!complete) {
        if (shift >= 35) throw new Error("link frame length is not a valid varint");
        break;
      }
      len >>>= 0;
      if (len > LINK_MAX_FRAME_BYTES) throw new Error(`link frame of ${len} bytes exceeds ${LINK_MAX_FRAME_BYTES}`);
      if (pos + len > this.buf.length) break;
      const frame = this.buf.subarray(pos, pos + len);
      offset = pos + len;
      this.onFrame(frame);
    }
    this.buf = offset === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(offset);
  }
}

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}
