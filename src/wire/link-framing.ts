import { readVarint32, VARINT_INCOMPLETE, VARINT_INVALID, varintSize, writeVarint, type Cursor } from "./varint.js";

/**
 * The link's framing (proto/realtime/link/v1/link.proto): length-prefixed
 * frames on a byte stream, a varint length (varint.ts), then the frame
 * (realtime.link.v1.EdgeFrame or HubFrame, publication.ts for the publish
 * path, protobuf-es for the rest): the framing of protobuf's "delimited"
 * messages (what `sizeDelimitedEncode` of @bufbuild/protobuf writes). The
 * writing side, which corks a socket, is src/link/frame-writer.ts.
 * test/link-framing.test.ts checks that the frames come back whole and in
 * order however the stream is cut, and that a bad length is refused.
 */

/** The largest frame either end accepts (a members reply can be large). */
export const LINK_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** The varint length prefix of a frame of `length` bytes. */
export function frameHead(length: number): Buffer {
  const head = Buffer.allocUnsafe(varintSize(length));
  writeVarint(head, 0, length);
  return head;
}

/**
 * Splits a byte stream into frames. push() calls onFrame for each complete
 * frame, in order; a frame longer than maxFrameBytes (LINK_MAX_FRAME_BYTES
 * unless lowered), or a length that is not a valid varint (longer than five
 * bytes, or 2^32 or more), throws.
 *
 * Frames that arrive whole are views of the chunk they came in (no copy).
 * A frame split across chunks is joined once, when its last byte arrives:
 * its chunks are kept until then (a large frame costs one copy, not one per
 * chunk), and the rest of the completing chunk is read in place.
 */
export class FrameReader {
  /** The chunks of a frame that has not fully arrived (its first one may be a view). */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** Bytes that frame takes in all (varint and body), or -1 while its varint is incomplete. */
  private partialNeed = -1;
  /**
   * The largest frame accepted; checked per frame, so an onFrame callback
   * may change it for the frames that follow (the hub reads small frames
   * only until a link has authenticated).
   */
  maxFrameBytes = LINK_MAX_FRAME_BYTES;
  /** Where parse() reads the next length. */
  private readonly at: Cursor = { pos: 0 };

  constructor(private readonly onFrame: (frame: Uint8Array) => void) {}

  push(chunk: Buffer): void {
    if (this.partial.length === 0) return this.parse(chunk);
    this.partial.push(chunk);
    this.partialBytes += chunk.length;
    if (this.partialNeed < 0) {
      // The varint itself was split (it is at most 5 bytes): join and read afresh.
      const joined = Buffer.concat(this.partial, this.partialBytes);
      this.clear();
      return this.parse(joined);
    }
    if (this.partialBytes < this.partialNeed) return;
    // The frame is complete: join exactly its bytes, then read on in this chunk.
    const fromChunk = chunk.length - (this.partialBytes - this.partialNeed);
    this.partial[this.partial.length - 1] = chunk.subarray(0, fromChunk);
    const frame = Buffer.concat(this.partial, this.partialNeed);
    this.clear();
    this.parse(frame);
    this.parse(chunk.subarray(fromChunk));
  }

  private parse(buf: Buffer): void {
    const at = this.at;
    let offset = 0;
    while (offset < buf.length) {
      at.pos = offset;
      const len = readVarint32(buf, at, buf.length);
      if (len === VARINT_INCOMPLETE) return this.keep(buf.subarray(offset), -1);
      if (len === VARINT_INVALID) throw new Error("link frame length is not a valid varint");
      const pos = at.pos;
      if (len > this.maxFrameBytes) throw new Error(`link frame of ${len} bytes exceeds ${this.maxFrameBytes}`);
      if (pos + len > buf.length) return this.keep(buf.subarray(offset), pos - offset + len);
      this.onFrame(buf.subarray(pos, pos + len));
      offset = pos + len;
    }
  }

  private keep(rest: Buffer, need: number): void {
    this.partial = [rest];
    this.partialBytes = rest.length;
    this.partialNeed = need;
  }

  private clear(): void {
    this.partial = [];
    this.partialBytes = 0;
    this.partialNeed = -1;
  }
}
