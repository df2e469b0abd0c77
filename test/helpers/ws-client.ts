/**
 * A raw WebSocket client of the client protocol, in either encoding, for
 * tests: it decodes every frame and lets a test wait for the one it expects.
 */
import { create, fromBinary, fromJsonString, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import WebSocket from "ws";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type Event,
  type Reply,
  type ServerFrame,
} from "../../gen/realtime/client/v1/client_pb.js";

export type Enc = "json" | "proto";

export class TestClient {
  readonly frames: ServerFrame[] = [];
  id = "";
  closeCode: number | undefined;
  closeReason = "";
  private waiters: { pred: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];
  private nextId = 1;
  readonly closed: Promise<void>;

  private constructor(
    readonly ws: WebSocket,
    readonly enc: Enc,
  ) {
    ws.on("message", (data: Buffer, isBinary) => {
      const frame = isBinary ? fromBinary(ServerFrameSchema, data) : fromJsonString(ServerFrameSchema, data.toString());
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => (w.pred(frame) ? (w.resolve(frame), false) : true));
    });
    this.closed = new Promise((resolve) =>
      ws.once("close", (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      }),
    );
  }

  /** Connects and waits for the connected frame. */
  static async connect(
    url: string,
    enc: Enc = "json",
    query = "",
    headers?: Record<string, string>,
  ): Promise<TestClient> {
    const ws = new WebSocket(url + query, enc === "json" ? "realtime.v1.json" : "realtime.v1.proto", { headers });
    const client = new TestClient(ws, enc);
    const connected = await client.next((f) => f.frame.case === "connected");
    client.id = (connected.frame.value as { id: string }).id;
    return client;
  }

  /** Sends a command and resolves with its reply (errors included). */
  async request(init: MessageInitShape<typeof ClientFrameSchema>): Promise<Reply> {
    const id = this.nextId++;
    this.sendFrame({ ...init, id });
    const frame = await this.next((f) => f.frame.case === "reply" && f.frame.value.id === id);
    return frame.frame.value as Reply;
  }

  /** Sends a command and fails unless the reply is not an error. */
  async ok(init: MessageInitShape<typeof ClientFrameSchema>): Promise<Reply> {
    const reply = await this.request(init);
    if (reply.error) throw new Error(`error reply ${reply.error.code}: ${reply.error.message}`);
    return reply;
  }

  sendFrame(init: MessageInitShape<typeof ClientFrameSchema>): void {
    const frame = create(ClientFrameSchema, init);
    if (this.enc === "json") this.ws.send(toJsonString(ClientFrameSchema, frame));
    else this.ws.send(toBinary(ClientFrameSchema, frame));
  }

  /** Resolves with the first frame (already received or coming) that matches. */
  next(pred: (f: ServerFrame) => boolean, timeoutMs = 5_000): Promise<ServerFrame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching frame within ${timeoutMs} ms; got ${this.frames.length} frames`)),
        timeoutMs,
      );
      this.waiters.push({ pred, resolve: (f) => (clearTimeout(timer), resolve(f)) });
    });
  }

  /** Waits for an event frame matching name (and channel, if given). */
  async event(name: string, channel?: string, timeoutMs?: number): Promise<Event> {
    const f = await this.next(
      (f) =>
        f.frame.case === "event" &&
        f.frame.value.event === name &&
        (channel === undefined || f.frame.value.channel === channel),
      timeoutMs,
    );
    return f.frame.value as Event;
  }

  /** The ids of the members that the system events `name` this client received on channel are about. */
  told(name: string, channel: string): string[] {
    return this.events(name).flatMap((e) =>
      e.channel === channel && e.payload.case === "member" ? [e.payload.value.id] : [],
    );
  }

  /** Every event frame received so far. */
  events(name?: string): Event[] {
    return this.frames.flatMap((f) =>
      f.frame.case === "event" && (name === undefined || f.frame.value.event === name) ? [f.frame.value] : [],
    );
  }

  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await this.closed;
  }
}

/** Resolves after ms milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
