import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { ErrorCode } from "../../gen/realtime/client/v1/client_pb.js";
import { HubFrameSchema, type LinkReplySchema, type EdgeFrame } from "../../gen/realtime/link/v1/link_pb.js";
import type { Publication } from "../core/broker.js";
import type { MemoryBroker, MemoryNode } from "../core/broker-memory.js";
import { asRealtimeError, Code } from "../protocol/errors.js";
import {
  LINK_MAX_BUFFERED_BYTES,
  MAX_HISTORY_LIMIT,
  MAX_HISTORY_REPLY_BYTES,
  MAX_MEMBERS_PAGE_BYTES,
} from "../core/limits.js";
import { fitHistory } from "../core/history.js";
import type { Observer } from "../core/observer.js";
import { fitPage, memberSize } from "../core/pages.js";
import type { MemberPage, ReportChanges } from "../core/presence.js";
import { Encoding } from "../protocol/encodings.js";
import type { MemoryPresence } from "../core/presence-memory.js";
import { FrameReader, LINK_MAX_FRAME_BYTES } from "../wire/link-framing.js";
import { FrameWriter } from "./frame-writer.js";
import {
  createNonce,
  LINK_AUTH_TIMEOUT_MS,
  LINK_MAX_HELLO_FRAME_BYTES,
  LinkRefusedError,
  verifyLinkProof,
} from "./link-auth.js";
import { decodeEdgeFrame, encodeHubPublication } from "../wire/publication.js";

/** What one member adds to a LinkReply (protobuf binary). */
const BINARY_MEMBER_SIZE = memberSize(Encoding.Proto);

export interface LinkServerOptions {
  broker: MemoryBroker;
  presence: MemoryPresence;
  /** How long an edge's members outlive its link (DEFAULT_EDGE_GRACE_MS). */
  graceMs: number;
  /**
   * Where the members the hub removes by itself are reported (the
   * membership room's announce, which publishes their channel:leave): an
   * edge's after its grace period, and those an edge's resync did not
   * re-send.
   */
  announce: ReportChanges;
  /**
   * The link secret (REALTIME_LINK_SECRET): an edge's Hello must prove it
   * holds it (link-auth.ts). Empty or undefined: any Hello is accepted, so
   * the caller must listen on loopback only (auth/exposure.ts).
   */
  secret?: string;
  /** How long a link may take to authenticate before it is closed (LINK_AUTH_TIMEOUT_MS). */
  authTimeoutMs?: number;
  /** Faults of the link, for logs; err is a LinkRefusedError when an edge failed to authenticate. */
  onError?: (err: unknown, context: string) => void;
  /** Told of each edge link dropped for falling behind (dropped "edge_backpressure"). Default: none. */
  observer?: Observer;
  onEdge?: (edgeId: string, connected: boolean) => void;
}

/**
 * LinkServer is the hub end of the embedded mode's link: edges connect to it
 * over TCP, and it attaches each to the hub's MemoryBroker and MemoryPresence.
 *
 * Guarantees: no frame of a link is handled before its Hello is accepted
 * (with a secret, only a Hello that proves it): any other frame, or a bad
 * Hello, is answered UNAUTHENTICATED and the link is closed, and a link
 * without an accepted Hello within authTimeoutMs is closed. Each
 * publication is encoded once, whatever the number of edges; frames from
 * one edge are handled in order; when an edge's link drops, its members
 * stay (GetMembers of their channels is UNAVAILABLE) for graceMs, then are
 * removed and reported (announce: channel:leave for each) — unless the edge
 * comes back and re-synchronises first. The members a resync did not
 * re-send are removed and reported when it ends (synced).
 */
export class LinkServer {
  private readonly server: Server;
  private readonly links = new Set<EdgeLink>();
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  /** The link of each edge id that is connected now. */
  private readonly live = new Map<string, EdgeLink>();
  private readonly encoded = new WeakMap<Publication, Uint8Array>();

