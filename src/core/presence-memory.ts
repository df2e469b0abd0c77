import {
  NO_TRANSITION,
  nowUnixUs,
  type ChannelCount,
  type Member,
  type MemberPage,
  type PresenceChange,
  type PresenceDirectory,
  type PresenceStats,
  type Transition,
} from "./presence.js";
import { SortedKeys } from "./sorted-keys.js";
import { Code, RealtimeError } from "../protocol/errors.js";

interface Entry {
  member: Member;
  owner: string;
}

/** One channel's members, with what makes its pages and counts cheap. */
interface Channel {
  /** member id -> entry */
  entries: Map<string, Entry>;
  /** The member ids in page order. */
  ids: SortedKeys;
  /** user id -> how many of its connections are members (anonymous ones are not counted). */
  users: Map<string, number>;
  /** owner -> how many members it holds here: which owners' reachability a read depends on. */
  owners: Map<string, number>;
}

interface Owner {
  /** channel -> member ids this owner holds there */
  channels: Map<string, Set<string>>;
  reachable: boolean;
  /** While re-synchronising: the entries not yet re-sent (channel\0id). */
  stale?: Set<string>;
  /**
   * Members this owner removed (depart) whose channel:leave it has not yet
   * said is published (departed), by channel\0id: dropOwner reports their
   * leaves too (Presence.remove says why).
   */
  departing?: Map<string, { channel: string; member: Member }>;
}

/**
 * MemoryPresence is the presence table of the embedded mode's hub. Every
 * member belongs to an owner (the edge that holds its connection), so that
 * an edge's members can be marked unreachable, re-synchronised after its
 * link comes back, or dropped when it is gone. It publishes nothing: what
 * it removes by itself (endSync, dropOwner) it returns, and its caller (the
 * hub's link) reports it to the membership room (core/presence.ts).
 */
export class MemoryPresence {
  private readonly channels = new Map<string, Channel>();
  private readonly owners = new Map<string, Owner>();

  /** The Presence seam as seen by one owner. */
  view(owner: string): PresenceDirectory {
    return {
      channels: async (prefix, after, limit) => this.channelPage(prefix, after, limit),
      add: async (channel, member) => this.add(owner, channel, member),
      remove: async (channel, memberId) => this.depart(owner, channel, memberId),
      departed: (channel, memberId) => this.departed(owner, channel, memberId),
      members: async (channel) => this.members(channel),
      page: async (channel, after, limit) => this.page(channel, after, limit),
      stats: async (channel) => this.stats(channel),
    };
  }

  /** Records the member (Presence.add); returns the channel's Transition (occupied when it had no member). */
  add(owner: string, channel: string, member: Member): Transition {
    let ch = this.channels.get(channel);
    const occupied = !ch;
    if (!ch) {
      ch = { entries: new Map(), ids: new SortedKeys(), users: new Map(), owners: new Map() };
      this.channels.set(channel, ch);
    }
    const previous = ch.entries.get(member.id);
    if (previous) {
      if (previous.owner !== owner) this.forget(previous.owner, channel, member.id);
      unlist(ch, previous);
    }
    const entry = { member, owner };
    this.owners.get(owner)?.departing?.delete(key(channel, member.id));
    ch.entries.set(member.id, entry);
    ch.ids.add(member.id);
    list(ch, entry);
    const o = this.owner(owner);
    let ids = o.channels.get(channel);
    if (!ids) o.channels.set(channel, (ids = new Set()));
    ids.add(member.id);
    o.stale?.delete(key(channel, member.id));
    return occupied ? nowUnixUs() : NO_TRANSITION;
  }

  /**
   * The owner's connection left channel (Presence.remove): the member is
   * removed, and owed its channel:leave until departed(). Returns the
   * channel's Transition (vacated when it was the last member).
   */
  depart(owner: string, channel: string, memberId: string): Transition {
    const member = this.remove(owner, channel, memberId);
    if (!member) return NO_TRANSITION;
    const o = this.owner(owner);
    (o.departing ??= new Map()).set(key(channel, memberId), { channel, member });
    return this.vacated(channel);
  }

