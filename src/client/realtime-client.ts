/**
 * RealtimeClient: one WebSocket to an edge, speaking the client protocol of
 * proto/realtime/client/v1/client.proto. Runtime-free: it imports no
 * node-only module, so it bundles for browsers; Node passes `ws`.
 *
 * Lifecycle:
 *   idle ──open()──▶ connecting ──`connected` frame──▶ restoring ──▶ open
 *                       ▲  │ drop (reconnectable)          │ drop      │ drop
 *                       └──┴──── backoff (full jitter) ◀───┴───────────┘
 *   close(), a close code that forbids reconnecting, or running out of
 *   attempts ──▶ closed (open() starts again).
 *
 * Guarantees:
 *  - Calls made while open are sent at once, in call order. Calls made while
 *    connecting, reconnecting or restoring wait in a bounded FIFO queue
 *    (maxQueuedRequests) and go out in call order once the client is open;
 *    calls made while idle or closed reject at once with UNAVAILABLE.
 *  - Every call settles exactly once: with its reply; or with a
 *    RealtimeClientError for an error reply, for no reply within
 *    requestTimeoutMs of the call (DEADLINE_EXCEEDED), for a connection
 *    that closed after the frame was sent (UNAVAILABLE; the command may or
 *    may not have taken effect, and is never re-sent), or for close()
 *    (CANCELLED).
 *  - After a reconnect the SDK restores its session before anything queued
 *    is sent and before onConnect: first the profile (if one was set),
 *    then a join, with echo false, of every channel it had joined. A
 *    restore that the edge refuses is reported via onError and that channel
 *    is forgotten.
 *  - Recovery (unless the option recover is false): the SDK keeps, per
 *    channel, the last position it saw (from each event and each join
 *    reply) and re-joins with it, so the edge replays what was missed, in
 *    order, before onConnect. Each positioned event is emitted at most once
 *    per epoch: one at or before the last position seen is dropped. When the
 *    edge cannot replay, or tells the client it lost events (a Resync
 *    frame), the SDK emits channel:resync: the app reloads that state.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import type {
  Event as EventFrame,
  Reply,
  StreamPosition as PositionFrame,
} from "../../gen/realtime/client/v1/client_pb.js";
import { CloseCode, shouldReconnect } from "../protocol/close-codes.js";
import { presenceEvents } from "../protocol/presence-changes.js";
import { backoffDelay } from "./backoff.js";
import { fromValue, toPayload, toValue, type ClientFrameInit } from "./codec.js";
import { Emitter } from "./emitter.js";
import { ErrorCode, RealtimeClientError, asRealtimeClientError } from "./errors.js";
import {
  RESYNC_EVENT,
  SystemEvent,
  type ConnectInfo,
  type DisconnectInfo,
  type HistoryOptions,
  type HistoryPage,
  type JoinOptions,
  type JoinResult,
  type LifecycleEvents,
  type Member,
  type MemberEvent,
  type MembersPage,
  type Message,
  type MessageEvent,
  type ReconnectAttemptInfo,
  type ResyncEvent,
  type SubscribedInfo,
  type UnsubscribedInfo,
  type StreamPosition,
  type SystemEventName,
} from "./events.js";
import { resolveOptions, type RealtimeClientOptions, type ResolvedOptions, type WebSocketLike } from "./options.js";

/** The close code a browser reports when a connection dropped without a close frame. */
/**
 * Members per page that getMembers asks for: the largest page the edge
 * gives (it also cuts a page at 256 KiB), so that the fewest round trips
 * list a channel.
 */
export const GET_MEMBERS_PAGE_SIZE = 1000;

const ABNORMAL_CLOSURE = 1006;
/** WebSocket.OPEN, which not every WebSocket class exposes as a static. */
const OPEN = 1;
/** Request ids are uint32 and 0 means "no reply"; they wrap from here to 1. */
const MAX_REQUEST_ID = 0xffff_ffff;
/**
 * A re-join after a reconnect that the edge refuses for now (UNAVAILABLE:
 * it lost the API or Redis) is tried again on the same connection, after
 * this long, doubling up to REJOIN_RETRY_MAX_MS, with the channel and its
 * position kept meanwhile.
 */
const REJOIN_RETRY_MS = 250;
const REJOIN_RETRY_MAX_MS = 5_000;

/** Where the client is in its lifecycle (see the module comment). */
export type ClientState = "idle" | "connecting" | "restoring" | "open" | "closed";

/** Returned by send and broadcast. */
export interface PublishResult {
  /** The id of the published event: receivers see it as MessageEvent.id. */
  id: string;
}

/** Unsubscribes the listener it was returned for. */
export type Unsubscribe = () => void;

type Command = ClientFrameInit["command"];

