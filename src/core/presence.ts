/**
 * The Presence seam: who is in a channel, across every edge.
 *
 * Implementations: presence-memory.ts (the hub of the embedded mode),
 * src/link/broker-link.ts (an edge's view of it over TCP), and a Redis
 * implementation beside them.
 *
 * Who announces: Presence implementations never publish. A change a
 * connection makes is announced by its edge's membership room
 * (core/membership.ts), after the write that made it here. A change presence
 * makes by itself (PresenceChange: the members of an edge that is gone,
 * entries a re-sync removed or restored) is reported, by the one node that
 * made it, to that node's membership room, which announces it: the hub's
 * link reports what MemoryPresence returns (dropOwner, endSync), Redis
 * presence reports through its ReportChanges option.
 */
import type { Member } from "../../gen/realtime/client/v1/client_pb.js";

export type { Member };

/**
 * A change of a channel's members that presence made by itself, not at a
 * connection's request: the members of an edge that is gone were removed
 * (leave), a re-sync removed entries their edge no longer holds (leave) or
 * restored those of an edge that had been swept (join). Made, and so
 * reported, by one node only: the hub, or the Redis node whose atomic
 * script made it (the sweep lock's holder, the re-syncing edge).
 */
export type PresenceChange =
  | {
      readonly kind: "join" | "leave";
      readonly channel: string;
      readonly member: Member;
      /** The join filled an empty channel, or the leave emptied it (see Transition). */
      readonly transition?: Transition;
      /** A leave of a member whose edge was given up on (the hub's grace period ended, the Redis sweep). */
      readonly lost?: boolean;
    }
  | {
      /** An edge was given up on: every member it held was removed (each reported as a leave too). */
      readonly kind: "edge";
      readonly edgeId: string;
    };

/** A PresenceChange about a member (not an edge). */
export type MemberChange = Extract<PresenceChange, { kind: "join" | "leave" }>;

/** The member changes among changes (the edges given up on left out). */
export function memberChanges(changes: readonly PresenceChange[]): MemberChange[] {
  return changes.filter((c): c is MemberChange => c.kind !== "edge");
}

/**
 * What a presence write did to its channel's occupancy: an add into a
 * channel that had no member (occupied now), or a remove that took its last
 * member (vacated), as presence's clock saw it at that write, in
 * microseconds since the Unix epoch (the hub's clock, or the Redis
 * shard's); NO_TRANSITION (0n) when neither. One channel's transitions are
 * made in one place, in one order, and their times follow that order: the
 * lifecycle stream (core/lifecycle.ts) carries them so that a backend can
 * order two that reached it crosswise.
 */
export type Transition = bigint;
export const NO_TRANSITION: Transition = 0n;

/** This process's wall clock in microseconds since the Unix epoch (a Transition's clock, in process). */
export function nowUnixUs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
}

/**
 * Where an implementation reports the changes it made by itself: the
 * membership room's announce (core/membership.ts), which publishes their
 * events once. Resolves once each is published, owed for a retry, or
 * dropped; never rejects.
 */
export type ReportChanges = (changes: readonly PresenceChange[]) => Promise<void>;

export interface Presence {
  /**
   * Records member in channel, or replaces its profile if it is there.
   * Resolves once GetMembers (from any node) sees it, with the channel's
   * Transition (occupied, when it had no member before).
   */
  add(channel: string, member: Member): Promise<Transition>;

  /**
   * Removes the member from channel; removing an absent member is a no-op.
   * The removal stays owed its channel:leave until departed() says that
   * leave is published: if this edge is gone for good before then (it died
   * between the two), the node that drops the edge's members (the hub after
   * its grace period, the Redis sweep) reports a leave for the removed
   * member too. So a leave is announced at least once, never zero times:
   * twice when the edge published it and died before departed() arrived.
   * Resolves with the channel's Transition (vacated, when the member was
   * its last).
   */
  remove(channel: string, memberId: string): Promise<Transition>;

  /**
   * The channel:leave of a removal (remove()) is published: the removal is
   * no longer owed. Best effort and never throws: sent without waiting
   * (batched where that is cheaper), and one that is lost costs only the
   * second leave described at remove().
   */
  departed(channel: string, memberId: string): void;

  /**
   * Lists the channel's members. Never a silently partial list: rejects with
   * RealtimeError(Unavailable) when some members cannot be known right now
   * (an edge that holds members of the channel is unreachable).
   */
  members(channel: string): Promise<Member[]>;

  /**
   * One page of the channel's members: those whose id sorts strictly after
   * `after` ("" for the first page), ascending by id (UTF-16 code units,
   * JavaScript's `<`), at most `limit` (>= 1). A page holds fewer than
   * `limit` only at the end (more is false) or when the implementation
   * bounds a page's size (the link: MAX_MEMBERS_PAGE_BYTES) or its work
   * (Redis: REDIS_MEMBERS_SCAN_MAX ids read, when members of dead edges
   * are skipped), then with more true and at least one member. An
   * implementation keeps an index by id: a page costs O(limit + log
   * members), not a read of the channel. Keyset, not offset: a member that
   * stays in the channel while the pages are read is on exactly one page.
   * Like members(), never a silently partial page: rejects with
   * RealtimeError(Unavailable) when some members cannot be known now.
   */
  page(channel: string, after: string, limit: number): Promise<MemberPage>;
}

/** One page of a channel's members (Presence.page). */
export interface MemberPage {
  /** Ascending by id. */
  members: Member[];
  /** Whether members sort after the last one here: ask again with after = its id. */
  more: boolean;
}

/**
 * How many are in a channel (PresenceDirectory.stats): its connections
 * (members) and the distinct users among them. A user with several
 * connections in the channel counts once; an anonymous connection (no
 * user id) counts as a connection and as no user.
 */
export interface PresenceStats {
  connections: number;
  users: number;
}

/** A channel that has members, how many, and how many distinct users they are (PresenceStats' counts). */
export interface ChannelCount {
  channel: string;
  members: number;
  users: number;
}

/**
 * Presence as the API reads it: the seam plus a directory of channels, for
 * ListChannels. Edges need only Presence; an implementation the API uses
 * (presence-memory.ts's view, a Redis one) implements this.
 */
export interface PresenceDirectory extends Presence {
  /**
   * Lists the channels that have at least one member, whose name starts
   * with prefix ("" for all) and sorts strictly after `after` ("" for the
   * first page), in ascending order, at most `limit` (>= 1) of them.
   * Order is by UTF-16 code unit (JavaScript's `<`), which for the ASCII
   * channel alphabet is byte order (Redis ZRANGEBYLEX's order too).
   *
   * Keyset, not offset, so a caller pages with after = the last name it got:
   * a channel that keeps members throughout appears exactly once. Counts may
   * include members of an edge that is unreachable right now (stale by up to
   * the edge grace period); unlike members(), it never rejects for that.
   */
  channels(prefix: string, after: string, limit: number): Promise<ChannelCount[]>;

  /**
   * The channel's counts, read in O(1) (kept up to date on every join and
   * leave, never counted by listing). Like channels(), the counts may
   * include the members of an edge that is unreachable or dead right now
   * (until its grace period ends or its sweep), and never reject for that:
   * counts are an estimate for dashboards and limits, members() the truth.
   */
  stats(channel: string): Promise<PresenceStats>;
}
