/**
 * Which channels keep positions and history, and how much: the settings
 * REALTIME_HISTORY_SIZE, REALTIME_HISTORY_TTL_MS (every channel) and
 * REALTIME_HISTORY_RULES (per channel prefix), read the same way by the
 * hub (core/history.ts) and by Redis (redis/history-redis.ts).
 *
 * A channel keeps positions exactly when it keeps history (size > 0): an
 * offset is worth something only where the events after it can be read
 * again. A channel with size 0 costs nothing: its publications take the
 * plain path, with no position. Broadcasts never have one.
 */
import { isControlChannel } from "./control-channels.js";
import { LIFECYCLE_CHANNEL, LIFECYCLE_HISTORY_SIZE, LIFECYCLE_HISTORY_TTL_MS } from "./lifecycle.js";
import { longestPrefix, parsePrefixRules } from "./prefix-rules.js";

/** What the lifecycle sequence keeps, whatever the settings. */
const LIFECYCLE_HISTORY: HistoryLimits = { size: LIFECYCLE_HISTORY_SIZE, ageMs: LIFECYCLE_HISTORY_TTL_MS };

/** How long one channel's history is kept: the most entries, and their age (0: no age limit). */
export interface HistoryLimits {
  readonly size: number;
  readonly ageMs: number;
}

/** Default of REALTIME_HISTORY_SIZE: events kept per channel. */
export const DEFAULT_HISTORY_SIZE = 100;
/** Default of REALTIME_HISTORY_TTL_MS: how long an event is kept (two minutes, as Ably's continuity). */
export const DEFAULT_HISTORY_TTL_MS = 120_000;
/** Most events one channel may keep. */
export const MAX_HISTORY_SIZE = 10_000;
/** Longest a history may keep an event: one day. */
export const MAX_HISTORY_TTL_MS = 24 * 3600_000;
/** Most rules REALTIME_HISTORY_RULES may list. */
export const MAX_HISTORY_RULES = 64;

/** One rule: channels whose name starts with prefix keep this much. */
export interface HistoryRule extends HistoryLimits {
  readonly prefix: string;
}

/**
 * Parses REALTIME_HISTORY_RULES: a comma-separated list of
 * `prefix=size` or `prefix=size/ttl_ms` (the ttl defaults to the global
 * one), e.g. `chat:=1000/600000,tmp:=0`. Throws an Error that says what to
 * fix. The empty string is no rules.
 */
export function parseHistoryRules(raw: string, defaultTtlMs: number): HistoryRule[] {
  const rules = parsePrefixRules(
    raw,
    (value): HistoryLimits => {
      const m = /^(\d+)(?:\/(\d+))?$/.exec(value);
      if (!m) throw new Error("write prefix=size or prefix=size/ttl_ms");
      const size = Number(m[1]);
      const ageMs = m[2] === undefined ? defaultTtlMs : Number(m[2]);
      if (size > MAX_HISTORY_SIZE) throw new Error(`size must be from 0 to ${MAX_HISTORY_SIZE}`);
      if (ageMs > MAX_HISTORY_TTL_MS) throw new Error(`ttl_ms must be from 0 to ${MAX_HISTORY_TTL_MS}`);
      return { size, ageMs };
    },
    MAX_HISTORY_RULES,
    "prefix=size or prefix=size/ttl_ms",
  );
  return rules.map(({ prefix, value }) => ({ prefix, ...value }));
}

/** What a channel keeps; undefined when it keeps no history (nor positions). */
export type HistoryFor = (channel: string) => HistoryLimits | undefined;

/**
 * The lookup of the settings: the rule with the longest prefix of the
 * channel's name, else the global size and ttl. Broadcasts ("") keep none.
 */
export function historyRules(size: number, ageMs: number, rules: readonly HistoryRule[] = []): HistoryFor {
  const kept = (l: HistoryLimits): HistoryLimits | undefined =>
    l.size > 0 ? { size: l.size, ageMs: l.ageMs } : undefined;
  const lookup = longestPrefix(
    rules.map((r) => ({ prefix: r.prefix, value: kept(r) })),
    kept({ size, ageMs }),
  );
  // A broadcast, and the control plane's channels (control-channels.ts),
  // keep nothing; the lifecycle sequence keeps its own (lifecycle.ts).
  return (channel) =>
    channel === LIFECYCLE_CHANNEL
      ? LIFECYCLE_HISTORY
      : channel === "" || isControlChannel(channel)
        ? undefined
        : lookup(channel);
}

/** No channel keeps history. */
export const NO_HISTORY: HistoryFor = () => undefined;
