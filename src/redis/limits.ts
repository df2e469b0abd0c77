/**
 * The limits and timings of the Redis mode, each a named constant with its
 * default. Apart from the rest of src/redis/ so that src/config.ts can read
 * them without loading a Redis client.
 */

/** Prefix of every Redis key and channel name, so deployments can share a Redis. */
export const DEFAULT_REDIS_PREFIX = "realtime:";

/**
 * How long an edge counts as alive after its last heartbeat. An edge
 * heartbeats every third of it, and any node sweeps every third of it, so
 * the members of an edge that died without cleanup leave GetMembers within
 * the TTL and their channel:leave is published within about 4/3 of it (plus
 * a sweep's own duration). Default 15 s: leaves within about 20 s.
 */
export const DEFAULT_REDIS_EDGE_TTL_MS = 15_000;
export const MIN_REDIS_EDGE_TTL_MS = 300;
export const MAX_REDIS_EDGE_TTL_MS = 10 * 60_000;

/**
 * How long Redis remembers that an edge was swept. An edge that was only
 * cut off (its members were swept and channel:leave sent) and comes back
 * within this time re-registers its members and channel:join is sent for
 * each; after it, they are re-registered without channel:join.
 */
export const REDIS_SWEPT_MEMORY_MS = 60 * 60_000;

/** How long a node waits for Redis at start before it starts anyway (and keeps trying). */
export const REDIS_START_WAIT_MS = 5_000;

/**
 * Most entries of a channel's id index one GetMembers page script reads.
 * A page reads its ids from the index in order and skips the members of
 * dead edges (not yet swept); where that many are skipped before the page
 * has one live member, the script stops and the page is read on from where
 * it stopped by another call, so that no call blocks Redis for long (about
 * 1 µs per entry: a few ms). At least MAX_PAGE_SIZE + 1, so that a page of
 * live members is read in one call.
 */
export const REDIS_MEMBERS_SCAN_MAX = 5_000;

/**
 * Most memberships of dead edges one sweep step removes (one Lua script).
 * A dead edge's memberships are indexed under it (edge:<id>:members), so a
 * step costs about this many member removals (a few µs each), whatever the
 * size of the channels they are in: bounded well under
 * REDIS_SCRIPT_BUDGET_MS. The sweeping node runs steps back to back, and
 * announces each step's leaves before the next, until the edge is gone.
 */
export const REDIS_SWEEP_STEP_MEMBERS = 500;

/** What no presence script of ours may block Redis for (measured in bench/edge-death-cost.ts). */
export const REDIS_SCRIPT_BUDGET_MS = 50;

/**
 * Most members one step of an edge's re-registration (its sync, after
 * Redis came back or its liveness lapsed) writes, or compares against what
 * Redis held before: one Lua script each, like REDIS_SWEEP_STEP_MEMBERS.
 */
export const REDIS_SYNC_STEP_MEMBERS = 500;

/**
 * The prefix of the presence and registration keys on Redis Cluster: the
 * deployment's prefix, then a hash tag of its own (`P{Ppresence}`), so that
 * they all lie in one slot (their scripts reach keys derived from their
 * arguments) while channels' pub/sub and history spread over the shards by
 * their own tags. A prefix that carries a hash tag already keeps it: its
 * tag then decides every key's slot.
 */
export function presencePrefix(prefix: string): string {
  const open = prefix.indexOf("{");
  if (open >= 0 && prefix.indexOf("}", open + 1) > open + 1) return prefix;
  return `${prefix}{${prefix.replace(/[{}]/g, "")}presence}`;
}
