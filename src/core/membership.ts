/**
 * The membership room: the one place that decides and publishes the system
 * events channel:join, channel:leave and channel:update
 * (protocol/system-events.ts), for every node of the service.
 *
 * Who announces what:
 * - A change a connection makes (join, leave, updateProfile, and its leaving
 *   when it closes or loses a grant) is announced by the room of the
 *   connection's edge: join(), leave(), depart(), update(). The room writes
 *   presence first, then publishes the event.
 * - A change presence makes by itself (the members of an edge that is gone,
 *   entries a re-sync removed or restored) is announced by the room of the
 *   node that made it, which alone learns of it (core/presence.ts): the hub
 *   (its link's grace period and resync), the Redis node that swept (under
 *   the sweep lock), the edge whose Redis sync changed its entries. They
 *   report the changes to announce(); presence itself publishes nothing.
 * So each change is announced by one node, the one that made it.
 *
 * Every event names the member (its id is its connection's id) and is
 * published with origin = that id and skipOrigin: the broker never brings an
 * event back to the connection it is about. That connection gets its own
 * copy (echo) from its edge, with the position the broker gave the event:
 * the edge is told the event before it is published (the `stands` handler
 * of the change) and once it is (`published`, with the broker's Delivery),
 * so that it can hand the copy over in the channel's order and before the
 * reply (core/edge.ts says how).
 *
 * Order and failures. A change by a connection is its presence writes, then
 * their events, in order: join (add, channel:join), leave (remove,
 * channel:leave), update (add, channel:update, for each of the connection's
 * channels in turn), depart (remove, channel:leave; owed at once). When the
 * first presence write fails, nothing changed: the call rejects, nothing is
 * announced. Once it succeeded, the change stands and the steps left are
 * owed by the connection: run in order now, and a step that fails with
 * UNAVAILABLE (the link or Redis is away) stays owed with the steps after
 * it, retried every SETTLE_RETRY_MS and whenever the connection's next
 * command settles first, until done; a step that fails for any other reason
 * is reported (onError) and dropped. A write whose outcome is unknown (a
 * timeout) counts as failed and is retried; the Presence implementation
 * re-asserts what the edge holds when it is back (the link's resync,
 * Redis's sync), and an event may then reach an edge twice, never zero
 * times while this node lives. The changes presence reported are published
 * in the order reported, up to ANNOUNCE_WINDOW at once, in a queue of their
 * own (a connection's owed steps never hold them up, nor they a
 * connection's); one that fails with UNAVAILABLE is owed and retried as
 * above, with every one after it, in order, unless retryAnnouncements is
 * false (the hub: see MembershipOptions). Those after it in its window
 * that went out already go out again then, so the last copies of the
 * events always come in the order reported (a member's later change lands
 * last).
 */
import type { Member } from "../../gen/realtime/client/v1/client_pb.js";
import type { Broker, Delivery, Publication } from "./broker.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { SystemEvent, type SystemEventName } from "../protocol/system-events.js";
import { LeaveReason } from "../../gen/realtime/v1/realtime_pb.js";
import { lifecyclePublication, type LifecycleKind } from "./lifecycle.js";
import { NO_TRANSITION, type Presence, type PresenceChange, type Transition } from "./presence.js";
import { createPublication, type IdGenerator, systemEvent } from "./publication.js";

export { LeaveReason };

/**
 * How often the room retries the steps still owed: presence writes and
 * events of changes that took effect but failed to reach all of the service.
 */
export const SETTLE_RETRY_MS = 1_000;

/**
 * Most events of the changes presence reported (a dead edge's leaves, a
 * resync's) in flight at once: issued together, in order, on the broker
 * (one Redis connection runs them in the order sent; the hub's is in
 * process), so that a sweep's thousands of leaves cost their publishes,
 * not a round trip each (bench/edge-death-cost.ts).
 */
export const ANNOUNCE_WINDOW = 256;

/**
 * Told each event of a change once the change stands (its first presence
 * write succeeded), in order, before any of them is published: the edge
 * updates its own table and hands the connection its own copy (echo) here.
 */
export type StandsHandler = (event: Publication) => void;

/**
 * Told each event of a connection's change once it is published, with the
 * Delivery the broker answered (its position): the edge finishes handing
 * the connection its own copy here. Awaited before the next step.
 */
