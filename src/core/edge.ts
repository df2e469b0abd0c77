import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import {
  EventSchema,
  MemberSchema,
  type ClientFrame,
  type ErrorCode,
  type Member,
} from "../../gen/realtime/client/v1/client_pb.js";
import { ANONYMOUS, TOKEN_CLOCK_SKEW_MS, type Identity } from "./identity.js";
import { withPosition, type Broker, type Delivery, type Publication, type StreamPosition } from "./broker.js";
import { fitHistory, historyLimit } from "./history.js";
import { CloseCode } from "../protocol/close-codes.js";
import {
  binaryEventFrame,
  binaryPresenceFrame,
  compactPresenceFrame,
  decodeClientFrame,
  FrameError,
  jsonEventFrame,
  jsonPresenceFrame,
  presenceChange,
  serverFrame,
} from "../wire/client-codec.js";
import { isSystemEventBytes } from "../wire/event-codec.js";
import {
  ALL_PRESENCE_EVENTS,
  DEFAULT_PRESENCE_WINDOW_MS,
  MAX_PRESENCE_WINDOW_MS,
  type PresenceEventsFor,
} from "./presence-rules.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { MAX_HISTORY_LIMIT, MAX_HISTORY_REPLY_BYTES, MAX_RECOVERY_EVENTS, type Limits } from "./limits.js";
import { checkChannel, checkEvent } from "./names.js";
import { NOOP_OBSERVER, type DisconnectReason, type MessageInKind, type Observer } from "./observer.js";
import { readMembersPage } from "./pages.js";
import type { Presence } from "./presence.js";
import { LeaveReason, Membership, type DepartReason, type PublishedHandler, type StandsHandler } from "./membership.js";
import { checkPayload, createPublication, deliveryLatencySeconds, IdGenerator, type Payload } from "./publication.js";
import { TokenBucket } from "./token-bucket.js";
import type { Connection } from "./transport.js";
import { Encoding } from "../protocol/encodings.js";
import { edgeOfConnection, isControlChannel, userChannel } from "./control-channels.js";
import { EdgeControl, type ConnectionFacts, type EdgeNode } from "./edge-control.js";
import type { ControlTarget } from "../../gen/realtime/link/v1/link_pb.js";
import type { HookIdentity, Hooks, SendPayload } from "./hooks.js";
import type { Tap } from "./tap.js";

/** Commands one connection may have waiting before new ones are refused. */
export const MAX_PENDING_COMMANDS = 256;

/**
 * How long a connection's command waits for its own positioned event to
 * come back through the broker (so that its copy keeps the channel's order:
 * Redis answers the publish and delivers the event on different
 * connections) before the edge hands the copy over directly, with the
 * position the broker answered.
 */
export const ECHO_WAIT_MS = 1_000;

/**
 * Most system events one channel's presence window holds: at this many
 * they are sent at once, window or not, so that a burst (the leaves of a
 * dead edge's members) costs each connection a bounded list.
 */
export const MAX_HELD_PRESENCE_EVENTS = 1_024;

/**
 * Most presence frames per second one channel's windows cost this edge,
 * when REALTIME_PRESENCE_WINDOW_MS > 0: each window sends every member that
 * batches one frame (or a few), so a channel with more members here than
 * this many times the window gets a longer window, members / this seconds,
 * up to MAX_PRESENCE_WINDOW_MS. 10,000 frames/s is about an eighth of a
 * core here (a frame costs an edge ~12 µs, docs/scaling.md): a channel of
 * 2,000 members here keeps the configured 200 ms, one of 5,000 gets 500 ms,
 * one of 10,000 or more a second.
 */
export const MAX_PRESENCE_FRAMES_PER_SECOND = 10_000;

/**
 * Largest presence frame, in bytes of the events' binary encoding (JSON
 * takes up to 6 times that): a run is split into frames of at most this
 * much, far below the default slow-consumer limit (REALTIME_MAX_OUTBOUND_BYTES,
 * 1 MiB), so that a long run never closes a client that keeps up.
 */
export const MAX_PRESENCE_FRAME_BYTES = 16 * 1024;

/** Channels whose gap recheck() fills at once (history reads in flight). */
export const RECHECK_CONCURRENCY = 16;

/** The observer's name for each client command. */
const MESSAGE_IN_KINDS: Record<string, MessageInKind> = {
  join: "join",
  leave: "leave",
  updateProfile: "update_profile",
  send: "send",
  broadcast: "broadcast",
  getMembers: "get_members",
  getHistory: "other",
  ping: "ping",
  refresh: "other",
};

/** Default of EdgeOptions.privateChannelPrefix. */
export const DEFAULT_PRIVATE_CHANNEL_PREFIX = "private:";
/**
 * Error codes that are the client's doing and spend its error budget.
 * UNIMPLEMENTED is not one: a newer client probing an older edge is not at
 * fault (the command rate limit still bounds how often it may).
 */
const CLIENT_FAULTS = new Set<Code>([
  Code.InvalidArgument,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.Unauthenticated,
]);

/** The queue of a connection with no command waiting: one resolved promise for all of them. */
const IDLE: Promise<void> = Promise.resolve();

/**
 * One client connection on this edge. It is kept small (an idle edge holds
 * one per connection): the rate limits are one number each, the state of
 * the edge's shared TokenBucket, and an idle queue is the shared IDLE.
 */
export class Session {
  /** The channels this connection is in. */
  readonly channels = new Set<string>();
  /** The profile, shared by all its channels; undefined until set. */
  profile: Value | undefined;
  /**
   * Commands run one at a time, in the order they arrived: the last one's
   * promise, or IDLE once every command has finished (until it closes).
   */
  queue: Promise<void> = IDLE;
  pending = 0;
  closed = false;
  /** Who the connection is: token subject, private channel grants, expiry. */
  identity: Identity = ANONYMOUS;
  /** State of the edge's command rate bucket (TokenBucket.take); 0 = full. */
  rate = 0;
  /** State of the edge's error budget bucket; 0 = full. */
  errorBudget = 0;
  /** Closes the connection when its token expires. */
  expiryTimer: NodeJS.Timeout | undefined;
  /**
   * It asked for presence frames (presence=batch or compact): its channels' system
   * events wait in their channel's PresenceWindow. Anything else sent to it
   * first sends its share of them (Edge.flushOpenFor), so that each of its
   * channels' events come in the same sequence as without batches, only
   * grouped.
   */
  presenceBatches = false;
  /** Its presence frames are in the compact form (presence=compact). */
  presenceCompact = false;
  /** When the edge accepted it, ms since the Unix epoch (GetConnections' connected_at). */
  readonly connectedUnixMs = Date.now();

  constructor(
    readonly id: string,
    /** Where its frames go (the connection policy's ClientConnection, over the connection's transport). */
    readonly transport: Connection,
    readonly encoding: Encoding,
    /** The connection's default for echo, overridden per command. */
    readonly echo: boolean,
  ) {}

  member(): Member {
    return create(MemberSchema, { id: this.id, data: this.profile, userId: this.identity.userId });
  }
}

interface LocalChannel {
  readonly channel: string;
  readonly sessions: Set<Session>;
  /** Resolves once the broker delivers the channel's publications here. */
  readonly subscribed: Promise<void>;
  /** Whether its members get its system events (REALTIME_PRESENCE_EVENTS, _RULES), read once. */
  readonly presenceEvents: boolean;
  /** The position of the last publication delivered here (epoch "": none yet). */
  epoch: string;
  offset: bigint;
  /**
   * While the edge fills a gap from history (publications were lost on the
   * way here): the publications that arrived meanwhile, delivered after it.
   */
  filling: Publication[] | undefined;
  /** More arrived while filling than MAX_RECOVERY_EVENTS: the members are told to resynchronise. */
  overflow: boolean;
  /**
   * Connections whose replay (join with since) went past the channel's
   * position here: history is read faster than the broker brings the same
   * publications, and the edge's own fill reads them too. Each with the
   * last position it was handed; fanOut does not hand it those again.
   */
  ahead: Map<Session, StreamPosition> | undefined;
  /** Its members that did not ask for presence frames: they get each system event at once. */
  unbatched: Set<Session> | undefined;
  /** Its system events of the open presence window; undefined when none is open. */
  window: PresenceWindow | undefined;
}

