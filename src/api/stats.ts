/**
 * WatchStats: Info asked every interval, each answer streamed with its sums
 * and the rates since the previous one. The rates come from the nodes'
 * running totals (NodeInfo.messages_in, deliveries, drops, disconnects:
 * core/node-counters.ts), differenced per node between two answers of the
 * same stream, so that no node keeps any state for a watcher.
 */
import { create } from "@bufbuild/protobuf";
import { setTimeout as sleep } from "node:timers/promises";
import {
  NodeRole,
  WatchStatsResponseSchema,
  type InfoResponse,
  type NodeInfo,
  type WatchStatsResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import { Code, RealtimeError } from "../protocol/errors.js";

/** The interval when a request gives none (interval_ms = 0). */
export const DEFAULT_STATS_INTERVAL_MS = 1_000;
/** The shortest interval: each snapshot is one Info, a question to every node. */
export const MIN_STATS_INTERVAL_MS = 250;
/** The longest interval: a watcher that wants less asks Info itself. */
export const MAX_STATS_INTERVAL_MS = 10_000;

/** The interval of WatchStatsRequest.interval_ms; throws INVALID_ARGUMENT outside the bounds. */
export function statsInterval(intervalMs: number): number {
  if (intervalMs === 0) return DEFAULT_STATS_INTERVAL_MS;
  if (intervalMs < MIN_STATS_INTERVAL_MS || intervalMs > MAX_STATS_INTERVAL_MS) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `interval_ms must be ${MIN_STATS_INTERVAL_MS} to ${MAX_STATS_INTERVAL_MS} (or 0 for ${DEFAULT_STATS_INTERVAL_MS}); it is ${intervalMs}`,
    );
  }
  return intervalMs;
}

/** One node's totals in one answer, for the next difference. */
interface Totals {
  readonly startedUnixMs: bigint;
  readonly messagesIn: bigint;
  readonly deliveries: bigint;
  readonly drops: bigint;
  readonly disconnects: Readonly<Record<string, bigint>>;
}

/** One answer, as the next snapshot differences it. */
export interface StatsSample {
  readonly atUnixMs: number;
  readonly nodes: ReadonlyMap<string, Totals>;
}

/**
 * The snapshot of info, asked at atUnixMs, with its rates since prev (none
 * without prev: all 0), and the sample the next one differences. A node
 * whose totals went down, or whose start time changed, restarted: its
 * totals now are its change. A node absent from prev counts its totals as
 * its change when it started after prev was asked, and nothing otherwise
 * (it may have been there, unanswered).
 */
export function statsSnapshot(
  info: InfoResponse,
  atUnixMs: number,
  prev: StatsSample | undefined,
): { snapshot: WatchStatsResponse; sample: StatsSample } {
  const nodes = new Map<string, Totals>();
  let connections = 0;
  let channels = 0;
  let messagesIn = 0n;
  let deliveries = 0n;
  let drops = 0n;
  const disconnects: Record<string, bigint> = {};
  for (const n of info.nodes) {
    if (n.role === NodeRole.EDGE) {
      connections += n.connections;
      channels += n.channels;
    }
    const now = totalsOf(n);
    nodes.set(n.id, now);
    if (!prev) continue;
    const before = prev.nodes.get(n.id);
    const change = before ? changeSince(now, before) : n.startedUnixMs > BigInt(prev.atUnixMs) ? now : undefined;
    if (!change) continue;
    messagesIn += change.messagesIn;
    deliveries += change.deliveries;
    drops += change.drops;
    for (const [reason, v] of Object.entries(change.disconnects)) {
      if (v > 0n) disconnects[reason] = (disconnects[reason] ?? 0n) + v;
    }
  }
  const seconds = prev ? Math.max(atUnixMs - prev.atUnixMs, 1) / 1000 : 1;
  const rate = (n: bigint) => Number(n) / seconds;
  const snapshot = create(WatchStatsResponseSchema, {
    atUnixMs: BigInt(atUnixMs),
    nodes: info.nodes,
    connections,
    channels,
    messagesInPerSecond: rate(messagesIn),
    deliveriesPerSecond: rate(deliveries),
    dropsPerSecond: rate(drops),
    disconnectsPerSecondByReason: Object.fromEntries(Object.entries(disconnects).map(([k, v]) => [k, rate(v)])),
    unanswered: info.unanswered,
  });
  return { snapshot, sample: { atUnixMs, nodes } };
}

function totalsOf(n: NodeInfo): Totals {
  let drops = 0n;
  for (const v of Object.values(n.drops)) drops += v;
  return {
    startedUnixMs: n.startedUnixMs,
    messagesIn: n.messagesIn,
    deliveries: n.deliveries,
    drops,
    disconnects: n.disconnects,
  };
}

/**
 * What a node counted between two answers: the whole of now when it
 * restarted (a new start time), and for each total that went down (a
 * restart the start time missed) that total now.
 */
function changeSince(now: Totals, before: Totals): Totals {
  if (now.startedUnixMs !== before.startedUnixMs) return now;
  const d = (a: bigint, b: bigint | undefined) => (b === undefined || a < b ? a : a - b);
  const disconnects: Record<string, bigint> = {};
  for (const [reason, v] of Object.entries(now.disconnects)) disconnects[reason] = d(v, before.disconnects[reason]);
  return {
    startedUnixMs: now.startedUnixMs,
    messagesIn: d(now.messagesIn, before.messagesIn),
    deliveries: d(now.deliveries, before.deliveries),
    drops: d(now.drops, before.drops),
    disconnects,
  };
}

/**
 * The responses of one WatchStats call: ask() (Info) now and then every
 * intervalMs after each ask started, each answer as a snapshot, until
 * signal aborts (then it throws the reason). A failed ask ends the stream
 * with its error. A watcher that reads slowly holds back the next ask:
 * nothing is queued for it.
 */
export async function* watchStats(
  ask: () => Promise<InfoResponse>,
  intervalMs: number,
  signal: AbortSignal,
  now: () => number = Date.now,
): AsyncGenerator<WatchStatsResponse> {
  let prev: StatsSample | undefined;
  for (;;) {
    signal.throwIfAborted();
    const at = now();
    const { snapshot, sample } = statsSnapshot(await ask(), at, prev);
    prev = sample;
    yield snapshot;
    try {
      await sleep(Math.max(0, at + intervalMs - now()), undefined, { signal });
    } catch {
      signal.throwIfAborted();
    }
  }
}
