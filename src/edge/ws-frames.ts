import type { Duplex } from "node:stream";
import { MAX_EVENTS_FRAME_EVENTS } from "../core/limits.js";
import { eventsFrameSize, writeEventsFrame } from "../wire/client-codec.js";
import { frameHeadSize, frameOf, writeHead } from "../wire/ws-frame.js";

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
 * Contract: the caller checks that the WebSocket is OPEN (an EventBatch
 * checks again when it writes what it held); frames are written in call
 * order, in order with `ws`'s own frames, and count in `bufferedAmount`
 * (held event frames count in EventBatch.bytes until they are written).
 */

/**
 * Room an events frame takes beyond the event frames it packs: JSON's
 * `{"events":{"events":[` and `]}}` (each event frame's own wrapper is
 * longer than the comma that replaces it); binary's tag and length.
 */
const EVENTS_FRAME_ROOM = 24;

/**
 * The write path of one edge: writes frames to sockets, corked together
 * until the end of this turn of the event loop (delayMs 0), or until delayMs
 * after the first write to a socket that was not corked
 * (REALTIME_WRITE_DELAY_MS): every frame then waits at most delayMs, and a
 * connection that receives many events in that time gets them in one
 * writev, one syscall, instead of one per turn. Whatever ws writes
 * meanwhile (a ping, the close frame) waits with them, in order: a close
 * still follows the frames written before it. The EventBatches of its
 * connections (REALTIME_WRITE_BATCH) write what they hold just before.
 */
export class FrameWriter {
  private corked: Duplex[] = [];
  private batches: EventBatch[] = [];
  private scheduled = false;

  constructor(readonly delayMs = 0) {}

  /** Writes data as one frame to a WebSocket's socket (see the module comment). */
  readonly write = (socket: Duplex, data: Uint8Array, text: boolean): void => {
    if (socket.destroyed) return;
    this.cork(socket);
    socket.write(frameOf(data, text));
  };

  /**
   * Writes the events frame of eventFrames (client-codec.ts), which one
   * connection gets: header and payload built in one buffer from Node's
   * pool, nothing copied twice.
   */
  writeEvents(socket: Duplex, eventFrames: readonly Uint8Array[], text: boolean): void {
    if (socket.destroyed) return;
    const size = eventsFrameSize(eventFrames, text);
    const out = Buffer.allocUnsafe(frameHeadSize(size) + size);
    writeEventsFrame(out, writeHead(out, size, text), eventFrames, text);
    this.cork(socket);
    socket.write(out);
  }

  /** batch holds event frames: they are written when the delay ends, before the sockets are uncorked. */
  holding(batch: EventBatch): void {
    this.batches.push(batch);
    this.wake();
  }

  private cork(socket: Duplex): void {
    if (socket.writableCorked) return;
    socket.cork();
    this.corked.push(socket);
    this.wake();
  }

  private wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.delayMs > 0) setTimeout(this.uncorkAll, this.delayMs);
    else setImmediate(this.uncorkAll);
  }

  private readonly uncorkAll = (): void => {
    // What batches hold goes first, into the corked sockets (corking those that were not).
    const batches = this.batches;
    this.batches = [];
    for (const batch of batches) batch.ended();
    const sockets = this.corked;
    this.corked = [];
    this.scheduled = false;
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
}

/** The writer without delay (corked to the end of the turn), shared by every server that has none. */
export const UNDELAYED_WRITER = new FrameWriter(0);

/** UNDELAYED_WRITER's write. */
export const writeFrame = UNDELAYED_WRITER.write;

/**
 * The event frames of one connection (REALTIME_WRITE_BATCH, the client
 * asked with events=batch) that wait for its writer's delay to end: then
 * they leave as one events frame (ServerFrame.events, spliced from them by
 * client-codec.ts), or as the event frame itself when there is one.
 *
 * Contract: the frames a connection is sent leave in the order they were
 * sent. So the transport flushes the batch before any other frame of the
 * connection (a reply, presence, resync) and before its close; a frame
 * leaves at most the writer's delay after it was sent. A frame is at most
 * MAX_EVENTS_FRAME_EVENTS events and maxBytes of payload: the event that
 * would pass either starts the next one, and an event frame that does not
 * fit alone goes alone. Held frames count in the connection's queue
 * (bytes). When ws began closing the connection on its own meanwhile (the
 * client's close, a protocol error: no data frame may follow a close
 * frame), they are dropped.
 */
export class EventBatch {
  private frames: Uint8Array[] = [];
  private text = false;
  private queued = false;
  /** Bytes of the event frames held, which count in the connection's queue (Transport.bufferedBytes). */
  bytes = 0;

  constructor(
    private readonly writer: FrameWriter,
    private readonly socket: Duplex,
    /** Whether the connection may still be sent data frames (ws is OPEN). */
    private readonly open: () => boolean,
    private readonly maxBytes: number,
  ) {}

  /** Holds an event frame (ServerFrame{event}, client-codec.ts binaryEventFrame or jsonEventFrame). */
  add(frame: Uint8Array, text: boolean): void {
    if (this.socket.destroyed) return;
    const n = this.frames.length;
    if (n === MAX_EVENTS_FRAME_EVENTS || (n > 0 && this.bytes + frame.length + EVENTS_FRAME_ROOM > this.maxBytes))
      this.flush();
    if (frame.length + EVENTS_FRAME_ROOM > this.maxBytes) return this.writer.write(this.socket, frame, text);
    this.frames.push(frame);
    this.bytes += frame.length;
    this.text = text;
    if (!this.queued) {
      this.queued = true;
      this.writer.holding(this);
    }
  }

  /** The writer's delay ended: what is held leaves now; the next frame held waits for the next delay. */
  ended(): void {
    this.queued = false;
    try {
      this.flush();
    } catch {
      // Only a frame that is not an event frame (the caller's bug) fails to
      // pack: the connection cannot be sent its events in order any more.
      this.socket.destroy();
    }
  }

  /** Writes what is held now, as one frame (the connection is about to be sent another frame, or the delay ended). */
  flush(): void {
    const frames = this.frames;
    if (frames.length === 0) return;
    this.frames = [];
    this.bytes = 0;
    if (this.socket.destroyed || !this.open()) return;
    if (frames.length === 1) return this.writer.write(this.socket, frames[0]!, this.text);
    this.writer.writeEvents(this.socket, frames, this.text);
  }
}