export type PublishedHandler = (event: Publication, delivery: Delivery) => void | Promise<void>;

export interface MembershipOptions {
  /** Where the events are published. */
  broker: Broker;
  /**
   * Where a connection's changes are recorded: an edge's presence. Needed
   * by join, leave, depart and update only; a node that holds no
   * connections (the API, the hub) announces what presence reports.
   */
  presence?: Presence;
  /** Creates the events' ids. */
  eventIds: IdGenerator;
  /**
   * Whether a reported change whose event fails with UNAVAILABLE is owed
   * and retried (true, the default: this node lost its way to the edges,
   * which are still there: a dropped link, Redis away) or dropped (false:
   * the hub, whose broker is in this process and fails only when no edge is
   * attached at all, so that no one is there to tell; an edge that attaches
   * later re-syncs, and docs/protocol.md says an event published while a
   * member's edge is reconnecting is missed). A connection's changes are
   * always owed.
   */
  retryAnnouncements?: boolean;
  /**
   * Whether this node publishes the lifecycle sequence (core/lifecycle.ts,
   * REALTIME_LIFECYCLE; default true): for each join and leave it makes or
   * announces, the member's event and the channel's occupied or vacated;
   * for each connection it opens and closes, and each edge it gives up on,
   * theirs. They go out in order, in a queue of their own, windowed as the
   * reported changes are, so that they add no wait to a connection's
   * commands.
   */
  lifecycle?: boolean;
  /** A step dropped because it failed for a reason that will not pass. */
  onError?: (err: unknown, context: string) => void;
}

/** Why a connection's membership ends (depart): the lifecycle's MemberLeft reason. */
export type DepartReason = LeaveReason.LEFT | LeaveReason.DISCONNECTED;

/** One step of a change on its way to the rest of the service. */
type Step =
  | { readonly kind: "add"; readonly channel: string; readonly member: Member }
  | {
      readonly kind: "remove";
      readonly channel: string;
      readonly member: Member;
      /** Why: its lifecycle events follow once it is done (they need its Transition). */
      readonly reason: DepartReason;
    }
  | {
      readonly kind: "publish";
      readonly name: SystemEventName;
      readonly pub: Publication;
      published?: PublishedHandler;
      /** The leave of a removal this node made: presence is told once it is published (Presence.departed). */
      departs?: { readonly channel: string; readonly memberId: string };
    }
  /** A lifecycle event, published from the LIFECYCLE queue. */
  | { readonly kind: "lifecycle"; readonly pub: Publication }
  /** A connection's closing, in its own queue behind its leaves: queued as a lifecycle event when reached. */
  | { readonly kind: "closed"; readonly event: LifecycleKind };

/** The queue of the changes presence reported: a symbol, so that no connection's member id names it. */
const REPORTED = Symbol("reported changes");
/** The queue of the lifecycle events (MembershipOptions.lifecycle): publishes only, windowed as REPORTED's. */
const LIFECYCLE = Symbol("lifecycle events");
type Debtor = string | typeof REPORTED | typeof LIFECYCLE;

/**
 * Membership decides and publishes the system events of one node (see the
 * contract above). One per process: the roles create it with the node's
 * seams (roles/seams.ts) and hand it to the Edge and to whatever reports
 * presence's own changes.
 */
export class Membership {
  /** The steps each debtor (a connection's member id, or REPORTED) still owes, oldest first; never empty. */
  private readonly owed = new Map<Debtor, Step[]>();
  /** The run of each debtor's owed steps in progress: one at a time, so that no step is applied twice. */
  private readonly settling = new Map<Debtor, Promise<void>>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Debtors whose owed events wait until then (performance.now()): see hold(). */
  private readonly held = new Map<Debtor, number>();

  constructor(private readonly options: MembershipOptions) {}

  /**
   * A connection joins channel: member is recorded in presence, then
   * channel:join is published. Rejects, with nothing changed, when the
   * presence write fails; resolves once the event is published or owed.
   */
  async join(channel: string, member: Member, stands?: StandsHandler, published?: PublishedHandler): Promise<void> {
    const transition = await this.presence().add(channel, member);
    this.stand(member.id, [this.publishStep(SystemEvent.Join, channel, member)], stands, published);
    this.joined(channel, member, transition, false);
    await this.settle(member.id).catch(() => {});
  }

