/**
 * Command-line options of `npm run bench`, each with its full-run default and
 * its --quick default (counts and durations ~10x smaller, for smoke runs).
 */
import { parseArgs } from "node:util";
import { SYSTEM_IDS } from "../systems/index.js";

export interface Options {
  quick: boolean;
  systems: string[];
  /** Scenario filter: families (a-f), names (fanout, groups, ...) or ids (fanout-1000). */
  scenarios: string[];
  reps: number;
  /** The fixed step, in deliveries per second (publish rate × members per message). */
  stepRate: number;
  stepSeconds: number;
  warmupSeconds: number;
  ramp: boolean;
  rampSeconds: number;
  rampMaxSteps: number;
  /** The ramp stops when the bracket [passed, failed] is narrower than this fraction. */
  rampResolution: number;
  /** The ramp never asks for more deliveries per second than this. */
  maxDeliveryRate: number;
  p99LimitMs: number;
  completenessMin: number;
  clientProcs: number;
  fanoutSizes: number[];
  /** Connections of scenarios b, c, d and f. */
  clients: number;
  groupSize: number;
  /** Approximate size of each event's JSON payload, padding included. */
  payloadBytes: number;
  /** Connection handshakes in flight per client process. */
  connectConcurrency: number;
  /** Longest wait for late deliveries after the publisher stopped. */
  drainSeconds: number;
  /** Longest wait for all clients to connect and join. */
  setupSeconds: number;
  /**
   * Idle scenario: wait after the last connection before reading RSS. The
   * full run waits 20 s so that RSS is read idle, after V8's memory reducer
   * has collected the connect burst's garbage (it starts ~8 s after the
   * allocation rate drops); at 3 s the figure swings with GC timing.
   */
  settleSeconds: number;
  /** Runs not started when this budget is spent are reported as skipped. */
  maxMinutes: number;
  outDir: string;
  /** Re-render the report and chart from this raw JSON file instead of running. */
  report?: string;
}

const FULL = {
  reps: 3,
  stepRate: 50_000,
  stepSeconds: 10,
  warmupSeconds: 2,
  rampSeconds: 5,
  rampMaxSteps: 10,
  clientProcs: 3,
  fanoutSizes: [1_000, 10_000],
  clients: 10_000,
  drainSeconds: 5,
  setupSeconds: 600,
  settleSeconds: 20,
  maxMinutes: 240,
};

const QUICK: typeof FULL = {
  reps: 1,
  stepRate: 5_000,
  stepSeconds: 3,
  warmupSeconds: 0.5,
  rampSeconds: 1.5,
  rampMaxSteps: 6,
  clientProcs: 2,
  fanoutSizes: [100, 1_000],
  clients: 1_000,
  drainSeconds: 3,
  setupSeconds: 120,
  settleSeconds: 1,
  maxMinutes: 15,
};

export const USAGE = `Usage: npm run bench -- [options]

  --quick                 smoke-run sizes (~10x fewer clients, shorter steps, 1 rep)
  --systems LIST          ${SYSTEM_IDS.join(",")} (default: all)
  --scenarios LIST        families a-f, names fanout,groups,broadcast,idle,send,members,
                          or ids like fanout-1000 (default: all)
  --reps N                repetitions; medians are reported (full ${FULL.reps}, quick ${QUICK.reps})
  --step-rate N           fixed step, deliveries/s (full ${FULL.stepRate}, quick ${QUICK.stepRate})
  --step-seconds S        (full ${FULL.stepSeconds}, quick ${QUICK.stepSeconds})
  --warmup-seconds S      unrecorded warm-up at the step rate (full ${FULL.warmupSeconds}, quick ${QUICK.warmupSeconds})
  --no-ramp               only the fixed step
  --ramp-seconds S        duration of each ramp step (full ${FULL.rampSeconds}, quick ${QUICK.rampSeconds})
  --ramp-max-steps N      (full ${FULL.rampMaxSteps}, quick ${QUICK.rampMaxSteps})
  --ramp-resolution F     stop bisecting when (failed-passed)/failed < F (default 0.1)
  --max-delivery-rate N   ramp ceiling, deliveries/s (default 2000000)
  --p99-limit-ms MS       "sustained" means p99 at most this (default 50)
  --completeness F        ... and at least this fraction delivered (default 0.99)
  --client-procs N        load-client processes (full ${FULL.clientProcs}, quick ${QUICK.clientProcs})
  --fanout-sizes LIST     members of the fan-out channel (full ${FULL.fanoutSizes}, quick ${QUICK.fanoutSizes})
  --clients N             connections in groups/broadcast/idle/members (full ${FULL.clients}, quick ${QUICK.clients})
  --group-size N          members per channel in groups (default 10)
  --payload-bytes N       approximate JSON size of each payload (default 100)
  --connect-concurrency N handshakes in flight per client process (default 64)
  --drain-seconds S       wait for late deliveries (full ${FULL.drainSeconds}, quick ${QUICK.drainSeconds})
  --setup-seconds S       wait for connect+join (full ${FULL.setupSeconds}, quick ${QUICK.setupSeconds})
  --settle-seconds S      idle scenario: wait after the last join before reading RSS (full ${FULL.settleSeconds}, quick ${QUICK.settleSeconds})
  --max-minutes M         time budget of the whole run (full ${FULL.maxMinutes}, quick ${QUICK.maxMinutes})
  --out DIR               results directory (default bench/results)
  --report FILE           only re-render the report and chart from a raw JSON file
  --help
`;

