import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { connect, type Socket } from "node:net";
import type { Member } from "../../gen/realtime/client/v1/client_pb.js";
import { EdgeFrameSchema, type LinkReply } from "../../gen/realtime/link/v1/link_pb.js";
import type { Broker, Delivery, HistoryQuery, HistoryResult, Publication, PublicationHandler } from "../core/broker.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { LINK_REQUEST_TIMEOUT_MS } from "../core/limits.js";
import { MAX_PAGE_SIZE } from "../core/pages.js";
import type { MemberPage, Presence, Transition } from "../core/presence.js";
import { FrameReader } from "../wire/link-framing.js";
import { decodeHubFrame, encodeEdgePublish } from "../wire/publication.js";
import { FrameWriter } from "./frame-writer.js";
import { LINK_AUTH_TIMEOUT_MS, LinkRefusedError, linkProof } from "./link-auth.js";

/** First delay before reconnecting the link; doubles up to the max, with jitter. */
export const LINK_RECONNECT_INITIAL_MS = 100;
export const LINK_RECONNECT_MAX_MS = 3_000;
/**
 * How long an edge whose link came back holds the channel:join/leave it
 * owes from the outage (core/membership.ts, hold): the API may have
 * restarted, and every other live edge re-attaches within its backoff
 * (at most LINK_RECONNECT_MAX_MS) plus its resync. An edge slower than this
 * misses them (at most once).
 */
export const LINK_SETTLE_MS = LINK_RECONNECT_MAX_MS + 2_000;

export interface LinkBrokerOptions {
  host: string;
  port: number;
  /** This edge's id, the same across reconnects. */
  edgeId: string;
  /**
   * The link secret (REALTIME_LINK_SECRET) that the hub's challenge is
   * signed with (link-auth.ts). Empty or undefined: the Hello carries no
   * proof, which only a hub without a secret accepts.
   */
  secret?: string;
  onPublication: PublicationHandler;
  /** What this edge holds, re-sent to the hub after every (re)connect. */
  snapshot: () => { channels: string[]; members: { channel: string; member: Member }[] };
  /**
   * The link is up (true: the hub has acknowledged this edge's hello and
   * resync, so publishes reach its connections) or down (false, only after
   * an up, and not once close() was called: closing is not an outage).
   */
  onStateChange?: (connected: boolean) => void;
  /**
   * Faults of the link. A LinkRefusedError means the hub refused this
   * edge's Hello (a wrong or missing secret): permanent until the
   * configuration changes; the link keeps retrying at its slowest backoff.
   */
  onError?: (err: unknown, context: string) => void;
}

interface Pending {
  resolve: (reply: LinkReply) => void;
  reject: (err: Error) => void;
  /** performance.now() past which the request fails with UNAVAILABLE. */
  deadline: number;
}

/**
 * LinkBroker is an edge's end of the embedded mode's link: the Broker and
 * Presence seams, served by the hub (the API process) over one TCP
 * connection that it keeps open, reconnecting with jittered backoff.
 *
 * Guarantees: requests reach the hub in the order they are made; while the
 * link is down every request fails at once with UNAVAILABLE (never queued,
 * never silently dropped); after a reconnect the edge's subscriptions and
 * members are re-sent before any new request, so a request that failed
 * while in flight (the link broke, or it timed out and the link was
 * dropped for it) leaves the hub as the edge's snapshot says, whether or
 * not the hub had applied it. The link counts as up
 * (`isConnected`, `start()`, `onStateChange(true)`) only once the hub has
 * answered that resync: from then on the hub counts this edge in every
 * publish, so "the edge is ready" means a Send right after reaches it.
 * The backoff starts again from its shortest delay only once a link was up;
 * a link the hub refused is retried at the longest delay.
 */