  /**
   * A connection leaves channel: member is removed from presence, then
   * channel:leave is published. Rejects, with nothing changed, when the
   * presence write fails; resolves once the event is published or owed.
   */
  async leave(channel: string, member: Member, stands?: StandsHandler, published?: PublishedHandler): Promise<void> {
    const transition = await this.presence().remove(channel, member.id);
    this.stand(member.id, [this.publishStep(SystemEvent.Leave, channel, member, true)], stands, published);
    this.left(channel, member, transition, LeaveReason.LEFT);
    await this.settle(member.id).catch(() => {});
  }

  /**
   * A connection's membership of channel ends now, whatever the state of
   * the rest of the service (it closed, or lost its grant): the change
   * stands at once, and the presence removal and channel:leave are owed
   * until done. The caller settles (settle()) when it may wait. reason:
   * DISCONNECTED (it closed) or LEFT (a grant lost), for the lifecycle.
   */
  depart(
    channel: string,
    member: Member,
    stands?: StandsHandler,
    published?: PublishedHandler,
    reason: DepartReason = LeaveReason.DISCONNECTED,
  ): void {
    this.stand(
      member.id,
      [{ kind: "remove", channel, member, reason }, this.publishStep(SystemEvent.Leave, channel, member, true)],
      stands,
      published,
    );
  }

  /**
   * A connection's profile changed: member (with its new profile) is
   * rewritten in presence and channel:update is published, channel by
   * channel. Rejects, with nothing changed, when the first presence write
   * fails; resolves once the rest is done or owed. No channels: nothing to do.
   */
  async update(
    channels: Iterable<string>,
    member: Member,
    stands?: StandsHandler,
    published?: PublishedHandler,
  ): Promise<void> {
    const steps: Step[] = [];
    for (const channel of channels)
      steps.push({ kind: "add", channel, member }, this.publishStep(SystemEvent.Update, channel, member));
    const first = steps.shift();
    if (!first) return;
    await this.apply(first);
    this.stand(member.id, steps, stands, published);
    await this.settle(member.id).catch(() => {});
  }

  /** Whether the connection whose member id this is owes steps (its next command settles first). */
  owes(memberId: string): boolean {
    return this.owed.has(memberId);
  }

  /**
   * Runs the connection's owed steps in order. Rejects with the first
   * failure that may pass (UNAVAILABLE), leaving it and the steps after it
   * owed and a retry armed; resolves once nothing is owed.
   */
  settle(memberId: string): Promise<void> {
    return this.run(memberId);
  }

  /**
   * The members whose presence removal is still owed (a connection that
   * closed while presence was away): presence must hold them until then,
   * so a resync re-sends them (Edge.snapshot), and their channel:leave
   * follows the removal.
   */
  owedRemovals(): { channel: string; member: Member }[] {
    const out: { channel: string; member: Member }[] = [];
    for (const [debtor, steps] of this.owed) {
      if (typeof debtor !== "string") continue;
      for (const step of steps) if (step.kind === "remove") out.push({ channel: step.channel, member: step.member });
    }
    return out;
  }

  /**
   * Announces changes that presence made by itself (core/presence.ts,
   * ReportChanges): their presence writes are done; their events are
   * published in order, after those reported before. Resolves once each is
   * published, owed or dropped; never rejects.
   */
  async announce(changes: readonly PresenceChange[]): Promise<void> {
    if (changes.length === 0) return;
    const steps: Step[] = [];
    for (const change of changes) {
      if (change.kind === "edge") {
        this.lifecycleEvent({ case: "edgeLost", value: { edgeId: change.edgeId } });
        continue;
      }
      const { kind, channel, member, transition = NO_TRANSITION } = change;
      steps.push(this.publishStep(kind === "join" ? SystemEvent.Join : SystemEvent.Leave, channel, member));
      // A join presence made is a swept edge's member restored; a leave, one
      // of an edge given up on (lost) or one a re-sync found its edge no
      // longer holds (its connection closed while presence was away).
      if (kind === "join") this.joined(channel, member, transition, true);
      else this.left(channel, member, transition, change.lost ? LeaveReason.EDGE_LOST : LeaveReason.DISCONNECTED);
    }
    this.owe(REPORTED, steps);
    await this.run(REPORTED).catch(() => {});
  }