/**
 * How a connection gets system events (query parameter presence): each as
 * its own event frame (single, the default), or coalesced per channel and
 * window into presence frames listing the events (batch) or, in about half
 * the bytes, the changes (compact; the SDK asks for it).
 */
export type PresenceForm = "single" | "batch" | "compact";

/**
 * A channel's system events held for its members that batch them, once for
 * all of them: holding an event costs O(1), not O(members), and the end of
 * the window builds each frame once and writes the same bytes to every
 * member that reads the whole window.
 */
interface PresenceWindow {
  /** The channel's system events in this window, in its order. */
  readonly pubs: Publication[];
  /**
   * Members that read it from a later index than 0: those that joined
   * during it, that were sent their share early (something else was sent
   * to them), or that must not get one of its events (their own without
   * echo, one a replay already handed them).
   */
  readonly from: Map<Session, number>;
  /** When it ends, Date.now() ms (Edge.windowMs after it opened). */
  readonly deadline: number;
}

/** The connections of one user on this edge, and this edge's subscription to the user's control channel. */
interface LocalUser {
  readonly sessions: Set<Session>;
  /** Settles once the subscription is in effect (or failed: the broker retries it). */
  readonly subscribed: Promise<unknown>;
}

/** A connection's own event on its way back (see Edge.expectEcho). */
interface PendingEcho {
  readonly session: Session;
  /** The event's bytes, as published: the broker's copy has the same. */
  readonly event: Uint8Array;
  /** The broker brought it back, and it was handed to the connection. */
  arrived: boolean;
  wake: (() => void) | undefined;
}

/** A connection that replays a channel's history (a join with since): live publications wait in buffer. */
interface Recovery {
  readonly channel: string;
  readonly buffer: Publication[];
  overflow: boolean;
}

export interface EdgeOptions {
  broker: Broker;
  presence: Presence;
  /**
   * The node's membership room (core/membership.ts), over the same broker
   * and presence: it records and announces the connections' joins, leaves
   * and profiles. Default: a room of the edge's own.
   */
  membership?: Membership;
  limits: Limits;
  /** Creates connection ids; their prefix must be unique to this edge. */
  connectionIds?: IdGenerator;
  /** Creates event ids. */
  eventIds?: IdGenerator;
  /** Whether clients may broadcast to every connection. */
  allowClientBroadcast: boolean;
  /** Receives faults that are not any client's doing (broker errors). */
  onError?: (err: unknown) => void;
  /** Told about connections, frames and fan-out (metrics). Default: none. */
  observer?: Observer;
  /** Channels whose name starts with this need a grant in the connection's identity. Default: DEFAULT_PRIVATE_CHANNEL_PREFIX. */
  privateChannelPrefix?: string;
  /** Whether clients may send events to the channels they joined. Default: true. */
  allowClientSend?: boolean;
  /**
   * Verifies the token of a Refresh command (rejecting with a message for
   * the client). Undefined: this edge verifies no tokens; Refresh fails.
   */
  verifyToken?: (token: string) => Promise<Identity>;
  /**
   * Per connection: commands per second and burst (excess commands get
   * RESOURCE_EXHAUSTED), and the error budget (error replies in a burst,
   * refilled at errorRefillPerSecond) past which the connection is closed
   * with 4503. Undefined: unlimited.
   */
  rateLimit?: { perSecond: number; burst: number; errorBudget: number; errorRefillPerSecond: number };
  /**
   * Whether a channel's members get its system events
   * (core/presence-rules.ts). Default: every channel's do.
   */
  presenceEvents?: PresenceEventsFor;
  /**
   * How long system events wait to be sent, as one presence frame per run
   * of one channel, to connections that asked for presence frames; 0: until
   * the end of this turn of the event loop. Default: DEFAULT_PRESENCE_WINDOW_MS.
   */
  presenceWindowMs?: number;
  /**
   * This edge in the control plane (core/control-channels.ts): the server
   * API's Disconnect, Subscribe, Unsubscribe, Info and Sends to users reach
   * its connections through it. Its id must be the prefix of the
   * connection ids (connectionIds). Undefined: no control plane (unit
   * tests of the core alone).
   */
  node?: EdgeNode;
  /**
   * The backend's hooks (core/hooks.ts): OnJoin for the channels it names,
   * on a client's join and a server-side Subscribe; OnClientSend for a
   * client's send. Undefined: none.
   */
  hooks?: Hooks;
  /**
   * This edge's message tap (core/tap.ts): its clients' sends and
   * broadcasts are copied while an API node announces a watcher (on the
   * control plane, so only with node). Undefined: none.
   */
  tap?: Tap;
}

/**
 * Edge is the core of an edge process: its connections, their channel
 * membership, the client commands, and the fan-out of publications to
 * local connections. It knows no transport: the connection policy
 * (connections.ts) hands it Connections and their frames.
 *
 * Guarantees: a connection's commands run in the order they arrived, one at
 * a time; a publication is encoded at most once per encoding and the same
 * bytes are written to every recipient; a connection that closes leaves all
 * its channels and the other members receive channel:leave, once the rest
 * of the service is reachable if it is not now.
 *
 * A reply tells the truth about join, leave and updateProfile: they go
 * through the membership room (core/membership.ts), whose contract says
 * what is written and announced in which order. When the first presence
 * write fails, nothing changed (here, in presence and for peers) and the
 * reply is the error, UNAVAILABLE while the link or Redis is away; once it
 * succeeded, the change stands and the reply is ok: the steps left are
 * owed, and done before any later command of the connection but ping and
 * refresh. A connection's own events (its system events, and with echo what
 * it sends or broadcasts) are handed to it directly, before its reply;
 * everyone else gets them through the broker.
 */
export class Edge {
  readonly sessions = new Map<string, Session>();
  private readonly channels = new Map<string, LocalChannel>();
  private readonly connectionIds: IdGenerator;
  private readonly eventIds: IdGenerator;
  private readonly maxEventBytes: number;
  private readonly observer: Observer;
  /** The command rate and the error budget of every connection; undefined = unlimited. */
  private readonly rate: TokenBucket | undefined;
  private readonly errorBudget: TokenBucket | undefined;
  private readonly membership: Membership;
  /** The own events the connections (by id) wait for from the broker, oldest first. */
  private readonly echoes = new Map<string, PendingEcho[]>();
  /** The connections replaying a channel's history, and what arrived live meanwhile. */
  private readonly recovering = new Map<Session, Recovery>();
  /** The channels with an open presence window. */
  private readonly openWindows = new Set<LocalChannel>();
  /** Sends what the open windows hold, at the end of the earliest one (at flushAt). */
  private flushTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private flushAt = 0;
  private readonly presenceEvents: PresenceEventsFor;
  private readonly presenceWindowMs: number;
  /** The users of the open connections, by user id (control plane only). */
  private readonly users = new Map<string, LocalUser>();
  private readonly control: EdgeControl<Session> | undefined;

  constructor(private readonly options: EdgeOptions) {
    this.observer = options.observer ?? NOOP_OBSERVER;
    this.connectionIds = options.connectionIds ?? new IdGenerator();
    this.eventIds = options.eventIds ?? new IdGenerator();
    this.maxEventBytes = options.limits.maxPayloadBytes;
    this.presenceEvents = options.presenceEvents ?? ALL_PRESENCE_EVENTS;
    this.presenceWindowMs = options.presenceWindowMs ?? DEFAULT_PRESENCE_WINDOW_MS;
    this.membership =
      options.membership ??
      new Membership({
        broker: options.broker,
        presence: options.presence,
        eventIds: this.eventIds,
        onError: (err) => options.onError?.(err),
      });
    const rl = options.rateLimit;
    if (rl) {
      this.rate = new TokenBucket(rl.perSecond, rl.burst);
      this.errorBudget = new TokenBucket(rl.errorRefillPerSecond, rl.errorBudget);
    }
    if (options.node) {
      this.control = new EdgeControl<Session>(
        this,
        options.broker,
        options.node,
        (err) => options.onError?.(err),
        options.tap,
      );
      this.control.start();
    }
  }