function positive(name: string, raw: string | undefined, fallback: number, integer = false): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`--${name}: expected a positive ${integer ? "integer" : "number"}, got "${raw}"`);
  }
  return n;
}

function list(raw: string | undefined): string[] | undefined {
  return raw
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

export function parseOptions(argv: string[], defaultOutDir: string): Options | "help" {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean" },
      systems: { type: "string" },
      scenarios: { type: "string" },
      reps: { type: "string" },
      "step-rate": { type: "string" },
      "step-seconds": { type: "string" },
      "warmup-seconds": { type: "string" },
      "no-ramp": { type: "boolean" },
      "ramp-seconds": { type: "string" },
      "ramp-max-steps": { type: "string" },
      "ramp-resolution": { type: "string" },
      "max-delivery-rate": { type: "string" },
      "p99-limit-ms": { type: "string" },
      completeness: { type: "string" },
      "client-procs": { type: "string" },
      "fanout-sizes": { type: "string" },
      clients: { type: "string" },
      "group-size": { type: "string" },
      "payload-bytes": { type: "string" },
      "connect-concurrency": { type: "string" },
      "drain-seconds": { type: "string" },
      "setup-seconds": { type: "string" },
      "settle-seconds": { type: "string" },
      "max-minutes": { type: "string" },
      out: { type: "string" },
      report: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (v.help) return "help";
  const d = v.quick ? QUICK : FULL;
  const systems = list(v.systems) ?? [...SYSTEM_IDS];
  for (const s of systems) {
    if (!(SYSTEM_IDS as readonly string[]).includes(s)) throw new Error(`--systems: unknown system "${s}"`);
  }
  const fanoutSizes = list(v["fanout-sizes"])?.map((s) => positive("fanout-sizes", s, 0, true)) ?? d.fanoutSizes;
  const completenessMin = positive("completeness", v.completeness, 0.99);
  if (completenessMin > 1) throw new Error("--completeness: at most 1");
  const groupSize = positive("group-size", v["group-size"], 10, true);
  const clients = positive("clients", v.clients, d.clients, true);
  if (clients % groupSize !== 0)
    throw new Error(`--clients (${clients}) must be a multiple of --group-size (${groupSize})`);
  return {
    quick: Boolean(v.quick),
    systems,
    scenarios: list(v.scenarios) ?? [],
    reps: positive("reps", v.reps, d.reps, true),
    stepRate: positive("step-rate", v["step-rate"], d.stepRate),
    stepSeconds: positive("step-seconds", v["step-seconds"], d.stepSeconds),
    warmupSeconds: v["warmup-seconds"] === "0" ? 0 : positive("warmup-seconds", v["warmup-seconds"], d.warmupSeconds),
    ramp: !v["no-ramp"],
    rampSeconds: positive("ramp-seconds", v["ramp-seconds"], d.rampSeconds),
    rampMaxSteps: positive("ramp-max-steps", v["ramp-max-steps"], d.rampMaxSteps, true),
    rampResolution: positive("ramp-resolution", v["ramp-resolution"], 0.1),
    maxDeliveryRate: positive("max-delivery-rate", v["max-delivery-rate"], 2_000_000),
    p99LimitMs: positive("p99-limit-ms", v["p99-limit-ms"], 50),
    completenessMin,
    clientProcs: positive("client-procs", v["client-procs"], d.clientProcs, true),
    fanoutSizes,
    clients,
    groupSize,
    payloadBytes: positive("payload-bytes", v["payload-bytes"], 100, true),
    connectConcurrency: positive("connect-concurrency", v["connect-concurrency"], 64, true),
    drainSeconds: positive("drain-seconds", v["drain-seconds"], d.drainSeconds),
    setupSeconds: positive("setup-seconds", v["setup-seconds"], d.setupSeconds),
    settleSeconds: positive("settle-seconds", v["settle-seconds"], d.settleSeconds),
    maxMinutes: positive("max-minutes", v["max-minutes"], d.maxMinutes),
    outDir: v.out ?? defaultOutDir,
    report: v.report,
  };
}
