/** The IPC APIs of the two worker kinds, shared by the workers and the coordinator. */
import type { Target } from "../scenarios.js";

export interface ConnectArg {
  system: string;
  /** The system's client URLs; connection i uses urls[i % urls.length]. */
  urls: string[];
  connections: Array<{ index: number; channel: string | null }>;
  concurrency: number;
}

export interface ConnectResult {
  connected: number;
  failed: number;
  firstError?: string;
  seconds: number;
}

export interface ClientReport {
  phase: number;
  received: number;
  /** Deliveries of another phase (late ones from the previous step). */
  stale: number;
  /** Deliveries stamped in the future (clock skew between processes). */
  negative: number;
  /** Encoded HdrHistogram of delivery latency, µs. */
  histogram: string;
  disconnects: number;
  firstDisconnect?: string;
}

export type ClientWorkerApi = {
  connect: [ConnectArg, ConnectResult];
  /** Starts a new measurement window: counters and histogram are reset. */
  phase: [{ phase: number }, null];
  count: [null, { received: number }];
  report: [null, ClientReport];
  close: [null, null];
};

export interface RunArg {
  phase: number;
  target: Target;
  /** Publishes per second. */
  rate: number;
  durationMs: number;
  payloadBytes: number;
  /** Publishes awaiting acknowledgement above which new ones are dropped (counted). */
  maxInFlight: number;
  /** Longest wait for outstanding acknowledgements after the last publish. */
  ackDrainMs: number;
}

export interface RunResult {
  /** Publishes the schedule called for (sent + dropped). */
  scheduled: number;
  sent: number;
  acked: number;
  errors: number;
  dropped: number;
  firstError?: string;
  /** Encoded histogram of call latency (publish → acknowledgement), µs. */
  callHistogram: string;
  /** Encoded histogram of how late each publish left against its schedule, µs. */
  lagHistogram: string;
  elapsedMs: number;
}

export interface MembersArg {
  channel: string;
  durationMs: number;
  expected: number;
}

export interface MembersResult {
  calls: number;
  errors: number;
  firstError?: string;
  /** Calls whose member count differed from the expected one. */
  wrongCount: number;
  lastCount: number;
  callHistogram: string;
  elapsedMs: number;
}

export type PublisherWorkerApi = {
  init: [{ system: string; url: string }, null];
  run: [RunArg, RunResult];
  members: [MembersArg, MembersResult];
  close: [null, null];
};