  /**
   * Registers a new connection and sends it its id. identity is who its
   * token says it is (anonymous by default); when the token expires, the
   * connection is closed with 4003 unless a Refresh replaced it.
   */
  connect(
    transport: Connection,
    encoding: Encoding,
    echo: boolean,
    identity: Identity = ANONYMOUS,
    presence: PresenceForm = "single",
  ): Session {
    const session = new Session(this.connectionIds.next(), transport, encoding, echo);
    session.identity = identity;
    session.presenceBatches = presence !== "single";
    session.presenceCompact = presence === "compact";
    const { profile, channels } = identity as HookIdentity;
    if (profile !== undefined) session.profile = profile;
    this.scheduleExpiry(session);
    this.sessions.set(session.id, session);
    this.observer.connectionOpened(encoding);
    this.membership.connectionOpened(session.id, identity.userId, edgeOfConnection(session.id) ?? "");
    const connected = (): void => {
      if (session.closed) return;
      transport.send(
        serverFrame({ frame: { case: "connected", value: { id: session.id } } }, encoding),
        encoding === Encoding.Json,
      );
    };
    // A user's connection is told it is connected once a Send to its user
    // reaches it: after this edge subscribed to the user's channel.
    // (On its queue: anything it sends first is answered after.)
    const user = this.control && identity.userId !== "" ? this.addUser(session) : undefined;
    if (user)
      this.enqueue(session, async () => {
        await user.subscribed;
        connected();
      });
    else connected();
    // The channels the backend's OnConnect gave it, joined as by Subscribe (the join hook is not asked).
    for (const channel of channels ?? []) {
      this.serverJoin(session, channel, false).catch((err: unknown) => this.options.onError?.(err));
    }
    return session;
  }

  /** Counts session under its user; the user's first connection here subscribes to the user's channel. */
  private addUser(session: Session): LocalUser {
    const id = session.identity.userId;
    let user = this.users.get(id);
    if (!user) {
      user = {
        sessions: new Set(),
        subscribed: this.options.broker.subscribe(userChannel(id)).catch((err: unknown) => this.options.onError?.(err)),
      };
      this.users.set(id, user);
    }
    user.sessions.add(session);
    return user;
  }

  /** The reverse of addUser: the user's last connection here unsubscribes. */
  private dropUser(session: Session): void {
    const id = session.identity.userId;
    const user = this.users.get(id);
    if (!user || !user.sessions.delete(session) || user.sessions.size > 0) return;
    this.users.delete(id);
    this.options.broker.unsubscribe(userChannel(id)).catch((err: unknown) => this.options.onError?.(err));
  }

  /** Handles one frame from the connection. Never throws. */
  receive(session: Session, data: Uint8Array, isBinary: boolean): void {
    if (session.closed) return;
    let frame: ClientFrame;
    try {
      frame = decodeClientFrame(data, isBinary, session.encoding);
    } catch (err) {
      const e = err instanceof FrameError ? err : new FrameError(String(err));
      // An unknown command is a command (of a newer protocol): it counts
      // against the rate limit. A malformed frame spends the error budget.
      const unknownCommand = e.code === Code.Unimplemented;
      this.observer.messageIn(unknownCommand ? "other" : "invalid");
      if (!unknownCommand || this.takeRate(session, e.requestId)) this.replyError(session, e.requestId, e);
      return;
    }
    this.observer.messageIn(MESSAGE_IN_KINDS[frame.command.case ?? ""] ?? "other");
    if (!this.takeRate(session, frame.id)) return;
    if (session.pending >= MAX_PENDING_COMMANDS) {
      this.replyError(
        session,
        frame.id,
        new RealtimeError(
          Code.ResourceExhausted,
          `more than ${MAX_PENDING_COMMANDS} commands are waiting: wait for replies before sending more`,
        ),
      );
      return;
    }
    this.enqueue(session, async () => {
      try {
        await this.run(session, frame);
      } catch (err) {
        this.replyError(session, frame.id, asRealtimeError(err));
      }
    });
  }

  /** Takes one command from the connection's rate; false (and a RESOURCE_EXHAUSTED reply to id) when it is spent. */
  private takeRate(session: Session, id: number): boolean {
    if (!this.rate) return true;
    const state = this.rate.take(session.rate);
    if (state === undefined) {
      this.replyError(
        session,
        id,
        new RealtimeError(
          Code.ResourceExhausted,
          `rate limit: at most ${this.rate.perSecond} commands per second (bursts of ${this.rate.burst}); slow down or the connection is closed`,
        ),
      );
      return false;
    }
    session.rate = state;
    return true;
  }

  /** Runs fn after everything the connection has queued; fn must not throw. */
  private enqueue(session: Session, fn: () => Promise<void>): void {
    if (session.closed) {
      session.queue = session.queue.then(fn);
      return;
    }
    session.pending++;
    session.queue = session.queue.then(async () => {
      try {
        await fn();
      } finally {
        // The last one done: nothing is chained behind it (a disconnect
        // chains without counting, hence !closed), so the queue may drop
        // its promise and the connection hold the shared IDLE.
        if (--session.pending === 0 && !session.closed) session.queue = IDLE;
      }
    });
  }

  /**
   * The connection closed: it leaves every channel, after its pending
   * commands. Resolves once it left here; the other members are told as
   * soon as the rest of the service is reachable (retried until then).
   * `reason` is counted by the observer (see disconnectReason).
   */
  disconnect(session: Session, reason: DisconnectReason = "client"): Promise<void> {
    if (session.closed) return session.queue;
    session.closed = true;
    clearTimeout(session.expiryTimer);
    if (this.control) this.dropUser(session);
    this.observer.connectionClosed(reason);
    session.queue = session.queue.then(async () => {
      this.sessions.delete(session.id);
      this.recovering.delete(session);
      for (const channel of [...session.channels]) this.depart(session, channel, false);
      this.membership.connectionClosed(session.id, session.identity.userId, reason);
      await this.settle(session).catch(() => {});
      this.echoes.delete(session.id);
    });
    return session.queue;
  }

  /**
   * Delivers a publication to the local connections it is for. A
   * publication with a position is delivered only in its channel's order:
   * one this edge already delivered (a retry, a replay) is dropped; one
   * after a gap (publications lost on the way: a dropped subscription)
   * waits while the edge fills the gap from history (fill), and when it
   * cannot, the channel's connections are sent a Resync frame first.
   */
  deliver(pub: Publication): void {
    if (this.control && isControlChannel(pub.channel)) return this.control.handle(pub);
    this.observer.publicationReceived();
    if (pub.channel === "") return this.fanOut(this.sessions.values(), pub);
    const local = this.channels.get(pub.channel);
    if (!local) return;
    if (pub.offset) {
      if (local.filling) return this.hold(local, pub);
      if (!this.advance(local, pub)) return;
    }
    this.fanOut(local.sessions, pub, local);
  }

  /**
   * Moves the channel's position to pub's; false when pub is not to be
   * delivered now (an old one, or one after a gap: a fill starts).
   */
  private advance(local: LocalChannel, pub: Publication): boolean {
    const offset = pub.offset!;
    if (local.epoch === pub.epoch) {
      if (offset <= local.offset) return false;
      if (offset !== local.offset + 1n) {
        local.filling = [pub];
        void this.fill(local);
        return false;
      }
    } else if (local.epoch !== "") {
      // The channel's history was lost (the hub restarted, Redis lost its
      // keys): what happened in between cannot be known.
      this.resync(local, { offset: local.offset, epoch: local.epoch });
    }
    local.epoch = pub.epoch!;
    local.offset = offset;
    return true;
  }