  /**
   * A connection opened (Edge.connect): its lifecycle event, first in the
   * lifecycle queue before its joins.
   */
  connectionOpened(connectionId: string, userId: string, edgeId: string): void {
    this.lifecycleEvent({ case: "connectionOpened", value: { connectionId, userId, edgeId } });
  }

  /**
   * A connection closed (Edge.disconnect), after its departs: its lifecycle
   * event follows its members' leaves, which need their presence removals
   * first; so it waits in the connection's own queue behind them.
   */
  connectionClosed(connectionId: string, userId: string, reason: string): void {
    if (!this.options.lifecycle) return;
    this.owe(connectionId, [
      { kind: "closed", event: { case: "connectionClosed", value: { connectionId, userId, reason } } },
    ]);
  }

  /**
   * The events owed now (not the presence writes) wait `ms` before they are
   * published, and fail with UNAVAILABLE (owed, retried) meanwhile. For an
   * edge whose link came back: the hub may have restarted, and the other
   * edges re-attach within their reconnect backoff; an event published
   * before they did would miss their connections. Changes made from now on
   * are not held, unless queued behind a held one of the same debtor.
   */
  hold(ms: number): void {
    const until = performance.now() + ms;
    for (const debtor of this.owed.keys()) this.held.set(debtor, until);
  }

  /** Stops retrying (the node stops): what is still owed is not published. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** A member joined: its lifecycle events (occupied first, when the join filled the channel). */
  private joined(channel: string, member: Member, transition: Transition, restored: boolean): void {
    const at = transition !== NO_TRANSITION ? transition : undefined;
    if (at !== undefined) this.lifecycleEvent({ case: "channelOccupied", value: { channel } }, at);
    this.lifecycleEvent(
      { case: "memberJoined", value: { channel, connectionId: member.id, userId: member.userId, restored } },
      at,
    );
  }

  /** A member left: its lifecycle events (vacated last, when the leave emptied the channel). */
  private left(channel: string, member: Member, transition: Transition, reason: LeaveReason): void {
    const at = transition !== NO_TRANSITION ? transition : undefined;
    this.lifecycleEvent(
      { case: "memberLeft", value: { channel, connectionId: member.id, userId: member.userId, reason } },
      at,
    );
    if (at !== undefined) this.lifecycleEvent({ case: "channelVacated", value: { channel } }, at);
  }

  /** Queues one lifecycle event (when this node publishes them) and starts its queue. */
  private lifecycleEvent(kind: LifecycleKind, at?: bigint): void {
    if (!this.options.lifecycle) return;
    this.owe(LIFECYCLE, [{ kind: "lifecycle", pub: lifecyclePublication(this.options.eventIds, kind, at) }]);
    this.run(LIFECYCLE).catch(() => {});
  }

  private presence(): Presence {
    const { presence } = this.options;
    if (!presence) throw new Error("this Membership has no presence: only an edge's records a connection's changes");
    return presence;
  }

  /**
   * The event about member, which the broker does not bring back to
   * member's own connection. departs: the channel:leave of a removal this
   * node made, which presence is told of once it is published.
   */
  private publishStep(name: SystemEventName, channel: string, member: Member, departs = false): Step {
    const event = systemEvent(this.options.eventIds.next(), channel, name, member);
    const pub = createPublication(event, Infinity, member.id, true);
    return departs
      ? { kind: "publish", name, pub, departs: { channel, memberId: member.id } }
      : { kind: "publish", name, pub };
  }

  /** The change stands: its events go to `stands`, then its steps are owed (each event then to `published`). */
  private stand(
    memberId: string,
    steps: Step[],
    stands: StandsHandler | undefined,
    published: PublishedHandler | undefined,
  ): void {
    if (published) for (const step of steps) if (step.kind === "publish") step.published = published;
    if (stands) {
      for (const step of steps) {
        if (step.kind !== "publish") continue;
        try {
          stands(step.pub);
        } catch (err) {
          // The change stands whatever the caller's handler did.
          this.options.onError?.(err, "handing a connection its own event");
        }
      }
    }
    this.owe(memberId, steps);
  }