  constructor(readonly options: LinkServerOptions) {
    this.server = createServer((socket) => this.accept(socket));
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  /** Closes every link and stops listening; the members of every edge are dropped. */
  async close(): Promise<void> {
    for (const timer of this.graceTimers.values()) clearTimeout(timer);
    this.graceTimers.clear();
    for (const link of this.links) link.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The number of edges connected now. */
  get edges(): number {
    return this.live.size;
  }

  /** The HubFrame carrying pub, encoded once per publication. */
  encodePublication(pub: Publication): Uint8Array {
    let bytes = this.encoded.get(pub);
    if (!bytes) {
      bytes = encodeHubPublication(pub);
      this.encoded.set(pub, bytes);
    }
    return bytes;
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 5_000);
    const reader = new FrameReader((bytes) => link.handle(decodeEdgeFrame(bytes)));
    // Until the Hello is accepted, only frames the size of a Hello are read.
    reader.maxFrameBytes = LINK_MAX_HELLO_FRAME_BYTES;
    const timeoutMs = this.options.authTimeoutMs ?? LINK_AUTH_TIMEOUT_MS;
    const deadline = setTimeout(() => {
      this.options.onError?.(
        new LinkRefusedError(`${peer(socket)} did not authenticate within ${timeoutMs} ms; closing its link`),
        "link authentication",
      );
      socket.destroy();
    }, timeoutMs);
    deadline.unref();
    const link = new EdgeLink(this, socket, createNonce(), () => {
      clearTimeout(deadline);
      reader.maxFrameBytes = LINK_MAX_FRAME_BYTES;
    });
    this.links.add(link);
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.options.onError?.(err, "link frame from an edge");
        socket.destroy();
      }
    });
    socket.on("error", () => {
      // 'close' follows; an edge going away is not an error of the hub.
    });
    socket.on("close", () => {
      clearTimeout(deadline);
      this.links.delete(link);
      link.closed();
    });
    link.challenge();
  }

  /** @internal An edge said hello: it is (back) in, and re-sends what it holds. */
  hello(link: EdgeLink, edgeId: string): void {
    const previous = this.live.get(edgeId);
    if (previous && previous !== link) previous.socket.destroy();
    this.live.set(edgeId, link);
    const timer = this.graceTimers.get(edgeId);
    if (timer) {
      clearTimeout(timer);
      this.graceTimers.delete(edgeId);
    }
    this.options.presence.beginSync(edgeId);
    this.options.onEdge?.(edgeId, true);
  }

  /** @internal An edge's link closed. */
  gone(link: EdgeLink, edgeId: string): void {
    if (this.live.get(edgeId) !== link) return;
    this.live.delete(edgeId);
    this.options.presence.setReachable(edgeId, false);
    this.options.onEdge?.(edgeId, false);
    const timer = setTimeout(() => {
      this.graceTimers.delete(edgeId);
      void this.options.announce(this.options.presence.dropOwner(edgeId));
    }, this.options.graceMs);
    timer.unref();
    this.graceTimers.set(edgeId, timer);
  }
}

/** One edge's connection to the hub. */
class EdgeLink {
  private edgeId = "";
  private node: MemoryNode | undefined;
  /** The link was refused: nothing more it sends is handled. */
  private refused = false;
  private readonly writer: FrameWriter;

  constructor(
    private readonly hub: LinkServer,
    readonly socket: Socket,
    /** The challenge this link's Hello must sign. */
    private readonly nonce: Uint8Array,
    /** Called once, when the Hello is accepted. */
    private readonly onAuthenticated: () => void,
  ) {
    this.writer = new FrameWriter(socket);
  }

  /** Sends the challenge: the first frame on every link. */
  challenge(): void {
    this.writer.write(
      toBinary(HubFrameSchema, create(HubFrameSchema, { frame: { case: "challenge", value: { nonce: this.nonce } } })),
    );
  }

