/**
 * A fake edge on the API's link port, for load that real WebSocket clients
 * would make too heavy for a test: it speaks the real link protocol (hello,
 * presence_add) so the API holds the members as if an edge held them.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import { connect, type Socket } from "node:net";
import { EdgeFrameSchema, HubFrameSchema } from "../../gen/realtime/link/v1/link_pb.js";
import { splitHostPort } from "../../src/config.js";
import { FrameReader } from "../../src/wire/link-framing.js";
import { FrameWriter } from "../../src/link/frame-writer.js";

export class FakeEdge {
  private nextId = 1;
  private readonly waiting = new Map<number, () => void>();
  private constructor(
    private readonly socket: Socket,
    private readonly writer: FrameWriter,
  ) {}

  static async connect(link: string, edgeId: string): Promise<FakeEdge> {
    const { host, port } = splitHostPort(link);
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const edge = new FakeEdge(socket, new FrameWriter(socket));
    const reader = new FrameReader((bytes) => {
      const f = fromBinary(HubFrameSchema, bytes);
      if (f.frame.case === "reply") edge.waiting.get(f.frame.value.id)?.();
    });
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    await edge.request({ frame: { case: "hello", value: { edgeId } } });
    return edge;
  }

  /**
   * Adds `count` members to each channel, without waiting for replies;
   * resolves once the hub has them all. data: each member's profile;
   * userId: each member's user.
   */
  async addMembers(
    channels: string[],
    count: number,
    idPrefix: string,
    data?: (n: number) => Value,
    userId?: (n: number) => string,
  ): Promise<void> {
    let n = 0;
    for (const channel of channels) {
      for (let i = 0; i < count; i++) {
        const id = `${idPrefix}${String(n).padStart(6, "0")}`;
        const member = { id, data: data?.(n), userId: userId?.(n) };
        this.send({ id: 0, frame: { case: "presenceAdd", value: { channel, member } } });
        n++;
      }
      // Let the socket drain now and then.
      if (n % 5000 < count) await new Promise((r) => setImmediate(r));
    }
    await this.request({ frame: { case: "synced", value: {} } });
  }

  /** Removes members from channel; resolves once the hub has. */
  async removeMembers(channel: string, ids: readonly string[]): Promise<void> {
    for (const memberId of ids) this.send({ id: 0, frame: { case: "presenceRemove", value: { channel, memberId } } });
    await this.request({ frame: { case: "synced", value: {} } });
  }

  close(): void {
    this.socket.destroy();
  }

  private send(init: MessageInitShape<typeof EdgeFrameSchema>): void {
    this.writer.write(toBinary(EdgeFrameSchema, create(EdgeFrameSchema, init)));
  }

  private request(init: MessageInitShape<typeof EdgeFrameSchema>): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.send({ ...init, id });
    });
  }
}