  private owe(debtor: Debtor, steps: Step[]): void {
    if (steps.length === 0) return;
    const owed = this.owed.get(debtor);
    if (owed) owed.push(...steps);
    else this.owed.set(debtor, steps);
  }

  /** The debtor's run in progress, or a new one; resolved at once when nothing is owed. */
  private run(debtor: Debtor): Promise<void> {
    const running = this.settling.get(debtor);
    if (running) return running;
    if (!this.owed.has(debtor)) return Promise.resolve();
    // drain() awaits before it ends (it has a step to apply), so the entry
    // is set before drain() deletes it.
    const run = this.drain(debtor);
    this.settling.set(debtor, run);
    return run;
  }

  private async drain(debtor: Debtor): Promise<void> {
    const owed = this.owed.get(debtor)!;
    try {
      while (typeof debtor !== "string" && owed.length > 0) await this.drainWindow(owed, debtor);
      while (owed.length > 0) {
        const step = owed[0]!;
        try {
          await this.apply(step, debtor);
        } catch (err) {
          if (asRealtimeError(err).code !== Code.Unavailable) this.options.onError?.(err, describe(step));
          else if (typeof debtor === "string" || this.options.retryAnnouncements !== false) {
            this.armRetry();
            throw err;
          }
        }
        owed.shift();
      }
      this.owed.delete(debtor);
      this.held.delete(debtor);
    } finally {
      this.settling.delete(debtor);
    }
  }

  /**
   * Publishes the first ANNOUNCE_WINDOW events of REPORTED or LIFECYCLE at
   * once (all their steps are publishes) and drops from owed those done or
   * dropped, up to the first that failed with UNAVAILABLE and is to be
   * retried: that one throws, and it stays owed with all after it.
   */
  private async drainWindow(owed: Step[], debtor: Debtor): Promise<void> {
    const results = await Promise.allSettled(owed.slice(0, ANNOUNCE_WINDOW).map((s) => this.apply(s, debtor)));
    for (const r of results) {
      if (r.status === "rejected") {
        const err: unknown = r.reason;
        if (asRealtimeError(err).code !== Code.Unavailable) this.options.onError?.(err, describe(owed[0]!));
        else if (this.options.retryAnnouncements !== false) {
          this.armRetry();
          throw err;
        }
      }
      owed.shift();
    }
  }

  private async apply(step: Step, debtor?: Debtor): Promise<void> {
    const held = debtor === undefined ? undefined : this.held.get(debtor);
    if (held !== undefined && step.kind === "publish") {
      if (performance.now() < held)
        throw new RealtimeError(Code.Unavailable, "waiting for the other edges to re-attach to the API");
      this.held.delete(debtor!);
    }
    if (step.kind === "publish") {
      const delivery = await this.options.broker.publish(step.pub);
      if (step.departs) this.presence().departed(step.departs.channel, step.departs.memberId);
      if (step.published) {
        try {
          await step.published(step.pub, delivery);
        } catch (err) {
          // Published it is, whatever the caller's handler did.
          this.options.onError?.(err, "handing a connection its own event");
        }
      }
    } else if (step.kind === "lifecycle") await this.options.broker.publish(step.pub);
    // Reached once the connection's leaves are queued: it follows their events.
    else if (step.kind === "closed") this.lifecycleEvent(step.event);
    else if (step.kind === "add") await this.presence().add(step.channel, step.member);
    else {
      const transition = await this.presence().remove(step.channel, step.member.id);
      this.left(step.channel, step.member, transition, step.reason);
    }
  }

  /** Arms the one timer that retries every debtor's owed steps. */
  private armRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const debtor of [...this.owed.keys()]) this.run(debtor).catch(() => {});
    }, SETTLE_RETRY_MS);
    this.retryTimer.unref?.();
  }
}

/** What a step does, for a report of its failure. */
function describe(step: Step): string {
  if (step.kind === "add") return "recording a member in presence";
  if (step.kind === "remove") return "removing a member from presence";
  if (step.kind === "lifecycle" || step.kind === "closed") return "publishing a lifecycle event";
  return `publishing ${step.name}`;
}