  /** After a removal from channel: its Transition (vacated when no member is left). */
  private vacated(channel: string): Transition {
    return this.channels.has(channel) ? NO_TRANSITION : nowUnixUs();
  }

  /** The owner published the channel:leave of a member it removed (depart). */
  departed(owner: string, channel: string, memberId: string): void {
    const o = this.owners.get(owner);
    if (!o?.departing) return;
    o.departing.delete(key(channel, memberId));
    if (o.departing.size === 0) o.departing = undefined;
  }

  /** Removes the owner's member from channel; returns it, or undefined when the owner holds no such member. */
  remove(owner: string, channel: string, memberId: string): Member | undefined {
    const ch = this.channels.get(channel);
    const entry = ch?.entries.get(memberId);
    if (!ch || !entry || entry.owner !== owner) return undefined;
    ch.entries.delete(memberId);
    ch.ids.delete(memberId);
    unlist(ch, entry);
    if (ch.entries.size === 0) this.channels.delete(channel);
    this.forget(owner, channel, memberId);
    return entry.member;
  }

  /**
   * The channel's members. Throws UNAVAILABLE when an owner that holds
   * members of the channel is unreachable: the list could be wrong.
   */
  members(channel: string): Member[] {
    const ch = this.readable(channel);
    return ch ? [...ch.entries.values()].map((e) => e.member) : [];
  }

  /**
   * One page of the channel's members, ascending by id after `after`: at
   * most `limit` (Presence.page). O(limit + log members + owners of the
   * channel). Throws UNAVAILABLE as members() does.
   */
  page(channel: string, after: string, limit: number): MemberPage {
    const ch = this.readable(channel);
    const members: Member[] = [];
    if (!ch) return { members, more: false };
    const size = Math.max(1, limit);
    for (const id of ch.ids.after(after)) {
      if (members.length === size) return { members, more: true };
      members.push(ch.entries.get(id)!.member);
    }
    return { members, more: false };
  }

  /** The channel's counts (PresenceDirectory.stats), O(1). */
  stats(channel: string): PresenceStats {
    const ch = this.channels.get(channel);
    return { connections: ch?.entries.size ?? 0, users: ch?.users.size ?? 0 };
  }

  /** The channel, or undefined when it has no members; throws UNAVAILABLE when an owner of some of them is unreachable. */
  private readable(channel: string): Channel | undefined {
    const ch = this.channels.get(channel);
    if (!ch) return undefined;
    for (const owner of ch.owners.keys()) {
      if (!this.owners.get(owner)?.reachable) {
        throw new RealtimeError(
          Code.Unavailable,
          `an edge holding members of channel ${JSON.stringify(channel)} is unreachable; try again in a few seconds`,
        );
      }
    }
    return ch;
  }

