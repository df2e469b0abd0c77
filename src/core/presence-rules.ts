/**
 * Which channels' members receive the system events channel:join,
 * channel:leave and channel:update, and how soon: the settings
 * REALTIME_PRESENCE_EVENTS (every channel), REALTIME_PRESENCE_RULES (per
 * channel prefix, core/prefix-rules.ts: the longest prefix wins) and
 * REALTIME_PRESENCE_WINDOW_MS, read by each edge (core/edge.ts).
 *
 * Only the fan-out to members changes: the events are still published,
 * kept in history (so they still take offsets: a member of a channel
 * without presence events sees offsets skip) and streamed by WatchChannel,
 * and presence (GetMembers) is written as before. A channel with events off
 * costs a member O(1) per change, not a frame per change.
 */
import { longestPrefix, parsePrefixRules, type PrefixRule } from "./prefix-rules.js";

/** Default of REALTIME_PRESENCE_EVENTS: members get system events (what clients of today expect). */
export const DEFAULT_PRESENCE_EVENTS = true;
/**
 * Default of REALTIME_PRESENCE_WINDOW_MS: how long an edge gathers a
 * channel's system events before it sends them, as one Presence frame, to
 * each member that asked for them (presence=batch or compact). A member list a fifth
 * of a second late is not one a person notices, and the window sets the
 * cost of a busy channel: each member gets at most one frame per window
 * (measured, docs/scaling.md: filling one channel of 10,000 took 64 s at
 * 50 ms and 36 s at 250 ms, where each frame costs an edge ~12 µs and a
 * client ~6 µs). 0: only what reaches the edge in the same turn of its
 * event loop is gathered (no delay added).
 */
export const DEFAULT_PRESENCE_WINDOW_MS = 200;
/** Longest REALTIME_PRESENCE_WINDOW_MS: a member list later than a second is a stale one. */
export const MAX_PRESENCE_WINDOW_MS = 1_000;
/** Most rules REALTIME_PRESENCE_RULES may list. */
export const MAX_PRESENCE_RULES = 64;

/**
 * Parses REALTIME_PRESENCE_RULES: a comma-separated list of `prefix=on` or
 * `prefix=off`, e.g. `lobby:=off,lobby:vip:=on`. Throws an Error that says
 * what to fix. The empty string is no rules.
 */
export function parsePresenceRules(raw: string): PrefixRule<boolean>[] {
  return parsePrefixRules(
    raw,
    (value) => {
      if (value === "on") return true;
      if (value === "off") return false;
      throw new Error("write prefix=on or prefix=off");
    },
    MAX_PRESENCE_RULES,
    "prefix=on or prefix=off",
  );
}

/** Whether the members of a channel receive its system events. */
export type PresenceEventsFor = (channel: string) => boolean;

/** The lookup of the settings: the rule with the longest prefix of the channel's name, else events. */
export function presenceRules(events: boolean, rules: readonly PrefixRule<boolean>[] = []): PresenceEventsFor {
  return longestPrefix(rules, events);
}

/** Every channel's members receive system events (the default). */
export const ALL_PRESENCE_EVENTS: PresenceEventsFor = () => true;
