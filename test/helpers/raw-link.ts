/**
 * A raw client of the API's link port, built from the generated link schemas
 * and src/wire/link-framing.ts only: what an intruder on the network (or a
 * hand-written edge) can send. It records every HubFrame and lets a test
 * wait for the one it expects, or for the hub to close the connection.
 */
import { create, fromBinary, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { createHmac } from "node:crypto";
import { connect, type Socket } from "node:net";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  EdgeFrameSchema,
  HubFrameSchema,
  type HubFrame,
  type LinkReply,
  type Publication,
} from "../../gen/realtime/link/v1/link_pb.js";
import { splitHostPort } from "../../src/config.js";
import { FrameReader } from "../../src/wire/link-framing.js";
import { FrameWriter } from "../../src/link/frame-writer.js";

/**
 * Hello.proof as link.proto documents it, computed here independently of
 * src/link: HMAC-SHA256(secret, "switchboard link v1" 0x00 nonce edge_id).
 */
export function documentedProof(secret: string, nonce: Uint8Array, edgeId: string): Uint8Array {
  return createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(Buffer.from("switchboard link v1\0", "ascii"))
    .update(nonce)
    .update(Buffer.from(edgeId, "utf8"))
    .digest();
}

/** A publication of an application event, as an edge would publish it. */
export function rawPublication(channel: string, event: string, text: string): Publication {
  const ev = create(EventSchema, {
    id: `raw.${event}`,
    channel,
    event,
    payload: { case: "json", value: { kind: { case: "stringValue", value: text } } },
  });
  return {
    $typeName: "realtime.link.v1.Publication",
    channel,
    event: toBinary(EventSchema, ev),
    eventJson: toJsonString(EventSchema, ev),
    origin: "",
    skipOrigin: false,
    offset: 0n,
    epoch: "",
    acceptedUnixMs: 0n,
  };
}

export class RawLink {
  readonly frames: HubFrame[] = [];
  /** Sizes of the frames received, in the same order. */
  readonly sizes: number[] = [];
  /** Set when a frame from the hub could not be read (too large, not a frame). */
  readError: Error | undefined;
  /** Set when the hub closed (or reset) the connection. */
  closedAt: number | undefined;
  readonly closed: Promise<void>;
  private waiters: { pred: (f: HubFrame) => boolean; resolve: (f: HubFrame | undefined) => void }[] = [];
  private nextId = 1;

  private constructor(
    readonly socket: Socket,
    private readonly writer: FrameWriter,
  ) {
    const reader = new FrameReader((bytes) => {
      const frame = fromBinary(HubFrameSchema, bytes);
      this.frames.push(frame);
      this.sizes.push(bytes.length);
      this.waiters = this.waiters.filter((w) => (w.pred(frame) ? (w.resolve(frame), false) : true));
    });
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        // A frame over the limit (or garbage): what an edge would drop the link for.
        this.readError = err as Error;
        socket.destroy();
      }
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.closedAt = performance.now();
        for (const w of this.waiters) w.resolve(undefined);
        this.waiters = [];
        resolve();
      }),
    );
  }

  static async connect(link: string): Promise<RawLink> {
    const { host, port } = splitHostPort(link);
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    socket.setNoDelay(true);
    return new RawLink(socket, new FrameWriter(socket));
  }

  send(init: MessageInitShape<typeof EdgeFrameSchema>): void {
    if (!this.socket.destroyed) this.writer.write(toBinary(EdgeFrameSchema, create(EdgeFrameSchema, init)));
  }

  /** Sends a frame with a fresh id and resolves with its reply (undefined if the link closed or timed out). */
  async request(init: MessageInitShape<typeof EdgeFrameSchema>, timeoutMs = 5_000): Promise<LinkReply | undefined> {
    const id = this.nextId++;
    this.send({ ...init, id });
    const f = await this.next((f) => f.frame.case === "reply" && f.frame.value.id === id, timeoutMs);
    return f?.frame.value as LinkReply | undefined;
  }

  /** The first frame (received or coming) that matches; undefined on timeout or close. */
  next(pred: (f: HubFrame) => boolean, timeoutMs = 5_000): Promise<HubFrame | undefined> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    if (this.closedAt !== undefined) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        resolve(undefined);
      }, timeoutMs);
      const done = (f: HubFrame | undefined) => (clearTimeout(timer), resolve(f));
      this.waiters.push({ pred, resolve: done });
    });
  }

  /** The hub's challenge nonce, or an empty one if none came within timeoutMs. */
  async challenge(timeoutMs = 1_000): Promise<Uint8Array> {
    const f = await this.next((f) => (f.frame.case as string) === "challenge", timeoutMs);
    return f?.frame.case === "challenge" ? f.frame.value.nonce : new Uint8Array();
  }

  /** Every error reply received so far. */
  errors(): { id: number; code: number; message: string }[] {
    return this.frames.flatMap((f) =>
      f.frame.case === "reply" && f.frame.value.error
        ? [{ id: f.frame.value.id, code: f.frame.value.error.code, message: f.frame.value.error.message }]
        : [],
    );
  }

  /** Resolves true once the hub closed the connection, false if it is still open after timeoutMs. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      this.closed.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return closed;
  }

  close(): void {
    this.socket.destroy();
  }
}