  /** The channels with members, with their member counts. */
  channelCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [channel, ch] of this.channels) out.set(channel, ch.entries.size);
    return out;
  }

  /**
   * The first `limit` channels (by name) after `after` that start with
   * prefix, with their counts: PresenceDirectory.channels. One pass over the
   * channels with a heap of `limit` names, O(n log limit): no sorted index
   * to keep up to date on every join and leave.
   */
  channelPage(prefix: string, after: string, limit: number): ChannelCount[] {
    const heap = new MaxHeap(Math.max(1, limit));
    for (const channel of this.channels.keys()) {
      if (channel > after && channel.startsWith(prefix)) heap.offer(channel);
    }
    return heap.sorted().map((channel) => {
      const ch = this.channels.get(channel)!;
      return { channel, members: ch.entries.size, users: ch.users.size };
    });
  }

  /** Marks an owner's members unreachable (its link dropped) or reachable. */
  setReachable(owner: string, reachable: boolean): void {
    const o = this.owners.get(owner);
    if (o) o.reachable = reachable;
  }

  /**
   * Starts a re-synchronisation: the owner is about to re-send everything it
   * holds. What it does not re-send before endSync is removed then.
   */
  beginSync(owner: string): void {
    const o = this.owner(owner);
    o.reachable = true;
    o.stale = new Set();
    for (const [channel, ids] of o.channels) for (const id of ids) o.stale.add(key(channel, id));
  }

  /** Ends a re-synchronisation; returns the members that were not re-sent, removed (leaves). */
  endSync(owner: string): PresenceChange[] {
    const o = this.owners.get(owner);
    const stale = o?.stale;
    if (!o || !stale) return [];
    o.stale = undefined;
    const gone: PresenceChange[] = [];
    for (const k of stale) {
      const [channel, id] = k.split("\0") as [string, string];
      const member = this.remove(owner, channel, id);
      if (member) gone.push({ kind: "leave", channel, member, transition: this.vacated(channel) });
    }
    return gone;
  }

  /**
   * Removes every member the owner holds; returns them as leaves, with the
   * leaves of those it removed itself and did not say were announced
   * (departing: it may have died before it announced them), and last the
   * owner itself (kind "edge": it is given up on).
   */
  dropOwner(owner: string): PresenceChange[] {
    const o = this.owners.get(owner);
    if (!o) return [];
    const gone: PresenceChange[] = [];
    for (const [channel, ids] of [...o.channels]) {
      for (const id of [...ids]) {
        const member = this.remove(owner, channel, id);
        if (member) gone.push({ kind: "leave", channel, member, transition: this.vacated(channel), lost: true });
      }
    }
    // Removed by the owner, whose leave it may not have published before it died.
    for (const { channel, member } of o.departing?.values() ?? [])
      gone.push({ kind: "leave", channel, member, lost: true });
    this.owners.delete(owner);
    gone.push({ kind: "edge", edgeId: owner });
    return gone;
  }

  private owner(name: string): Owner {
    let o = this.owners.get(name);
    if (!o) this.owners.set(name, (o = { channels: new Map(), reachable: true }));
    return o;
  }

  private forget(owner: string, channel: string, memberId: string): void {
    const ids = this.owners.get(owner)?.channels.get(channel);
    if (!ids) return;
    ids.delete(memberId);
    if (ids.size === 0) this.owners.get(owner)!.channels.delete(channel);
  }
}

/** Counts entry's owner and user in the channel. */
function list(ch: Channel, entry: Entry): void {
  ch.owners.set(entry.owner, (ch.owners.get(entry.owner) ?? 0) + 1);
  const user = entry.member.userId;
  if (user !== "") ch.users.set(user, (ch.users.get(user) ?? 0) + 1);
}

/** Undoes list(ch, entry). */
function unlist(ch: Channel, entry: Entry): void {
  release(ch.owners, entry.owner);
  if (entry.member.userId !== "") release(ch.users, entry.member.userId);
}

/** Decrements a refcount, deleting it at zero. */
function release(counts: Map<string, number>, name: string): void {
  const n = (counts.get(name) ?? 0) - 1;
  if (n > 0) counts.set(name, n);
  else counts.delete(name);
}

function key(channel: string, id: string): string {
  return `${channel}\0${id}`;
}

/** Keeps the `capacity` smallest strings offered; a binary max-heap. */
class MaxHeap {
  private readonly items: string[] = [];
  constructor(private readonly capacity: number) {}

  offer(value: string): void {
    const a = this.items;
    if (a.length < this.capacity) {
      a.push(value);
      let i = a.length - 1;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (a[parent]! >= a[i]!) break;
        [a[parent], a[i]] = [a[i]!, a[parent]!];
        i = parent;
      }
      return;
    }
    if (value >= a[0]!) return;
    a[0] = value;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < a.length && a[l]! > a[top]!) top = l;
      if (r < a.length && a[r]! > a[top]!) top = r;
      if (top === i) break;
      [a[top], a[i]] = [a[i]!, a[top]!];
      i = top;
    }
  }

  /** The kept strings, ascending. */
  sorted(): string[] {
    return [...this.items].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  }
}