interface Call {
  readonly command: Command;
  readonly resolve: (reply: Reply) => void;
  readonly reject: (err: RealtimeClientError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The request id once sent; 0 while queued. */
  id: number;
}

type AppEvents = Record<string, MessageEvent | MemberEvent>;

/**
 * A client of Switchboard's edges. See the module comment for its
 * lifecycle and guarantees, and RealtimeClientOptions for the defaults.
 */
export class RealtimeClient {
  readonly #options: ResolvedOptions;
  readonly #events: Emitter<AppEvents>;
  readonly #lifecycle: Emitter<LifecycleEvents>;

  #state: ClientState = "idle";
  #socket: WebSocketLike | undefined;
  #socketId: string | undefined;
  /** Whether onConnect fired for the current socket (pairs onDisconnect with it). */
  #announced = false;
  /** Whether any socket since open() reached `connected`. */
  #everConnected = false;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bumped by every #connect and close(): a token fetch of an older one is dropped. */
  #connectSeq = 0;
  /** The token of the next connect when the option is a string; refreshToken replaces it. */
  #token: string | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;

  #lastId = 0;
  readonly #inflight = new Map<number, Call>();
  #queue: Call[] = [];

  /** Channels joined in this session, re-joined after a reconnect. */
  readonly #channels = new Set<string>();
  /**
   * The last position seen per channel (of an event or a join reply): the
   * `since` of the re-join after a reconnect, and the bar below which a
   * positioned event is a repeat.
   */
  readonly #positions = new Map<string, StreamPosition>();
  /**
   * Channels whose re-join with since is in flight, each with whether a
   * Resync frame came meanwhile: an edge that cannot recover sends one
   * before the reply, and the two are one channel:resync (not_recovered),
   * also when the connection drops before the reply.
   */
  readonly #rejoining = new Map<string, boolean>();
  /** The profile last set in this session, restored after a reconnect. */
  #profile: Value | undefined;

  /**
   * Checks the options (throws a TypeError naming a bad one) and, unless
   * autoOpen is false, calls open(). Listeners added right after the
   * constructor still see the first onConnect: connecting is asynchronous.
   */
  constructor(options: RealtimeClientOptions) {
    this.#options = resolveOptions(options);
    this.#token = typeof this.#options.token === "string" ? this.#options.token : undefined;
    this.#events = new Emitter<AppEvents>((err, event) => this.#reportListenerError(err, event));
    this.#lifecycle = new Emitter<LifecycleEvents>((err, event) => {
      // An onError listener that throws is dropped: reporting it would loop.
      if (event !== "error") this.#reportListenerError(err, event);
    });
    if (this.#options.autoOpen) this.open();
  }

  // ── Connection ────────────────────────────────────────────────────────

  /**
   * Starts connecting, and reconnecting after drops, until close(). Does
   * nothing when already connecting or open. After close() it starts a new
   * session: no channels, no profile.
   */
  open(): void {
    if (this.#state !== "idle" && this.#state !== "closed") return;
    this.#state = "connecting";
    this.#attempt = 0;
    this.#everConnected = false;
    this.#connect();
  }

  /**
   * Closes the connection (code 1000) and stops reconnecting. Calls not yet
   * answered reject with CANCELLED; the session's channels and profile are
   * forgotten. onDisconnect fires if onConnect had. Idempotent.
   */
  close(): void {
    if (this.#state === "idle" || this.#state === "closed") return;
    const socket = this.#socket;
    const announced = this.#announced;
    this.#detach();
    this.#connectSeq++;
    this.#state = "closed";
    this.#channels.clear();
    this.#positions.clear();
    this.#profile = undefined;
    this.#failAll(new RealtimeClientError(ErrorCode.Canceled, "the client was closed before the reply came"));
    if (socket !== undefined) {
      try {
        socket.close(CloseCode.Normal, "client closed");
      } catch {
        // A socket that cannot be closed is already closing.
      }
    }
    if (announced)
      this.#lifecycle.emit("disconnect", { code: CloseCode.Normal, reason: "client closed", willReconnect: false });
  }

  /** True once connected and restored (onConnect has fired) until the connection drops. */
  isConnected(): boolean {
    return this.#state === "open";
  }

  /** This connection's id, as other members see it; undefined while not connected. */
  getSocketId(): string | undefined {
    return this.#socketId;
  }

  /** Where the client is in its lifecycle. */
  getState(): ClientState {
    return this.#state;
  }

  // ── Commands ──────────────────────────────────────────────────────────

  /**
   * Joins channel; the client re-joins it after every reconnect until it
   * calls leave (recovering what it missed, see the option recover).
   * options: `echo` (or that boolean alone), whether this client gets its
   * own channel:join (default: the connection's echo); `since`, a position
   * to recover from. Resolves with where the client's stream of the channel
   * starts and whether since was recovered. Joining twice is not an error
   * (the second resolves with no position, unless since replayed some).
   */
  async join(channel: string, options?: boolean | JoinOptions): Promise<JoinResult> {
    const { echo, since } = typeof options === "object" && options !== null ? options : { echo: options };
    const reply = await this.#call({
      case: "join",
      value: { channel, echo, since: since && { offset: BigInt(since.offset), epoch: since.epoch } },
    });
    // Added on success only: a join that failed or whose fate is unknown
    // (the connection dropped) is not replayed behind the caller's back.
    this.#channels.add(channel);
    const position = positionOf(reply.position);
    this.#advance(channel, position);
    return { position, recovered: reply.recovered };
  }