  handle(frame: EdgeFrame): void {
    if (this.refused) return;
    const { broker, presence } = this.hub.options;
    const { id } = frame;
    const f = frame.frame;
    if (!this.node) {
      if (f.case !== "hello")
        return this.refuse(id, "the first frame on the link must be hello: this link is not authenticated");
      const problem = this.checkHello(f.value.edgeId, f.value.proof);
      if (problem) return this.refuse(id, problem);
    }
    try {
      switch (f.case) {
        case "hello":
          if (this.node) throw new Error("hello was sent twice");
          this.edgeId = f.value.edgeId;
          this.onAuthenticated();
          this.node = broker.attach((pub) => this.deliver(pub), true);
          this.hub.hello(this, this.edgeId);
          return this.reply({ id });
        case "subscribe":
          void this.node!.subscribe(f.value);
          return this.reply({ id });
        case "unsubscribe":
          void this.node!.unsubscribe(f.value);
          return this.reply({ id });
        case "publish": {
          const { edges, offset, epoch } = broker.publish(f.value);
          return this.reply({ id, edges, position: offset === 0n ? undefined : { offset, epoch } });
        }
        case "history": {
          const { channel, since, limit, reverse } = f.value;
          const read = broker.streams.read(channel, {
            since: since ? { offset: since.offset, epoch: since.epoch } : undefined,
            limit: Math.max(1, Math.min(limit, MAX_HISTORY_LIMIT)),
            newestFirst: reverse,
          });
          const { publications, position, complete } = fitHistory(read, MAX_HISTORY_REPLY_BYTES);
          return this.reply({ id, publications, position, complete });
        }
        case "presenceAdd":
          return this.reply({ id, transitionUnixUs: presence.add(this.edgeId, f.value.channel, f.value.member!) });
        case "presenceRemove":
          return this.reply({ id, transitionUnixUs: presence.depart(this.edgeId, f.value.channel, f.value.memberId) });
        case "presenceDeparted":
          presence.departed(this.edgeId, f.value.channel, f.value.memberId);
          return;
        case "members":
          return this.reply({ id, members: presence.members(f.value) });
        case "membersPage":
          return this.replyPage(id, presence.page(f.value.channel, f.value.after, f.value.limit));
        case "synced":
          void this.hub.options.announce(presence.endSync(this.edgeId));
          return this.reply({ id });
        default:
          throw new Error("unknown link frame");
      }
    } catch (err) {
      const e = asRealtimeError(err);
      this.reply({ id, error: { code: e.code as number as ErrorCode, message: e.message } });
    }
  }

  closed(): void {
    this.node?.close();
    if (this.edgeId) this.hub.gone(this, this.edgeId);
  }

  /** Why a Hello is not accepted, or undefined when it is. */
  private checkHello(edgeId: string, proof: Uint8Array): string | undefined {
    if (edgeId === "") return "hello has no edge_id";
    const secret = this.hub.options.secret;
    if (!secret) return undefined;
    if (proof.length === 0)
      return "this API requires edges to authenticate: set REALTIME_LINK_SECRET on the edge to the API's value";
    if (!verifyLinkProof(secret, this.nonce, edgeId, proof))
      return "link authentication failed: the edge's REALTIME_LINK_SECRET is not the API's";
    return undefined;
  }

  /** Answers UNAUTHENTICATED, handles nothing more, and closes the link once the answer is written. */
  private refuse(id: number, message: string): void {
    this.refused = true;
    this.hub.options.onError?.(
      new LinkRefusedError(`refused a link from ${peer(this.socket)}: ${message}`),
      "link authentication",
    );
    this.reply({ id, error: { code: Code.Unauthenticated as number as ErrorCode, message } });
    this.socket.destroySoon();
  }

  private deliver(pub: Publication): void {
    if (this.socket.destroyed) return;
    this.writer.write(this.hub.encodePublication(pub));
    if (this.writer.buffered > LINK_MAX_BUFFERED_BYTES) {
      this.hub.options.observer?.dropped("edge_backpressure", 1);
      this.hub.options.onError?.(
        new Error(`edge ${this.edgeId} fell ${this.writer.buffered} bytes behind; dropping its link`),
        "link backpressure",
      );
      this.socket.destroy();
    }
  }

  /** A members page, cut to MAX_MEMBERS_PAGE_BYTES of members (with at least one member). */
  private replyPage(id: number, page: MemberPage): void {
    const { members, more } = fitPage(page, MAX_MEMBERS_PAGE_BYTES, BINARY_MEMBER_SIZE);
    this.reply({ id, members, more });
  }

  /**
   * Writes a reply. One the edge could not read (over LINK_MAX_FRAME_BYTES:
   * a legacy members request for a huge channel) fails that request
   * instead, with RESOURCE_EXHAUSTED: the link stays up.
   */
  private reply(init: MessageInitShape<typeof LinkReplySchema> & { id: number }): void {
    if (init.id === 0 && !init.error) return;
    if (this.socket.destroyed) return;
    let frame = encodeReply(init);
    if (frame.length > LINK_MAX_FRAME_BYTES) {
      frame = encodeReply({
        id: init.id,
        error: {
          code: Code.ResourceExhausted as number as ErrorCode,
          message: `the reply would be ${frame.length} bytes, over the link's frame limit of ${LINK_MAX_FRAME_BYTES}: ask for members in pages (members_page)`,
        },
      });
    }
    this.writer.write(frame);
  }
}

/** The remote address of a link, for logs. */
function peer(socket: Socket): string {
  return `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`;
}

function encodeReply(init: MessageInitShape<typeof LinkReplySchema>): Uint8Array {
  return toBinary(HubFrameSchema, create(HubFrameSchema, { frame: { case: "reply", value: init } }));
}