  /**
   * The broker is back after it was away (the link re-attached, Redis
   * reconnected): publications may have been lost on the way here, and no
   * later one may come to show the gap. Each channel with a position reads
   * the history after it and delivers what was missed (fill), a few
   * channels at a time; a channel whose history cannot say (the hub
   * restarted: a new epoch) has its connections sent Resync.
   */
  recheck(): void {
    const channels = [...this.channels.values()].filter((l) => l.epoch !== "");
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < channels.length) {
        const local = channels[next++]!;
        if (this.channels.get(local.channel) !== local || local.filling || local.epoch === "") continue;
        local.filling = [];
        await this.fill(local);
      }
    };
    for (let i = 0; i < Math.min(RECHECK_CONCURRENCY, channels.length); i++) void worker();
  }

  /** A publication that arrived while the channel's gap is filled. */
  private hold(local: LocalChannel, pub: Publication): void {
    if (local.filling!.length < MAX_RECOVERY_EVENTS) local.filling!.push(pub);
    else local.overflow = true;
  }

  /**
   * Fills the channel's gap from history, in order, then delivers what
   * arrived meanwhile. When history cannot (the events are no longer kept,
   * the broker is away, too many arrived meanwhile), the connections are
   * sent Resync with the last position delivered, and delivery goes on from
   * the next publication.
   */
  private async fill(local: LocalChannel): Promise<void> {
    const { channel } = local;
    const position = { offset: local.offset, epoch: local.epoch };
    let whole = true;
    try {
      for (let read = 0; read <= MAX_RECOVERY_EVENTS;) {
        const since = { offset: local.offset, epoch: local.epoch };
        const res = await this.options.broker.history(channel, { since, limit: MAX_HISTORY_LIMIT });
        if (!res.complete) {
          whole = false;
          break;
        }
        for (const p of res.publications) {
          if (p.epoch !== local.epoch || p.offset! <= local.offset) continue;
          local.offset = p.offset!;
          this.fanOut(local.sessions, p, local, true);
        }
        read += res.publications.length;
        if (res.publications.length === 0 || local.offset >= res.position.offset) break;
      }
    } catch (err) {
      whole = false;
      this.options.onError?.(err);
    }
    const held = local.filling ?? [];
    local.filling = undefined;
    if (!whole || local.overflow) {
      local.overflow = false;
      this.resync(local, position);
      // Delivery goes on from the next publication that arrived.
      local.epoch = "";
    }
    for (let i = 0; i < held.length; i++) {
      if (local.filling) {
        this.hold(local, held[i]!);
        continue;
      }
      if (this.advance(local, held[i]!)) this.fanOut(local.sessions, held[i]!, local);
    }
  }

  /** Tells the channel's connections that events after position were lost (ServerFrame.resync). */
  private resync(local: LocalChannel, position: StreamPosition): void {
    if (local.window) this.flushWindow(local);
    for (const session of local.sessions) this.sendResync(session, local.channel, position);
  }

  private sendResync(session: Session, channel: string, position: StreamPosition): void {
    // A frame about the channel's events: counted as one.
    this.send(session, { frame: { case: "resync", value: { channel, position } } }, "event");
  }

  /**
   * Writes pub to each of targets (but its origin, when it is to be
   * skipped, and those of local.ahead that have it); the same bytes to all.
   *
   * Delivery latency (Observer.delivered): once the writes are done, one
   * clock read per publication, however many connections it reached, so
   * that a fan-out to 1,000 members costs one Date.now(), not 1,000; the
   * latency is the last recipient's, the fan-out's own time included.
   * Measured only for a publication the API stamped (acceptedUnixMs) that
   * was written to at least one connection here; not for one read from
   * history (fromHistory: a gap filled after publications were lost; how
   * late it comes measures the loss, not the delivery path), nor for the
   * copies a replaying connection holds back until its replay ends, nor for
   * a connection's own events (deliverTo).
   */
  private fanOut(targets: Iterable<Session>, pub: Publication, local?: LocalChannel, fromHistory = false): void {
    const system = local !== undefined && isSystemEventBytes(pub.event);
    // Members of a channel without presence events get none (not even their own).
    if (system && !local.presenceEvents) return;
    if (pub.skipOrigin && pub.offset && this.echoes.size > 0) this.echoArrived(pub);
    if (system) {
      if (local.sessions.size > (local.unbatched?.size ?? 0)) {
        this.holdInWindow(local, pub);
        if (!local.unbatched) return;
        targets = local.unbatched;
      }
    } else if (local?.window) this.flushWindow(local);
    let binary: Uint8Array | undefined;
    let json: Uint8Array | undefined;
    let written = 0;
    let dropped = 0;
    const recovering = this.recovering.size > 0;
    for (const session of targets) {
      if (pub.skipOrigin && session.id === pub.origin) continue;
      if (session.closed) {
        dropped++;
        continue;
      }
      if (local?.ahead && this.handedAlready(local, local.ahead, session, pub)) continue;
      if (recovering) {
        const r = this.recovering.get(session);
        if (r !== undefined && r.channel === pub.channel) {
          if (r.buffer.length < MAX_RECOVERY_EVENTS) r.buffer.push(pub);
          else r.overflow = true;
          continue;
        }
      }
      if (this.openWindows.size > 0) this.flushOpenFor(session);
      try {
        if (session.encoding === Encoding.Json) session.transport.send((json ??= jsonEventFrame(pub)), true, true);
        else session.transport.send((binary ??= binaryEventFrame(pub)), false, true);
        written++;
      } catch (err) {
        // One connection's failure must not cost the others this event (nor
        // reach the link that called us).
        dropped++;
        this.options.onError?.(err);
      }
    }
    if (written > 0) {
      this.observer.messageOut("event", written);
      if (pub.acceptedUnixMs && !fromHistory)
        this.observer.delivered(pub.channel === "", deliveryLatencySeconds(pub.acceptedUnixMs, Date.now()));
    }
    if (dropped > 0) this.observer.dropped("closed", dropped);
  }

  /** Whether session's replay already handed it pub (see LocalChannel.ahead); forgets it once past. */
  private handedAlready(
    local: LocalChannel,
    ahead: Map<Session, StreamPosition>,
    session: Session,
    pub: Publication,
  ): boolean {
    const mark = ahead.get(session);
    if (!mark || !pub.offset) return false;
    const had = pub.epoch === mark.epoch && pub.offset <= mark.offset;
    if (!had || pub.offset === mark.offset) {
      ahead.delete(session);
      if (ahead.size === 0) local.ahead = undefined;
    }
    return had;
  }

  /**
   * The connection's own event is on its way: the broker brings it back
   * (skipping the connection), and fanOut hands it over then, in the
   * channel's order (see finishEcho).
   */
  private expectEcho(session: Session, pub: Publication): void {
    const list = this.echoes.get(session.id);
    const pending: PendingEcho = { session, event: pub.event, arrived: false, wake: undefined };
    if (list) list.push(pending);
    else this.echoes.set(session.id, [pending]);
  }

  /** The connection's own event was not published after all: nothing comes back. */
  private forgetEcho(session: Session, pub: Publication): void {
    const list = this.echoes.get(session.id);
    const at = list?.findIndex((p) => p.event === pub.event) ?? -1;
    if (at < 0) return;
    list!.splice(at, 1);
    if (list!.length === 0) this.echoes.delete(session.id);
  }

  /** The broker brought back an event a connection waits for: hand it over now. */
  private echoArrived(pub: Publication): void {
    const list = this.echoes.get(pub.origin);
    if (!list) return;
    for (const pending of list) {
      if (pending.arrived || !sameBytes(pending.event, pub.event)) continue;
      pending.arrived = true;
      this.deliverTo(pending.session, pub);
      pending.wake?.();
      return;
    }
  }

  /**
   * pub, the connection's own event, is published (delivery): its copy is
   * handed over, once. With a position, the copy the broker brings back
   * keeps the channel's order: it is waited for (up to ECHO_WAIT_MS),
   * unless `direct` (the connection left the channel: nothing of it comes
   * back); otherwise, or when it does not come, the copy is handed over here
   * with the position the broker answered.
   */
  private async finishEcho(session: Session, pub: Publication, delivery: Delivery, direct: boolean): Promise<void> {
    const list = this.echoes.get(session.id);
    const pending = list?.find((p) => p.event === pub.event);
    if (pending && !pending.arrived && !direct && delivery.offset !== 0n) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ECHO_WAIT_MS);
        pending.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (list && pending) {
      list.splice(list.indexOf(pending), 1);
      if (list.length === 0) this.echoes.delete(session.id);
    }
    if (!pending?.arrived) this.deliverTo(session, withPosition(pub, delivery));
  }

  /** Whether members get pub: false for a system event of a channel without presence events. */
  private wants(pub: Publication): boolean {
    if (pub.channel === "" || !isSystemEventBytes(pub.event)) return true;
    return this.channels.get(pub.channel)?.presenceEvents ?? this.presenceEvents(pub.channel);
  }

  /**
   * pub, a system event of local, waits in the channel's window for its
   * members that batch (those in local.unbatched get it from fanOut at once).
   * A member that must not get it (its own event without echo; one that
   * recovers the channel, whose copy waits with its replay; one a replay
   * handed it already) is sent its share of the window first, and reads
   * on after it.
   */
  private holdInWindow(local: LocalChannel, pub: Publication): void {
    let w = local.window;
    if (!w) {
      w = local.window = { pubs: [], from: new Map(), deadline: Date.now() + this.windowMs(local) };
      this.openWindows.add(local);
      this.armWindowTimer(w.deadline);
    }
    const at = w.pubs.length;
    w.pubs.push(pub);
    if (pub.skipOrigin) {
      const origin = this.sessions.get(pub.origin);
      if (origin?.presenceBatches && local.sessions.has(origin)) this.skipInWindow(local, origin, at);
    }
    if (this.recovering.size > 0) {
      for (const [session, r] of this.recovering) {
        if (r.channel !== pub.channel || !session.presenceBatches || !local.sessions.has(session)) continue;
        if (r.buffer.length < MAX_RECOVERY_EVENTS) r.buffer.push(pub);
        else r.overflow = true;
        this.skipInWindow(local, session, at);
      }
    }
    if (local.ahead) {
      for (const session of [...local.ahead.keys()])
        if (session.presenceBatches && this.handedAlready(local, local.ahead, session, pub))
          this.skipInWindow(local, session, at);
    }
    if (w.pubs.length >= MAX_HELD_PRESENCE_EVENTS) this.flushWindow(local);
  }

  /** session is not to get local's window event at index at: it is sent those before, and reads on after it. */
  private skipInWindow(local: LocalChannel, session: Session, at: number): void {
    const w = local.window!;
    if ((w.from.get(session) ?? 0) < at) this.flushShare(local, session, at);
    w.from.set(session, at + 1);
  }

  /** How long local's window lasts: the setting, longer for a channel with many members here (MAX_PRESENCE_FRAMES_PER_SECOND). */
  private windowMs(local: LocalChannel): number {
    if (this.presenceWindowMs === 0) return 0;
    const scaled = Math.ceil((local.sessions.size * 1_000) / MAX_PRESENCE_FRAMES_PER_SECOND);
    return Math.min(Math.max(this.presenceWindowMs, scaled), Math.max(this.presenceWindowMs, MAX_PRESENCE_WINDOW_MS));
  }

  /** The timer fires by deadline (0 windows: at the end of this turn of the event loop). */
  private armWindowTimer(deadline: number): void {
    if (this.presenceWindowMs === 0) {
      this.flushTimer ??= setImmediate(() => {
        this.flushTimer = undefined;
        this.flushDue(Infinity);
      });
      return;
    }
    if (this.flushTimer !== undefined) {
      if (this.flushAt <= deadline) return;
      clearTimeout(this.flushTimer as NodeJS.Timeout);
    }
    this.flushAt = deadline;
    this.flushTimer = setTimeout(
      () => {
        this.flushTimer = undefined;
        this.flushDue(Date.now());
      },
      Math.max(0, deadline - Date.now()),
    );
    this.flushTimer.unref?.();
  }

  /** Ends the windows due by now; the timer goes on for the others. */
  private flushDue(now: number): void {
    let next = Infinity;
    for (const local of [...this.openWindows]) {
      const deadline = local.window!.deadline;
      if (deadline <= now + 1) this.flushWindow(local);
      else next = Math.min(next, deadline);
    }
    if (next !== Infinity) this.armWindowTimer(next);
  }

  /**
   * The end of local's window (its time is up, it is full, or an event of
   * the channel that is not held comes next): every member that batches
   * gets its share. The frames of a share are built once per start index
   * and encoding: the members that read the whole window (nearly all) get
   * the same bytes.
   */
  private flushWindow(local: LocalChannel): void {
    const w = local.window;
    if (!w) return;
    local.window = undefined;
    this.openWindows.delete(local);
    const n = w.pubs.length;
    const built = new Map<number, Uint8Array[]>();
    let dropped = 0;
    for (const session of local.sessions) {
      if (!session.presenceBatches) continue;
      const from = w.from.size === 0 ? 0 : (w.from.get(session) ?? 0);
      if (from >= n) continue;
      if (session.closed) {
        // Counted per event, as fanOut counts what it cannot write to a closed connection.
        dropped += n - from;
        continue;
      }
      const key = from * 4 + (session.encoding === Encoding.Json ? 1 : 0) + (session.presenceCompact ? 2 : 0);
      let frames = built.get(key);
      if (!frames) {
        frames = presenceFrames(from === 0 ? w.pubs : w.pubs.slice(from), session);
        built.set(key, frames);
      }
      this.writeFrames(session, frames);
    }
    if (dropped > 0) this.observer.dropped("closed", dropped);
  }

  /** Sends session local's window events from its index up to end now; it reads on from end. */
  private flushShare(local: LocalChannel, session: Session, end = local.window!.pubs.length): void {
    const w = local.window!;
    const from = w.from.get(session) ?? 0;
    if (from >= end) return;
    w.from.set(session, end);
    if (session.closed) this.observer.dropped("closed", end - from);
    else this.writeFrames(session, presenceFrames(w.pubs.slice(from, end), session));
  }

  /** Sends session its share of every open window of its channels (something else is about to be sent to it). */
  private flushOpenFor(session: Session): void {
    if (!session.presenceBatches) return;
    if (session.channels.size <= this.openWindows.size) {
      for (const channel of session.channels) {
        const local = this.channels.get(channel);
        if (local?.window) this.flushShare(local, session);
      }
    } else for (const local of this.openWindows) if (local.sessions.has(session)) this.flushShare(local, session);
  }

  private writeFrames(session: Session, frames: readonly Uint8Array[]): void {
    const json = session.encoding === Encoding.Json;
    try {
      for (const frame of frames) session.transport.send(frame, json);
      this.observer.messageOut("event", frames.length);
    } catch (err) {
      this.observer.dropped("closed", frames.length);
      this.options.onError?.(err);
    }
  }

  /** Levels for metrics, read when they are scraped: O(connections). */
  stats(): { connections: number; channels: number; members: number } {
    let members = 0;
    for (const session of this.sessions.values()) members += session.channels.size;
    return { connections: this.sessions.size, channels: this.channels.size, members };
  }

  /**
   * What this edge holds, for a broker that must re-learn it (after a link
   * drop): its channels, and its members with their profiles, including
   * those whose removal is still owed (their channel:leave goes out once
   * the removal is done, so the hub must hold them until then).
   */
  snapshot(): { channels: string[]; members: { channel: string; member: Member }[] } {
    const members: { channel: string; member: Member }[] = [];
    for (const session of this.sessions.values()) {
      if (session.closed) continue;
      const member = session.member();
      for (const channel of session.channels) members.push({ channel, member });
    }
    members.push(...this.membership.owedRemovals());
    const channels = [...this.channels.keys()];
    if (this.control) channels.push(...this.control.channels(), ...[...this.users.keys()].map(userChannel));
    return { channels, members };
  }

  // The control plane's side of the edge (ControlledEdge, edge-control.ts).

  /** The open connections of this edge that target names. */
  targets(target: ControlTarget | undefined): Session[] {
    const t = target?.target;
    if (t?.case === "connectionId") {
      const session = this.sessions.get(t.value);
      return session && !session.closed ? [session] : [];
    }
    if (t?.case === "userId") return [...(this.users.get(t.value)?.sessions ?? [])];
    return [];
  }

  /** Hands pub (an event with channel "") to every open connection of the user here. */
  deliverToUser(userId: string, pub: Publication): void {
    this.observer.publicationReceived();
    const user = this.users.get(userId);
    if (user) this.fanOut(user.sessions, pub);
  }

  /**
   * The connection joins channel on the backend's word (realtime.v1
   * Subscribe), after its queued commands, with the checks and events of
   * its own join (echo off), and is sent a Subscribed frame. Resolves true
   * when it joined, false when it was a member already or is closed.
   */
  serverJoin(session: Session, channel: string, askHook = true): Promise<boolean> {
    return this.onQueue(session, async () => {
      if (session.channels.has(channel)) return false;
      checkChannel(channel);
      this.checkAccess(session, channel);
      if (askHook) await this.askJoinHook(session, channel, true);
      const { position } = await this.join(session, channel, false, undefined);
      this.send(session, { frame: { case: "subscribed", value: { channel, position } } }, "event");
      return true;
    });
  }

  /**
   * The connection leaves channel on the backend's word (realtime.v1
   * Unsubscribe), after its queued commands; the others get channel:leave,
   * it an Unsubscribed frame. Resolves true when it left, false when it was
   * not a member or is closed.
   */
  serverLeave(session: Session, channel: string): Promise<boolean> {
    return this.onQueue(session, async () => {
      if (!session.channels.has(channel)) return false;
      await this.leave(session, channel, false);
      this.send(session, { frame: { case: "unsubscribed", value: { channel } } }, "event");
      return true;
    });
  }

  /** Asks the backend's OnJoin, when it is asked about channel and the connection is not a member yet. */
  private async askJoinHook(session: Session, channel: string, serverSide: boolean): Promise<void> {
    const hooks = this.options.hooks;
    if (!hooks?.joins(channel) || session.channels.has(channel)) return;
    await hooks.join(session.id, session.identity.userId, channel, serverSide);
  }

  /** What the connection is, for GetConnections (ControlledEdge.facts). */
  facts(session: Session): ConnectionFacts {
    return {
      id: session.id,
      userId: session.identity.userId,
      channels: session.channels,
      connectedUnixMs: session.connectedUnixMs,
      encoding: session.encoding,
      profile: session.profile,
    };
  }

  /** Closes the connection (the policy ends it and it leaves its channels). */
  close(session: Session, code: number, reason: string): void {
    if (!session.closed) session.transport.close(code, reason);
  }

  /** Runs fn on the connection's queue, as its next command, settling what it owes first; false when it is closed. */
  private onQueue(session: Session, fn: () => Promise<boolean>): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.enqueue(session, async () => {
        try {
          if (session.closed) return resolve(false);
          if (this.membership.owes(session.id)) await this.settle(session);
          resolve(await fn());
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  private async run(session: Session, frame: ClientFrame): Promise<void> {
    const { id, command } = frame;
    // What an earlier change still owes goes first: the other members must
    // see this connection's changes in the order it made them. A ping needs
    // nothing of the service, and a refresh must not wait for it (the token
    // would expire; its own leaves are owed after the earlier steps).
    if (this.membership.owes(session.id) && command.case !== "ping" && command.case !== "refresh")
      await this.settle(session);
    switch (command.case) {
      case "join": {
        const { channel, since } = command.value;
        checkChannel(channel);
        this.checkAccess(session, channel);
        await this.askJoinHook(session, channel, false);
        const joined = await this.join(
          session,
          channel,
          command.value.echo ?? session.echo,
          since && { offset: since.offset, epoch: since.epoch },
        );
        if (id === 0) return;
        this.send(session, { frame: { case: "reply", value: { id, ...joined } } });
        return;
      }
      case "leave": {
        checkChannel(command.value.channel);
        if (session.channels.has(command.value.channel)) {
          await this.leave(session, command.value.channel, command.value.echo ?? session.echo);
        }
        return this.replyOk(session, id);
      }
      case "updateProfile": {
        await this.updateProfile(session, command.value.data, command.value.echo ?? session.echo);
        return this.replyOk(session, id);
      }
      case "send": {
        const { channel, event, payload } = command.value;
        checkChannel(channel);
        checkEvent(event);
        checkPayload(payload);
        if (this.options.allowClientSend === false) {
          throw new RealtimeError(
            Code.PermissionDenied,
            "clients may not send events on this service (REALTIME_ALLOW_CLIENT_SEND is off): backends send through the API",
          );
        }
        this.checkAccess(session, channel);
        if (!session.channels.has(channel)) {
          throw new RealtimeError(
            Code.FailedPrecondition,
            `join channel ${JSON.stringify(channel)} before sending to it`,
          );
        }
        // The backend's OnClientSend may refuse it or give another event to deliver.
        const hooks = this.options.hooks;
        const sent = hooks?.sends(channel)
          ? await hooks.send(session.id, session.identity.userId, channel, event, payload as SendPayload)
          : { event, payload };
        const messageId = await this.publish(
          session,
          channel,
          sent.event,
          sent.payload,
          command.value.echo ?? session.echo,
        );
        return this.replyOk(session, id, messageId);
      }
      case "broadcast": {
        if (!this.options.allowClientBroadcast) {
          throw new RealtimeError(
            Code.PermissionDenied,
            "clients may not broadcast on this service (REALTIME_ALLOW_CLIENT_BROADCAST is off): backends broadcast through the API",
          );
        }
        const { event, payload } = command.value;
        checkEvent(event);
        checkPayload(payload);
        const messageId = await this.publish(session, "", event, payload, command.value.echo ?? session.echo);
        return this.replyOk(session, id, messageId);
      }
      case "getMembers": {
        const { channel, pageSize, pageToken } = command.value;
        checkChannel(channel);
        this.checkAccess(session, channel);
        // One page, small enough for the connection's queue (core/pages.ts).
        const page = await readMembersPage(this.options.presence, channel, pageSize, pageToken, session.encoding);
        this.send(session, { frame: { case: "reply", value: { id, ...page } } });
        return;
      }
      case "getHistory": {
        const { channel, since, limit, reverse } = command.value;
        checkChannel(channel);
        this.checkAccess(session, channel);
        const read = await this.options.broker.history(channel, {
          since: since && { offset: since.offset, epoch: since.epoch },
          limit: historyLimit(limit),
          newestFirst: reverse,
        });
        const { publications, position, complete } = fitHistory(read, MAX_HISTORY_REPLY_BYTES);
        const events = publications.map((p) => {
          const event = fromBinary(EventSchema, p.event);
          event.offset = p.offset ?? 0n;
          event.epoch = p.epoch ?? "";
          return event;
        });
        this.send(session, { frame: { case: "reply", value: { id, events, position, complete } } });
        return;
      }
      case "ping":
        this.send(session, { frame: { case: "reply", value: { id } } });
        return;
      case "refresh":
        await this.refresh(session, command.value.token);
        return this.replyOk(session, id);
      default:
        throw new RealtimeError(
          Code.Unimplemented,
          `unknown command: this edge knows ${"join, leave, updateProfile, send, broadcast, getMembers, getHistory, ping, refresh"}`,
        );
    }
  }

  /** Throws PERMISSION_DENIED when channel is private and the connection's token does not grant it. */
  private checkAccess(session: Session, channel: string): void {
    const prefix = this.options.privateChannelPrefix ?? DEFAULT_PRIVATE_CHANNEL_PREFIX;
    if (channel.startsWith(prefix) && !session.identity.grants.allows(channel)) {
      throw new RealtimeError(
        Code.PermissionDenied,
        `channel ${JSON.stringify(channel)} is private ("${prefix}" prefix): the connection's token does not grant it (channels claim)`,
      );
    }
  }

  /**
   * Replaces the connection's token: same subject required; the new grants
   * apply at once (private channels no longer granted are left) and the
   * expiry is rescheduled. A refused token leaves the old one in force.
   */
  private async refresh(session: Session, token: string): Promise<void> {
    const verify = this.options.verifyToken;
    if (!verify)
      throw new RealtimeError(
        Code.FailedPrecondition,
        "this edge verifies no tokens (none is configured): there is nothing to refresh",
      );
    let identity: Identity;
    try {
      identity = await verify(token);
    } catch (err) {
      throw new RealtimeError(Code.Unauthenticated, err instanceof Error ? err.message : "invalid token");
    }
    if (identity.userId !== session.identity.userId) {
      throw new RealtimeError(
        Code.PermissionDenied,
        `the new token is for another user (sub ${JSON.stringify(identity.userId)}): a connection keeps its user; open a new connection instead`,
      );
    }
    session.identity = identity;
    this.scheduleExpiry(session);
    for (const channel of [...session.channels]) {
      try {
        this.checkAccess(session, channel);
      } catch {
        // The edge, not the client, ends this membership, at once and
        // whatever the link's state: the client is told (its own
        // channel:leave), whatever its echo setting.
        this.depart(session, channel, true, LeaveReason.LEFT);
      }
    }
    await this.settle(session).catch(() => {});
  }

  /**
   * Arms (or re-arms) the timer that closes the connection with 4003 when its
   * token expires: at its exp plus the clock skew the edge allows.
   */
  private scheduleExpiry(session: Session): void {
    clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    const exp = session.identity.expiresAt;
    if (exp === undefined) return;
    const at = exp + TOKEN_CLOCK_SKEW_MS;
    // setTimeout holds at most 2^31-1 ms (24.8 days): re-arm until then.
    const delay = Math.min(Math.max(0, at - Date.now()), 0x7fffffff);
    session.expiryTimer = setTimeout(() => {
      if (session.closed) return;
      if (Date.now() < at) return this.scheduleExpiry(session);
      session.transport.close(
        CloseCode.TokenExpired,
        "token expired: send a Refresh frame before exp, then reconnect with a new token",
      );
    }, delay);
    session.expiryTimer.unref?.();
  }

  /**
   * The connection joins channel; with since, it first gets every event of
   * the channel after since, in order, once, from history (replay), and
   * the answer says whether it could (recovered). Joining a channel the
   * connection is in changes nothing, but replays with since (a client that
   * was sent Resync, or that recovers after a blip of its own). position is
   * where the connection's stream of the channel starts: the offset of its
   * own channel:join, after which it receives every event (or, for a
   * replay only, the last event replayed).
   */
  private async join(
    session: Session,
    channel: string,
    echo: boolean,
    since: StreamPosition | undefined,
  ): Promise<{ position?: StreamPosition; recovered: boolean }> {
    if (session.channels.has(channel)) {
      if (!since) return { recovered: false };
      return this.replay(session, channel, since);
    }
    const max = this.options.limits.maxChannelsPerConnection;
    if (session.channels.size >= max) {
      throw new RealtimeError(
        Code.ResourceExhausted,
        `this connection is in ${max} channels, the limit: leave one before joining another`,
      );
    }
    let local = this.channels.get(channel);
    if (!local) {
      local = {
        channel,
        sessions: new Set(),
        subscribed: this.options.broker.subscribe(channel),
        presenceEvents: this.presenceEvents(channel),
        epoch: "",
        offset: 0n,
        filling: undefined,
        overflow: false,
        ahead: undefined,
        unbatched: undefined,
        window: undefined,
      };
      this.channels.set(channel, local);
    }
    // Live publications wait while the history is replayed.
    if (since) this.recovering.set(session, { channel, buffer: [], overflow: false });
    local.sessions.add(session);
    if (!session.presenceBatches) (local.unbatched ??= new Set()).add(session);
    // It gets the channel's events from now on, not those held before.
    if (local.window) local.window.from.set(session, local.window.pubs.length);
    session.channels.add(channel);
    try {
      await local.subscribed;
      let recovered = false;
      if (since) recovered = (await this.replay(session, channel, since)).recovered;
      let position: StreamPosition | undefined;
      // Rejects when nothing changed: then no one sees the member (see the class comment).
      await this.membership.join(
        channel,
        session.member(),
        this.expectOwn(session, echo),
        this.ownPublished(session, echo, false, (d) => {
          if (d.offset !== 0n) position = { offset: d.offset, epoch: d.epoch };
        }),
      );
      return { position, recovered };
    } catch (err) {
      this.recovering.delete(session);
      this.dropLocal(session, channel);
      throw err;
    }
  }

  /**
   * Hands the connection the channel's events after since, from history,
   * then those that arrived live meanwhile (the connection is in
   * this.recovering until then; a join puts it there before it subscribes).
   * recovered: every event after since was handed over; false when the
   * epoch changed, the events are no longer all kept, or more than
   * MAX_RECOVERY_EVENTS were missed (nothing is replayed then: the client
   * resynchronises). Rejects (UNAVAILABLE) when the history cannot be read.
   */
  private async replay(
    session: Session,
    channel: string,
    since: StreamPosition,
  ): Promise<{ position: StreamPosition; recovered: boolean }> {
    let recovery = this.recovering.get(session);
    if (!recovery) this.recovering.set(session, (recovery = { channel, buffer: [], overflow: false }));
    let cursor = since;
    let recovered = true;
    try {
      for (let first = true; ; first = false) {
        const res = await this.options.broker.history(channel, {
          since: cursor,
          limit: Math.min(MAX_HISTORY_LIMIT, MAX_RECOVERY_EVENTS),
        });
        if (
          !res.complete ||
          (first && res.position.epoch === since.epoch && res.position.offset - since.offset > MAX_RECOVERY_EVENTS)
        ) {
          recovered = false;
          cursor = res.position;
          break;
        }
        for (const p of res.publications) {
          if (p.offset! <= cursor.offset) continue;
          this.deliverTo(session, p);
          cursor = { offset: p.offset!, epoch: p.epoch! };
        }
        if (res.publications.length === 0 || cursor.offset >= res.position.offset) break;
      }
    } catch (err) {
      this.recovering.delete(session);
      throw err;
    }
    this.recovering.delete(session);
    if (recovery.overflow) recovered = false;
    // Told before anything newer of the channel: a client whose connection
    // drops before the reply must not take a later event's position for a
    // recovered one.
    if (!recovered) this.sendResync(session, channel, since);
    for (const p of recovery.buffer) {
      if (p.epoch === cursor.epoch && p.offset! <= cursor.offset) continue;
      if (recovered && p.offset && cursor.epoch !== "" && p.epoch !== cursor.epoch) {
        // The channel's history was lost after it was read: what was between is not known.
        recovered = false;
        this.sendResync(session, channel, since);
      }
      this.deliverTo(session, p);
      if (p.offset) cursor = { offset: p.offset, epoch: p.epoch! };
    }
    this.replayedTo(session, channel, cursor);
    return { position: cursor, recovered };
  }

  /**
   * After a replay: the connection has the channel up to cursor. A channel
   * with no position here yet takes it (the connection is its only one),
   * so that what comes next is checked against it; otherwise, when the
   * connection is ahead of the channel here, it is marked so (ahead).
   */
  private replayedTo(session: Session, channel: string, cursor: StreamPosition): void {
    const local = this.channels.get(channel);
    if (!local || !local.sessions.has(session) || cursor.epoch === "") return;
    if (local.epoch === "" && local.sessions.size === 1 && !local.filling) {
      local.epoch = cursor.epoch;
      local.offset = cursor.offset;
    } else if (local.epoch !== cursor.epoch || cursor.offset > local.offset) {
      (local.ahead ??= new Map()).set(session, cursor);
    }
  }

  /** The client's leave: all or nothing (see the class comment). */
  private async leave(session: Session, channel: string, echo: boolean): Promise<void> {
    // Rejects when nothing changed: the connection is still in the channel.
    await this.membership.leave(
      channel,
      session.member(),
      this.leftHere(session, channel),
      this.ownPublished(session, echo, true),
    );
  }

  /**
   * Ends the connection's membership of channel here at once, whatever the
   * state of the rest of the service; the presence removal and the
   * channel:leave are owed until they are done (the caller settles).
   */
  private depart(session: Session, channel: string, echo: boolean, reason?: DepartReason): void {
    this.membership.depart(
      channel,
      session.member(),
      this.leftHere(session, channel),
      this.ownPublished(session, echo, true),
      reason,
    );
  }

  private async updateProfile(session: Session, data: Value | undefined, echo: boolean): Promise<void> {
    if (!data)
      throw new RealtimeError(Code.InvalidArgument, "data is required: any JSON value (null clears the profile)");
    const size = toBinary(ValueSchema, data).length;
    if (size > this.options.limits.maxProfileBytes) {
      throw new RealtimeError(
        Code.ResourceExhausted,
        `the profile is ${size} bytes encoded; the limit is ${this.options.limits.maxProfileBytes} bytes`,
      );
    }
    const previous = session.profile;
    session.profile = data.kind.case === "nullValue" ? undefined : data;
    try {
      await this.membership.update(
        session.channels,
        session.member(),
        this.expectOwn(session, echo),
        this.ownPublished(session, echo, false),
      );
    } catch (err) {
      // Nothing changed: the connection keeps its profile (see the class comment).
      session.profile = previous;
      throw err;
    }
  }

  /** With echo: the connection's own events of a change are expected back (expectEcho). */
  private expectOwn(session: Session, echo: boolean): StandsHandler | undefined {
    return echo
      ? (pub) => {
          if (this.wants(pub)) this.expectEcho(session, pub);
        }
      : undefined;
  }

  /**
   * Once each own event of a change is published: with echo, its copy is
   * handed over (finishEcho; direct when the connection left the channel);
   * then `then` is told the delivery.
   */
  private ownPublished(
    session: Session,
    echo: boolean,
    direct: boolean,
    then?: (delivery: Delivery) => void,
  ): PublishedHandler | undefined {
    if (!echo && !then) return undefined;
    return async (pub, delivery) => {
      if (echo && this.wants(pub)) await this.finishEcho(session, pub, delivery, direct);
      then?.(delivery);
    };
  }

  /** The connection has left channel: it is dropped here (its own channel:leave, with echo, follows once published). */
  private leftHere(session: Session, channel: string): StandsHandler {
    return () => this.dropLocal(session, channel);
  }

  /** Runs what the connection's changes still owe (Membership.settle). */
  private settle(session: Session): Promise<void> {
    return this.membership.settle(session.id);
  }

  /**
   * A client's send or broadcast. Its own copy (echo) is handed to it here,
   * once published, so that it comes before the reply whatever the broker
   * (Redis delivers on another connection than the publish's answer).
   */
  private async publish(
    session: Session,
    channel: string,
    event: string,
    payload: Payload,
    echo: boolean,
  ): Promise<string> {
    const id = this.eventIds.next();
    const pub = createPublication(
      create(EventSchema, { id, channel, event, payload }),
      this.maxEventBytes,
      session.id,
      true,
    );
    if (echo && channel !== "") this.expectEcho(session, pub);
    const tap = this.options.tap;
    if (tap?.wanted) tap.copy({ channel, userId: "", event, id, payload, origin: session.id });
    let delivery: Delivery;
    try {
      delivery = await this.options.broker.publish(pub);
    } catch (err) {
      if (echo && channel !== "") this.forgetEcho(session, pub);
      throw err;
    }
    if (echo) await this.finishEcho(session, pub, delivery, channel === "");
    return id;
  }

  private dropLocal(session: Session, channel: string): void {
    session.channels.delete(channel);
    const local = this.channels.get(channel);
    if (!local) return;
    // What it was owed of the channel before it left goes out first.
    if (local.window && local.sessions.has(session)) {
      if (session.presenceBatches) this.flushShare(local, session);
      local.window.from.delete(session);
    }
    local.sessions.delete(session);
    local.unbatched?.delete(session);
    local.ahead?.delete(session);
    if (local.sessions.size === 0) {
      if (local.window) {
        local.window = undefined;
        this.openWindows.delete(local);
      }
      this.channels.delete(channel);
      this.options.broker.unsubscribe(channel).catch((err) => this.options.onError?.(err));
    }
  }

  private deliverTo(session: Session, pub: Publication): void {
    if (session.closed || !this.wants(pub)) return;
    if (this.openWindows.size > 0) this.flushOpenFor(session);
    this.observer.messageOut("event", 1);
    if (session.encoding === Encoding.Json) session.transport.send(jsonEventFrame(pub), true, true);
    else session.transport.send(binaryEventFrame(pub), false, true);
  }

  private replyOk(session: Session, id: number, messageId = ""): void {
    if (id === 0) return;
    this.send(session, { frame: { case: "reply", value: { id, messageId } } });
  }

  /**
   * Sends an error reply. Errors that are the client's doing spend its error
   * budget; past it the connection is closed with 4503 (policy violation).
   */
  private replyError(session: Session, id: number, err: RealtimeError): void {
    this.observer.commandFailed(err.code);
    this.send(session, {
      frame: { case: "reply", value: { id, error: { code: err.code as number as ErrorCode, message: err.message } } },
    });
    if (this.errorBudget && !session.closed && CLIENT_FAULTS.has(err.code)) {
      const state = this.errorBudget.take(session.errorBudget);
      if (state === undefined)
        session.transport.close(
          CloseCode.PolicyViolation,
          "too many failed commands (error budget spent): fix the client before reconnecting",
        );
      else session.errorBudget = state;
    }
  }

  private send(session: Session, init: Parameters<typeof serverFrame>[0], kind: "event" | "reply" = "reply"): void {
    if (session.closed) return;
    if (this.openWindows.size > 0) this.flushOpenFor(session);
    this.observer.messageOut(kind, 1);
    session.transport.send(serverFrame(init, session.encoding), session.encoding === Encoding.Json);
  }
}

/**
 * The frames that carry held (system events of one channel, in its order)
 * to session: one per run of one epoch, bounded by MAX_PRESENCE_FRAME_BYTES,
 * a presence frame, or the event's own frame for a run of one. In the
 * compact form (presence=compact) a run also needs consecutive offsets (or
 * none), and an event that form cannot carry goes as its own frame.
 */
function presenceFrames(held: readonly Publication[], session: Session): Uint8Array[] {
  const { encoding, presenceCompact } = session;
  const json = encoding === Encoding.Json;
  const single = (pub: Publication) => (json ? jsonEventFrame(pub) : binaryEventFrame(pub));
  const frames: Uint8Array[] = [];
  for (let start = 0; start < held.length;) {
    const first = held[start]!;
    let end = start + 1;
    if (presenceCompact) {
      const head = presenceChange(first);
      const changes = head ? [head] : [];
      let bytes = head?.bytes ?? 0;
      while (head && end < held.length) {
        const next = held[end]!;
        const offset = first.offset ? first.offset + BigInt(end - start) : undefined;
        if (next.channel !== first.channel || next.epoch !== first.epoch || (next.offset || undefined) !== offset)
          break;
        const change = presenceChange(next);
        if (!change || (bytes += change.bytes) > MAX_PRESENCE_FRAME_BYTES) break;
        changes.push(change);
        end++;
      }
      frames.push(
        end - start === 1
          ? single(first)
          : compactPresenceFrame(first.channel, first.epoch ?? "", first.offset ?? 0n, changes, encoding),
      );
    } else {
      let bytes = first.event.length;
      while (
        end < held.length &&
        held[end]!.channel === first.channel &&
        held[end]!.epoch === first.epoch &&
        (bytes += held[end]!.event.length) <= MAX_PRESENCE_FRAME_BYTES
      )
        end++;
      frames.push(
        end - start === 1 ? single(first) : (json ? jsonPresenceFrame : binaryPresenceFrame)(held.slice(start, end)),
      );
    }
    start = end;
  }
  return frames;
}

/** Whether two byte arrays hold the same bytes. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