export class LinkBroker implements Broker, Presence {
  private socket: Socket | undefined;
  private writer: FrameWriter | undefined;
  /** The TCP connection is open: frames can be sent. */
  private connected = false;
  /** The hub acknowledged this connection's resync. */
  private up = false;
  private stopped = false;
  private nextId = 1;
  /** Requests awaiting their reply, oldest first (every one has the same timeout, so deadlines ascend). */
  private readonly pending = new Map<number, Pending>();
  /** One timer for all pending requests, armed for the oldest one's deadline. */
  private timeoutTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Fails a connection whose hub sends no challenge in time (with a secret). */
  private challengeTimer: NodeJS.Timeout | undefined;
  /** This connection has sent its Hello. */
  private saidHello = false;
  /** The hub refused this connection's Hello. */
  private refused = false;
  private firstConnect: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly options: LinkBrokerOptions) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstConnect = { promise, resolve };
  }

  /** Starts connecting; resolves once the link is up the first time. */
  start(): Promise<void> {
    this.dial();
    return this.firstConnect.promise;
  }

  get isConnected(): boolean {
    return this.up;
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.failPending("the edge is shutting down");
    const socket = this.socket;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.end();
        setTimeout(() => socket.destroy(), 1_000).unref();
      });
    }
  }

  async publish(pub: Publication): Promise<Delivery> {
    const reply = await this.requestFrame((id) => encodeEdgePublish(id, pub));
    const position = reply.position;
    return { edges: reply.edges, offset: position?.offset ?? 0n, epoch: position?.epoch ?? "" };
  }

  async subscribe(channel: string): Promise<void> {
    await this.request({ frame: { case: "subscribe", value: channel } });
  }

  /** The hub's history of the channel (bounded in bytes by the hub: fewer than limit may come back). */
  async history(channel: string, query: HistoryQuery): Promise<HistoryResult> {
    const reply = await this.request({
      frame: {
        case: "history",
        value: { channel, since: query.since, limit: query.limit, reverse: query.newestFirst ?? false },
      },
    });
    return {
      publications: reply.publications,
      position: { offset: reply.position?.offset ?? 0n, epoch: reply.position?.epoch ?? "" },
      complete: reply.complete,
    };
  }

  async unsubscribe(channel: string): Promise<void> {
    // Needs no answer; ordering on the link keeps a later subscribe after it.
    this.send({ id: 0, frame: { case: "unsubscribe", value: channel } });
  }

  async add(channel: string, member: Member): Promise<Transition> {
    return (await this.request({ frame: { case: "presenceAdd", value: { channel, member } } })).transitionUnixUs;
  }

  async remove(channel: string, memberId: string): Promise<Transition> {
    return (await this.request({ frame: { case: "presenceRemove", value: { channel, memberId } } })).transitionUnixUs;
  }

  departed(channel: string, memberId: string): void {
    // Needs no answer; lost with a dropped link, it costs a second leave if this edge dies (Presence.remove).
    if (this.connected) this.send({ id: 0, frame: { case: "presenceDeparted", value: { channel, memberId } } });
  }

  /**
   * Every member, read page by page (so that no reply on the link is
   * unbounded): each page is whole, but members that join or leave while
   * the pages are read may or may not be listed.
   */
  async members(channel: string): Promise<Member[]> {
    const out: Member[] = [];
    let after = "";
    for (;;) {
      const page = await this.page(channel, after, MAX_PAGE_SIZE);
      out.push(...page.members);
      if (!page.more || page.members.length === 0) return out;
      after = page.members.at(-1)!.id;
    }
  }

  /** One page, as the hub cuts it (at most MAX_MEMBERS_PAGE_BYTES). */
  async page(channel: string, after: string, limit: number): Promise<MemberPage> {
    const reply = await this.request({ frame: { case: "membersPage", value: { channel, after, limit } } });
    return { members: reply.members, more: reply.more };
  }

  private request(init: MessageInitShape<typeof EdgeFrameSchema>): Promise<LinkReply> {
    return this.requestFrame((id) => encodeEdgeFrame({ ...init, id }));
  }

  /** Sends the frame that encode(id) returns, under a fresh id, and resolves with the hub's reply to it. */
  private requestFrame(encode: (id: number) => Uint8Array): Promise<LinkReply> {
    if (!this.connected) {
      return Promise.reject(
        new RealtimeError(
          Code.Unavailable,
          "this edge has lost its link to the API process; it is reconnecting, try again shortly",
        ),
      );
    }
    const id = this.nextId++;
    if (this.nextId > 0xffffffff) this.nextId = 1;
    return new Promise<LinkReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: performance.now() + LINK_REQUEST_TIMEOUT_MS });
      this.timeoutTimer ??= setTimeout(() => this.expire(), LINK_REQUEST_TIMEOUT_MS);
      this.write(encode(id));
    });
  }

  /**
   * Fails the requests whose deadline passed, then re-arms for the oldest
   * one left: one timer for every request in flight, not one each. A
   * request that timed out may still be applied by the hub, while its
   * caller was told it failed: the link is dropped, and the resync that
   * follows makes the hub hold exactly what this edge holds.
   */
  private expire(): void {
    this.timeoutTimer = undefined;
    const now = performance.now();
    let expired = false;
    for (const [id, pending] of this.pending) {
      if (pending.deadline > now) {
        this.timeoutTimer = setTimeout(() => this.expire(), Math.ceil(pending.deadline - now));
        break;
      }
      this.pending.delete(id);
      expired = true;
      pending.reject(
        new RealtimeError(Code.Unavailable, `the API process did not answer within ${LINK_REQUEST_TIMEOUT_MS} ms`),
      );
    }
    if (expired) this.socket?.destroy();
  }

  /** Stops the timeout timer once no request is waiting. */
  private settled(): void {
    if (this.pending.size > 0 || !this.timeoutTimer) return;
    clearTimeout(this.timeoutTimer);
    this.timeoutTimer = undefined;
  }

  private send(init: MessageInitShape<typeof EdgeFrameSchema>): void {
    this.write(encodeEdgeFrame(init));
  }

  private write(frame: Uint8Array): void {
    if (!this.connected || !this.writer) return;
    this.writer.write(frame);
  }

  private dial(): void {
    if (this.stopped) return;
    const socket = connect({ host: this.options.host, port: this.options.port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 5_000);
    const reader = new FrameReader((bytes) => this.onFrame(bytes));
    socket.on("connect", () => {
      this.writer = new FrameWriter(socket);
      this.connected = true;
      this.saidHello = false;
      this.refused = false;
      // With a secret, the Hello waits for the hub's challenge (onFrame);
      // without one it goes at once (and a challenge is ignored).
      if (!this.options.secret) return this.hello(socket, new Uint8Array());
      this.challengeTimer = setTimeout(() => {
        this.options.onError?.(
          new Error(
            `the API sent no link challenge within ${LINK_AUTH_TIMEOUT_MS} ms (is it older than this edge, or is ${this.options.host}:${this.options.port} not its link port?)`,
          ),
          "link",
        );
        socket.destroy();
      }, LINK_AUTH_TIMEOUT_MS);
    });
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.options.onError?.(err, "link frame from the hub");
        socket.destroy();
      }
    });
    socket.on("error", (err) => {
      if (this.connected) this.options.onError?.(err, "link");
    });
    socket.on("close", () => {
      const wasUp = this.up;
      clearTimeout(this.challengeTimer);
      this.connected = false;
      this.up = false;
      this.writer = undefined;
      this.failPending("the link to the API process closed; try again shortly");
      if (wasUp && !this.stopped) this.options.onStateChange?.(false);
      this.scheduleRedial();
    });
  }

  /** Says hello (signing nonce when this edge has a secret) and resyncs; the link is up once the hub answered. */
  private hello(socket: Socket, nonce: Uint8Array): void {
    clearTimeout(this.challengeTimer);
    this.saidHello = true;
    const { secret, edgeId } = this.options;
    const proof = secret ? linkProof(secret, nonce, edgeId) : new Uint8Array();
    this.resync(proof).then(
      () => {
        if (this.socket !== socket || !this.connected) return;
        this.attempt = 0;
        this.up = true;
        this.options.onStateChange?.(true);
        this.firstConnect.resolve();
      },
      // The link dropped (or timed out) before the hub answered: the
      // redial resyncs.
      () => {},
    );
  }

  /** Hello, then everything this edge holds, then synced; resolves when the hub has answered it. */
  private async resync(proof: Uint8Array): Promise<void> {
    this.send({ id: 0, frame: { case: "hello", value: { edgeId: this.options.edgeId, proof } } });
    const { channels, members } = this.options.snapshot();
    for (const channel of channels) this.send({ id: 0, frame: { case: "subscribe", value: channel } });
    for (const { channel, member } of members)
      this.send({ id: 0, frame: { case: "presenceAdd", value: { channel, member } } });
    await this.request({ frame: { case: "synced", value: {} } });
  }

  private scheduleRedial(): void {
    if (this.stopped) return;
    // Refused: hurrying would only repeat the refusal.
    const cap = this.refused
      ? LINK_RECONNECT_MAX_MS
      : Math.min(LINK_RECONNECT_MAX_MS, LINK_RECONNECT_INITIAL_MS * 2 ** this.attempt++);
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.retryTimer = setTimeout(() => this.dial(), delay);
  }

  private onFrame(bytes: Uint8Array): void {
    const frame = decodeHubFrame(bytes).frame;
    if (frame.case === "publication") {
      this.options.onPublication(frame.value);
    } else if (frame.case === "challenge") {
      if (this.options.secret && !this.saidHello && this.socket) this.hello(this.socket, frame.value.nonce);
    } else if (frame.case === "reply") {
      const reply = frame.value;
      if (reply.id === 0) {
        if (reply.error?.code === (Code.Unauthenticated as number)) {
          this.refused = true;
          this.options.onError?.(
            new LinkRefusedError(
              `the API refused this edge's link: ${reply.error.message}; retrying every ${LINK_RECONNECT_MAX_MS / 1000} s`,
            ),
            "link authentication",
          );
        } else if (reply.error) this.options.onError?.(new Error(reply.error.message), "hub refused a request");
        return;
      }
      const pending = this.pending.get(reply.id);
      if (!pending) return;
      this.pending.delete(reply.id);
      this.settled();
      if (reply.error) pending.reject(new RealtimeError(reply.error.code as number as Code, reply.error.message));
      else pending.resolve(reply);
    }
  }

  private failPending(message: string): void {
    for (const [id, pending] of this.pending) {
      pending.reject(new RealtimeError(Code.Unavailable, message));
      this.pending.delete(id);
    }
    this.settled();
  }
}

/** An EdgeFrame other than a publish (encodeEdgePublish), with protobuf-es. */
function encodeEdgeFrame(init: MessageInitShape<typeof EdgeFrameSchema>): Uint8Array {
  return toBinary(EdgeFrameSchema, create(EdgeFrameSchema, init));
}