  /**
   * Leaves channel, and stops re-joining it on reconnect from this call on
   * (even if the call then fails: the connection is gone or it was not
   * joined). Leaving a channel not joined is not an error.
   */
  async leave(channel: string, echo?: boolean): Promise<void> {
    this.#channels.delete(channel);
    this.#positions.delete(channel);
    try {
      await this.#call({ case: "leave", value: { channel, echo } });
    } finally {
      // Events delivered before the leave took effect moved it again.
      if (!this.#channels.has(channel)) this.#positions.delete(channel);
    }
  }

  /**
   * Sets this connection's profile (any JSON value, 4 KiB encoded at most;
   * null clears it), which members lists and system events carry; every
   * channel it is in gets channel:update. Once set, it is restored after
   * every reconnect.
   */
  async updateProfile(data: JsonValue, echo?: boolean): Promise<void> {
    const value = toValue(data, "profile");
    await this.#call({ case: "updateProfile", value: { data: value, echo } });
    // null clears the profile on the edge; there is nothing to restore then.
    this.#profile = value.kind.case === "nullValue" ? undefined : value;
  }

  /**
   * Sends event to the members of channel, which this client must have
   * joined (else FAILED_PRECONDITION). message: bytes (Uint8Array) go as a
   * binary payload, anything else as JSON (see {@link Message}). echo:
   * whether this client gets its own event (default: the connection's).
   * Resolves once the service accepted it, with the event id.
   */
  async send(channel: string, event: string, message: Message | unknown, echo?: boolean): Promise<PublishResult> {
    const reply = await this.#call({ case: "send", value: { channel, event, payload: toPayload(message), echo } });
    return { id: reply.messageId };
  }

  /** Sends event to every connected client; like send, without a channel. */
  async broadcast(event: string, message: Message | unknown, echo?: boolean): Promise<PublishResult> {
    const reply = await this.#call({ case: "broadcast", value: { event, payload: toPayload(message), echo } });
    return { id: reply.messageId };
  }

  /**
   * Lists every member of channel (joined or not), each with its profile
   * (null if none), ordered by id. The edge answers in pages: this reads
   * them one after another ({@link getMembersPage}), so a large channel
   * costs several round trips. A member that stays in the channel meanwhile
   * is listed once; one that joins or leaves meanwhile may or may not be.
   * The first request carries no page fields, so an edge older than paging
   * (which refuses fields it does not know) answers it with every member;
   * the pages after it ask for GET_MEMBERS_PAGE_SIZE members each.
   */
  async getMembers(channel: string): Promise<Member[]> {
    const out: Member[] = [];
    let pageToken = "";
    do {
      const page = await this.getMembersPage(
        channel,
        pageToken === "" ? {} : { pageSize: GET_MEMBERS_PAGE_SIZE, pageToken },
      );
      out.push(...page.members);
      if (page.nextPageToken !== "" && page.nextPageToken === pageToken)
        throw new RealtimeClientError(ErrorCode.Internal, "the edge answered the same page token twice");
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return out;
  }

  /**
   * Reads one page of channel's members, ordered by id: at most pageSize
   * (absent or 0: the edge's default, 100; at most 1000), possibly fewer (a
   * page is bounded in bytes too). Pass the page's nextPageToken as
   * pageToken for the next one; "" means this was the last.
   */
  async getMembersPage(channel: string, page: { pageSize?: number; pageToken?: string } = {}): Promise<MembersPage> {
    const reply = await this.#call({
      case: "getMembers",
      value: { channel, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" },
    });
    return {
      members: reply.members.map((m) => ({ id: m.id, data: fromValue(m.data), userId: m.userId })),
      nextPageToken: reply.nextPageToken,
    };
  }

  /**
   * Reads the events channel's history keeps (bounded by count and age on
   * the service: docs/protocol.md), each with its position, in the shape
   * listeners get them. Allowed where join is; the client need not have
   * joined. Read on with since = the last event's position.
   */
  async getHistory(channel: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    const { since, limit, reverse } = options;
    const reply = await this.#call({
      case: "getHistory",
      value: {
        channel,
        since: since && { offset: BigInt(since.offset), epoch: since.epoch },
        limit: limit ?? 0,
        reverse: reverse ?? false,
      },
    });
    return {
      events: reply.events.map((ev) => ({ event: ev.event, payload: payloadOf(ev) })),
      position: positionOf(reply.position),
      complete: reply.complete,
    };
  }

  /**
   * Replaces the connection's token before it expires (the edge closes the
   * connection with 4003 at expiry). The new token must have the same
   * subject; a refused one (UNAUTHENTICATED, PERMISSION_DENIED) leaves the
   * old one in force. When the `token` option is a string, reconnects use
   * the new token from then on; a token function is still called instead.
   */
  async refreshToken(token: string): Promise<void> {
    await this.#call({ case: "refresh", value: { token } });
    if (typeof this.#options.token !== "function") this.#token = token;
  }

  // ── Listeners ─────────────────────────────────────────────────────────

  /**
   * Calls cb for every event named event: an application event's listener
   * gets a MessageEvent, a system event's (channel:join, channel:leave,
   * channel:update) a MemberEvent, channel:resync's a ResyncEvent (the
   * SDK's own: see onResync). T narrows the message type; the SDK does
   * not check it. Returns a function that removes cb.
   */
  on(event: typeof RESYNC_EVENT, cb: (e: ResyncEvent) => void): Unsubscribe;
  on(event: SystemEventName, cb: (e: MemberEvent) => void): Unsubscribe;
  on<T = Message>(event: string, cb: (e: MessageEvent<T>) => void): Unsubscribe;
  on(event: string, cb: (e: never) => void): Unsubscribe {
    if (event === RESYNC_EVENT) this.#lifecycle.on(RESYNC_EVENT, cb as (e: ResyncEvent) => void);
    else this.#events.on(event, cb as (e: MessageEvent | MemberEvent) => void);
    return () => this.off(event, cb);
  }

  /** Like on, for the next such event only. */
  once(event: typeof RESYNC_EVENT, cb: (e: ResyncEvent) => void): Unsubscribe;
  once(event: SystemEventName, cb: (e: MemberEvent) => void): Unsubscribe;
  once<T = Message>(event: string, cb: (e: MessageEvent<T>) => void): Unsubscribe;
  once(event: string, cb: (e: never) => void): Unsubscribe {
    if (event === RESYNC_EVENT) this.#lifecycle.once(RESYNC_EVENT, cb as (e: ResyncEvent) => void);
    else this.#events.once(event, cb as (e: MessageEvent | MemberEvent) => void);
    return () => this.off(event, cb);
  }

  /** Removes cb (added with on or once) from event, or every listener of event. */
  off(event: string, cb?: (e: never) => void): void {
    if (event === RESYNC_EVENT) this.#lifecycle.off(RESYNC_EVENT, cb as ((e: ResyncEvent) => void) | undefined);
    else this.#events.off(event, cb as ((e: MessageEvent | MemberEvent) => void) | undefined);
  }

  /**
   * Calls cb with the name and payload of every event from the edge, system
   * events included, after its own listeners; not channel:resync.
   */
  onAny(cb: (event: string, e: MessageEvent | MemberEvent) => void): Unsubscribe {
    this.#events.onAny(cb);
    return () => this.offAny(cb);
  }

  /** Removes cb from onAny, or every onAny listener. */
  offAny(cb?: (event: string, e: MessageEvent | MemberEvent) => void): void {
    this.#events.offAny(cb);
  }

  /** on("channel:join"): a member joined a channel this client is in. */
  onJoin(cb: (e: MemberEvent) => void): Unsubscribe {
    return this.on(SystemEvent.Join, cb);
  }

  /** on("channel:leave"): a member left (or was disconnected from) a channel this client is in. */
  onLeave(cb: (e: MemberEvent) => void): Unsubscribe {
    return this.on(SystemEvent.Leave, cb);
  }

  /** on("channel:update"): a member of a channel this client is in changed its profile. */
  onUpdate(cb: (e: MemberEvent) => void): Unsubscribe {
    return this.on(SystemEvent.Update, cb);
  }

  /**
   * on("channel:resync"): events of a channel this client is in may have
   * been lost (see ResyncEvent.reason); reload what was built from them
   * (getMembers, getHistory). The client stays in the channel.
   */
  onResync(cb: (e: ResyncEvent) => void): Unsubscribe {
    return this.on(RESYNC_EVENT, cb);
  }

  /** Calls cb each time the client is connected and its session restored; calls made from cb go out at once. */
  onConnect(cb: (info: ConnectInfo) => void): Unsubscribe {
    return this.#onLifecycle("connect", cb);
  }

  /**
   * Calls cb when a connection that fired onConnect ends, and when the
   * client stops for good (willReconnect false), connected or not. A failed
   * reconnect attempt fires onReconnectAttempt for the next one instead.
   */
  onDisconnect(cb: (info: DisconnectInfo) => void): Unsubscribe {
    return this.#onLifecycle("disconnect", cb);
  }

  /**
   * Calls cb with what has no caller to reject: a listener that threw, a
   * restore the edge refused, a frame that did not decode. A throwing onError
   * listener is ignored.
   */
  onError(cb: (err: RealtimeClientError) => void): Unsubscribe {
    return this.#onLifecycle("error", cb);
  }

  /**
   * Calls cb when the backend made this connection join a channel
   * (realtime.v1 Subscribe): it is joined from now on, as after join(), and
   * re-joined after a reconnect.
   */
  onSubscribed(cb: (info: SubscribedInfo) => void): Unsubscribe {
    return this.#onLifecycle("subscribed", cb);
  }

  /** Calls cb when the backend made this connection leave a channel (realtime.v1 Unsubscribe); it is not re-joined. */
  onUnsubscribed(cb: (info: UnsubscribedInfo) => void): Unsubscribe {
    return this.#onLifecycle("unsubscribed", cb);
  }

  /** Calls cb just before each reconnect attempt. */
  onReconnectAttempt(cb: (info: ReconnectAttemptInfo) => void): Unsubscribe {
    return this.#onLifecycle("reconnectAttempt", cb);
  }

  // ── Internals: calls ──────────────────────────────────────────────────

  #onLifecycle<K extends keyof LifecycleEvents>(event: K, cb: (p: LifecycleEvents[K]) => void): Unsubscribe {
    this.#lifecycle.on(event, cb);
    return () => this.#lifecycle.off(event, cb);
  }

  /**
   * Sends command (or queues it, see the module comment) and resolves with
   * its reply. restore=true is the session restore: it goes out while
   * restoring, ahead of the queue.
   */
  #call(command: Command, restore = false): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const call: Call = { command, resolve, reject, timer: undefined, id: 0 };
      const state = this.#state;
      if (state === "idle" || state === "closed") {
        reject(
          new RealtimeClientError(
            ErrorCode.Unavailable,
            state === "idle"
              ? "the client is not open: call open() first"
              : "the client is closed: call open() to reconnect",
          ),
        );
        return;
      }
      // A socket that is closing but whose close event has not come yet
      // counts as disconnected: the call waits for the next connection.
      const sendNow = restore ? state === "restoring" : state === "open" && this.#socket?.readyState === OPEN;
      if (!sendNow) {
        if (this.#options.maxQueuedRequests === 0) {
          reject(
            new RealtimeClientError(ErrorCode.Unavailable, "not connected, and queueing is off (maxQueuedRequests: 0)"),
          );
          return;
        }
        if (this.#queue.length >= this.#options.maxQueuedRequests) {
          reject(
            new RealtimeClientError(
              ErrorCode.ResourceExhausted,
              `not connected, and ${this.#queue.length} calls already wait for the connection (maxQueuedRequests)`,
            ),
          );
          return;
        }
      }
      const timeoutMs = this.#options.requestTimeoutMs;
      if (timeoutMs > 0) {
        call.timer = setTimeout(() => this.#expire(call), timeoutMs);
      }
      if (sendNow) this.#transmit(call);
      else this.#queue.push(call);
    });
  }

  #transmit(call: Call): void {
    const socket = this.#socket;
    if (socket === undefined || socket.readyState !== OPEN) {
      this.#settle(
        call,
        new RealtimeClientError(ErrorCode.Unavailable, "the connection closed before the call was sent"),
      );
      return;
    }
    call.id = this.#nextId();
    this.#inflight.set(call.id, call);
    try {
      socket.send(this.#options.encoding.encodeClientFrame({ id: call.id, command: call.command }));
    } catch (err) {
      this.#inflight.delete(call.id);
      this.#settle(
        call,
        new RealtimeClientError(ErrorCode.Unavailable, `the call could not be sent: ${(err as Error).message}`, {
          cause: err,
        }),
      );
    }
  }

  #nextId(): number {
    do {
      this.#lastId = this.#lastId >= MAX_REQUEST_ID ? 1 : this.#lastId + 1;
    } while (this.#inflight.has(this.#lastId));
    return this.#lastId;
  }

  #expire(call: Call): void {
    call.timer = undefined;
    if (call.id !== 0) this.#inflight.delete(call.id);
    else this.#queue = this.#queue.filter((c) => c !== call);
    call.reject(
      new RealtimeClientError(
        ErrorCode.DeadlineExceeded,
        `no reply within ${this.#options.requestTimeoutMs} ms (requestTimeoutMs)`,
      ),
    );
  }

  /** Settles call with reply or err, once: callers remove it from inflight/queue first. */
  #settle(call: Call, result: Reply | RealtimeClientError): void {
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.timer = undefined;
    if (result instanceof RealtimeClientError) call.reject(result);
    else call.resolve(result);
  }

  #failInflight(err: RealtimeClientError): void {
    const calls = [...this.#inflight.values()];
    this.#inflight.clear();
    for (const call of calls) this.#settle(call, err);
  }

  #failAll(err: RealtimeClientError): void {
    this.#failInflight(err);
    const queued = this.#queue;
    this.#queue = [];
    for (const call of queued) this.#settle(call, err);
  }

  // ── Internals: connection ─────────────────────────────────────────────

  /** Starts one connection attempt: gets the token, then opens a socket. */
  #connect(): void {
    const seq = ++this.#connectSeq;
    const provider = this.#options.token;
    if (typeof provider !== "function") {
      this.#openSocket(this.#token);
      return;
    }
    let token: Promise<string>;
    try {
      token = Promise.resolve(provider());
    } catch (err) {
      token = Promise.reject(err);
    }
    const current = () => seq === this.#connectSeq && this.#state === "connecting" && this.#socket === undefined;
    token.then(
      (t) => {
        if (!current()) return;
        if (typeof t !== "string" || t === "") {
          this.#emitError(
            new RealtimeClientError(
              ErrorCode.Unauthenticated,
              "the token function returned no token (a non-empty string is needed)",
            ),
          );
          this.#dropped(ABNORMAL_CLOSURE, "no token");
          return;
        }
        this.#openSocket(t);
      },
      (err: unknown) => {
        if (!current()) return;
        this.#emitError(
          new RealtimeClientError(
            ErrorCode.Unauthenticated,
            `the token function failed: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          ),
        );
        this.#dropped(ABNORMAL_CLOSURE, "the token function failed");
      },
    );
  }

  #openSocket(token: string | undefined): void {
    let url = this.#options.url;
    if (token !== undefined) {
      const u = new URL(url);
      u.searchParams.set("token", token);
      url = u.toString();
    }
    let socket: WebSocketLike;
    try {
      socket = new this.#options.WebSocket(url, [this.#options.encoding.subprotocol]);
    } catch (err) {
      // Only a malformed URL or a blocked port throws here; neither improves by retrying.
      this.#emitError(err);
      this.#stop(ABNORMAL_CLOSURE, `cannot create a WebSocket: ${(err as Error).message}`);
      return;
    }
    this.#socket = socket;
    this.#announced = false;
    socket.binaryType = "arraybuffer";
    // Handlers stay attached for the socket's life (ws throws on an 'error'
    // with no listener); each ignores events of a socket no longer current.
    socket.onerror = () => {
      // A close event follows; it carries what there is to know.
    };
    socket.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.#socket === socket) this.#dropped(ev.code ?? ABNORMAL_CLOSURE, ev.reason ?? "");
    };
    socket.onmessage = (ev: { data: unknown }) => {
      if (this.#socket === socket) this.#onMessage(socket, ev.data);
    };
    const connectTimeoutMs = this.#options.connectTimeoutMs;
    if (connectTimeoutMs > 0) {
      this.#connectTimer = setTimeout(() => {
        this.#connectTimer = undefined;
        if (this.#socket !== socket || this.#state !== "connecting") return;
        this.#dropped(ABNORMAL_CLOSURE, `no connected frame within ${connectTimeoutMs} ms (connectTimeoutMs)`);
        try {
          socket.close();
        } catch {
          // Closing a socket that never opened may throw in some runtimes.
        }
      }, connectTimeoutMs);
    }
  }

  /** Forgets the current socket and the timers of the current attempt. */
  #detach(): void {
    this.#socket = undefined;
    this.#socketId = undefined;
    this.#announced = false;
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
  }

  /** The current socket closed (or was given up on) with code and reason. */
  #dropped(code: number, reason: string): void {
    const announced = this.#announced;
    this.#detach();
    this.#failInflight(
      new RealtimeClientError(
        ErrorCode.Unavailable,
        `the connection closed (code ${code}${reason ? `: ${reason}` : ""}) before the reply came`,
      ),
    );
    const r = this.#options.reconnect;
    const willReconnect = r !== false && shouldReconnect(code) && this.#attempt < r.maxAttempts;
    if (!willReconnect) {
      this.#stop(code, reason);
      return;
    }
    this.#state = "connecting";
    // Scheduled before the listeners run, so that a close() in one of them cancels it.
    this.#scheduleReconnect();
    if (announced) this.#lifecycle.emit("disconnect", { code, reason, willReconnect: true });
  }

  /** Stops for good: rejects what waits, fires the final onDisconnect. */
  #stop(code: number, reason: string): void {
    this.#detach();
    this.#state = "closed";
    this.#failAll(
      new RealtimeClientError(
        ErrorCode.Unavailable,
        `the connection closed (code ${code}${reason ? `: ${reason}` : ""}) and the client will not reconnect`,
      ),
    );
    this.#lifecycle.emit("disconnect", { code, reason, willReconnect: false });
  }

  #scheduleReconnect(): void {
    if (this.#options.reconnect === false) return;
    const delayMs = backoffDelay(this.#attempt, this.#options.reconnect);
    this.#attempt += 1;
    const attempt = this.#attempt;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#state !== "connecting" || this.#socket !== undefined) return;
      this.#lifecycle.emit("reconnectAttempt", { attempt, delayMs });
      // A listener may have called close().
      if (this.#state === "connecting" && this.#socket === undefined) this.#connect();
    }, delayMs);
  }

  #onMessage(socket: WebSocketLike, data: unknown): void {
    let frame;
    try {
      frame = this.#options.encoding.decodeServerFrame(data);
    } catch (err) {
      this.#emitError(
        new RealtimeClientError(ErrorCode.Internal, `a frame from the edge did not decode: ${(err as Error).message}`, {
          cause: err,
        }),
      );
      return;
    }
    switch (frame.frame.case) {
      case "connected":
        this.#onConnected(socket, frame.frame.value.id);
        return;
      case "reply":
        this.#onReply(frame.frame.value);
        return;
      case "event":
        this.#onEvent(frame.frame.value);
        return;
      case "presence":
        // Coalesced system events of one channel, in its order: one emit each, as if they came one by one.
        for (const ev of presenceEvents(frame.frame.value)) this.#onEvent(ev);
        return;
      case "events":
        // Events of one write delay, in their order: one emit each, as if they came one by one.
        for (const ev of frame.frame.value.events) this.#onEvent(ev);
        return;
      case "subscribed": {
        const { channel, position } = frame.frame.value;
        this.#channels.add(channel);
        const at = positionOf(position);
        this.#advance(channel, at);
        this.#lifecycle.emit("subscribed", { channel, position: at });
        return;
      }
      case "unsubscribed": {
        const { channel } = frame.frame.value;
        this.#channels.delete(channel);
        this.#positions.delete(channel);
        this.#lifecycle.emit("unsubscribed", { channel });
        return;
      }
      case "resync": {
        const { channel, position } = frame.frame.value;
        // During a re-join it says the re-join did not recover: reported with the reply.
        if (this.#rejoining.has(channel)) return void this.#rejoining.set(channel, true);
        this.#lifecycle.emit(RESYNC_EVENT, { channel, reason: "resync", position: positionOf(position) });
        return;
      }
      default:
        // A frame kind from a newer edge: nothing to do with it.
        return;
    }
  }

  #onConnected(socket: WebSocketLike, id: string): void {
    if (this.#state !== "connecting") return;
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#socketId = id;
    this.#state = "restoring";
    this.#attempt = 0;
    const reconnected = this.#everConnected;
    this.#everConnected = true;
    void this.#restore(socket).then(() => {
      if (this.#socket !== socket || this.#state !== "restoring") return;
      this.#state = "open";
      this.#announced = true;
      const queued = this.#queue;
      this.#queue = [];
      for (const call of queued) this.#transmit(call);
      this.#lifecycle.emit("connect", { id, reconnected });
    });
  }

  /** Re-sends the profile, then re-joins every channel (echo false); never rejects. */
  async #restore(socket: WebSocketLike): Promise<void> {
    const tasks: Promise<void>[] = [];
    const profile = this.#profile;
    if (profile !== undefined) {
      tasks.push(
        this.#call({ case: "updateProfile", value: { data: profile, echo: false } }, true).then(
          () => undefined,
          (err: unknown) => {
            if (this.#socket !== socket) return; // dropped again: the next restore retries
            this.#emitError(
              new RealtimeClientError(
                asRealtimeClientError(err).code,
                `restoring the profile after a reconnect failed: ${(err as Error).message}`,
                { cause: err },
              ),
            );
          },
        ),
      );
    }
    for (const channel of this.#channels) tasks.push(this.#rejoin(socket, channel, REJOIN_RETRY_MS));
    await Promise.all(tasks);
  }

  /** Re-joins channel on socket, with its last position; never rejects (see REJOIN_RETRY_MS). */
  async #rejoin(socket: WebSocketLike, channel: string, retryMs: number): Promise<void> {
    const since = this.#options.recover ? this.#positions.get(channel) : undefined;
    if (since !== undefined) this.#rejoining.set(channel, false);
    try {
      // A retry may come after the restore is over: then an ordinary call.
      const reply = await this.#call(
        { case: "join", value: { channel, echo: false, since } },
        this.#state === "restoring",
      );
      const told = this.#rejoining.get(channel) === true;
      this.#rejoining.delete(channel);
      if (this.#socket !== socket) return;
      const position = positionOf(reply.position);
      this.#advance(channel, position);
      if (since !== undefined && (!reply.recovered || told))
        this.#lifecycle.emit(RESYNC_EVENT, { channel, reason: "not_recovered", position });
    } catch (err) {
      const told = this.#rejoining.get(channel) === true;
      this.#rejoining.delete(channel);
      // Dropped before the reply, after the edge said it could not recover:
      // what came since is not a recovered stream either.
      if (told) this.#lifecycle.emit(RESYNC_EVENT, { channel, reason: "not_recovered", position: undefined });
      if (this.#socket !== socket || !this.#channels.has(channel)) return; // dropped again: the next restore retries
      const code = asRealtimeClientError(err).code;
      if (code === ErrorCode.Unavailable) {
        // Not restored yet, but kept: tried again in the background.
        setTimeout(() => {
          if (this.#socket === socket && this.#channels.has(channel))
            void this.#rejoin(socket, channel, Math.min(retryMs * 2, REJOIN_RETRY_MAX_MS));
        }, retryMs);
        return;
      }
      this.#channels.delete(channel);
      this.#positions.delete(channel);
      this.#emitError(
        new RealtimeClientError(
          code,
          `re-joining channel ${JSON.stringify(channel)} after a reconnect failed: ${(err as Error).message}`,
          { cause: err },
        ),
      );
    }
  }

  #onReply(reply: Reply): void {
    const call = this.#inflight.get(reply.id);
    if (call === undefined) return; // timed out already, or an id we never sent
    this.#inflight.delete(reply.id);
    if (reply.error !== undefined) {
      this.#settle(call, new RealtimeClientError(reply.error.code, reply.error.message));
    } else {
      this.#settle(call, reply);
    }
  }

  #onEvent(ev: EventFrame): void {
    const position = positionOf(ev);
    if (position !== undefined && ev.channel !== "") {
      const last = this.#positions.get(ev.channel);
      // A repeat (the edge delivers in order and once; this is the safety net).
      if (last !== undefined && last.epoch === position.epoch && position.offset <= last.offset) return;
      this.#positions.set(ev.channel, position);
    }
    let payload: MessageEvent | MemberEvent;
    try {
      payload = payloadOf(ev, position);
    } catch (err) {
      this.#emitError(
        new RealtimeClientError(
          ErrorCode.Internal,
          `event ${JSON.stringify(ev.event)} did not decode: ${(err as Error).message}`,
          { cause: err },
        ),
      );
      return;
    }
    // This connection was removed from the channel (by the edge, e.g. a
    // refreshed token without the grant): do not re-join it later.
    if (ev.event === SystemEvent.Leave && ev.payload.case === "member" && ev.payload.value.id === this.#socketId) {
      this.#channels.delete(ev.channel);
      this.#positions.delete(ev.channel);
    }
    this.#events.emit(ev.event, payload);
  }

  /** Moves channel's last position seen to position when that is later (or of another epoch). */
  #advance(channel: string, position: StreamPosition | undefined): void {
    if (position === undefined) return;
    const last = this.#positions.get(channel);
    if (last === undefined || last.epoch !== position.epoch || position.offset > last.offset)
      this.#positions.set(channel, position);
  }

  #emitError(err: unknown): void {
    this.#lifecycle.emit("error", asRealtimeClientError(err));
  }

  #reportListenerError(err: unknown, event: string): void {
    const message = err instanceof Error ? err.message : String(err);
    this.#emitError(
      new RealtimeClientError(ErrorCode.Unknown, `a listener of ${JSON.stringify(event)} threw: ${message}`, {
        cause: err,
      }),
    );
  }
}

/** A position from the wire; undefined when there is none (no epoch: the channel keeps no history). */
function positionOf(p: PositionFrame | EventFrame | undefined): StreamPosition | undefined {
  return p === undefined || p.epoch === "" ? undefined : { offset: p.offset, epoch: p.epoch };
}

/** What listeners get for ev; throws when its payload does not decode. */
function payloadOf(ev: EventFrame, position = positionOf(ev)): MessageEvent | MemberEvent {
  const p = ev.payload;
  const pos = position === undefined ? {} : { position };
  switch (p.case) {
    case "member":
      return {
        channel: ev.channel,
        message: { id: p.value.id, data: fromValue(p.value.data), userId: p.value.userId },
        ...pos,
      };
    case "binary":
      return { channel: ev.channel, message: p.value, id: ev.id, ...pos };
    case "json":
      return { channel: ev.channel, message: fromValue(p.value), id: ev.id, ...pos };
    default:
      return { channel: ev.channel, message: null, id: ev.id, ...pos };
  }
}
