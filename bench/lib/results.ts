/** The raw results of a bench run, as written to bench/results/raw/*.json. */
import type { LatencySummary } from "./histogram.js";

/** One measured window at one publish rate. */
export interface PointResult {
  label: "warmup" | "step" | "ramp";
  phase: number;
  /** Target publishes per second. */
  publishRate: number;
  /** Target deliveries per second (publishRate × deliveries per message). */
  targetDeliveryRate: number;
  /** Seconds the publisher took for its schedule. */
  publishSeconds: number;
  scheduled: number;
  sent: number;
  callErrors: number;
  dropped: number;
  firstCallError?: string;
  expected: number;
  received: number;
  /** received / expected. */
  completeness: number;
  /** received / publishSeconds. */
  deliveredPerSec: number;
  /** Publish → delivery, over every delivery of the window. */
  latency: LatencySummary;
  /** Publish → acknowledgement of the call. */
  call: LatencySummary;
  /** How late publishes left against the schedule, p99 in ms. */
  publisherLagP99Ms: number;
  /** Server CPU over the publish window, % of one core, summed over processes. */
  serverCpuPct: number;
  serverCpuPctByProcess: Record<string, number>;
  /** Server CPU from publish start to the end of the drain, per delivery. */
  serverCpuMicrosPerDelivery: number;
  /** Summed VmRSS of the server processes at the end of the publish window. */
  serverRssMb: number;
  /** Summed over client processes, % of one core. */
  clientCpuPct: number;
  /** The busiest client process, % of one core (≈100 means the client was the bottleneck). */
  clientCpuMaxPct: number;
  publisherCpuPct: number;
  /** The whole machine, % of one core (includes other users of the machine). */
  machineBusyPct: number;
  stale: number;
  negative: number;
  disconnects: number;
  pass: boolean;
  failReasons: string[];
}

export interface SetupResult {
  connections: number;
  clientProcesses: number;
  connectSeconds: number;
  serverRssBeforeMb: number;
  serverRssAfterMb: number;
}

export interface RampResult {
  points: PointResult[];
  /** Highest publish rate that passed (0 if none did). */
  maxPublishRate: number;
  /** Deliveries/s delivered at that rate. */
  maxDeliveredPerSec: number;
  /** The phase of the window that set the maximum (the step's if the ramp found nothing higher). */
  bestPhase?: number;
  /** Lowest failed publish rate, if any failed. */
  firstFailedPublishRate?: number;
  /** The same as target deliveries per second. */
  firstFailedDeliveryRate?: number;
}

export interface IdleResult {
  connections: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  bytesPerConnection: number;
  rssByProcessMb: Record<string, number>;
}

export interface MembersRunResult {
  calls: number;
  callsPerSec: number;
  errors: number;
  firstError?: string;
  wrongCount: number;
  lastCount: number;
  expected: number;
  latency: LatencySummary;
  serverCpuPct: number;
}

export interface RunRecord {
  system: string;
  scenario: string;
  family: string;
  title: string;
  rep: number;
  startedAt: string;
  seconds: number;
  setup?: SetupResult;
  step?: PointResult;
  ramp?: RampResult;
  idle?: IdleResult;
  members?: MembersRunResult;
  /** Why the run was not made (N/A, time budget). */
  skipped?: string;
  error?: string;
}

export interface RawResults {
  startedAt: string;
  finishedAt?: string;
  quick: boolean;
  options: unknown;
  machine: {
    cores: number;
    cpuModel: string;
    node: string;
    loadAvgAtStart: number[];
    memTotalMb: number;
    fdLimit: number;
  };
  systems: Record<string, string>;
  runs: RunRecord[];
}
