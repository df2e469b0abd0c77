/**
 * Runs one scenario against one system once: starts the system's servers,
 * the client workers and the publisher worker in one process scope, drives
 * the phases, and stops every process it started, also on failure.
 */
import { fileURLToPath } from "node:url";
import { sleep } from "./clock.js";
import { mergeEncoded, summarize } from "./histogram.js";
import { WorkerClient } from "./ipc.js";
import type { Options } from "./options.js";
import { ProcessScope, type ManagedProcess } from "./proc.js";
import { cpuDelta, pctOfCore, readCpu, rssBytes, sumCpu } from "./procstat.js";
import type { IdleResult, MembersRunResult, PointResult, RampResult, RunRecord } from "./results.js";
import type { Scenario } from "../scenarios.js";
import type { SystemAdapter } from "../systems/system.js";
import type { ClientWorkerApi, PublisherWorkerApi } from "../workers/protocol.js";

/** Connections per client process below which fewer processes are used. */
const MIN_CONNECTIONS_PER_CLIENT_PROCESS = 250;
/** Publishes awaiting acknowledgement above which the publisher drops (and counts) new ones. */
const MAX_IN_FLIGHT = 50_000;
/** The drain ends early once the delivery count has not moved for this long. */
const DRAIN_STABLE_MS = 1_000;
/** Pause between measured windows, for the servers' garbage collector. */
const PAUSE_BETWEEN_WINDOWS_MS = 300;
/** Wait after the servers start before reading their baseline RSS. */
const SERVER_SETTLE_MS = 1_000;
/** Timeout of quick IPC requests (phase, count). */
const IPC_TIMEOUT_MS = 15_000;
/** A window is stretched (up to MAX_WINDOW_STRETCH times) to hold at least this many publishes. */
const MIN_PUBLISHES_PER_WINDOW = 10;
const MAX_WINDOW_STRETCH = 4;
/** The publisher must reach this fraction of the target rate for a window to pass. */
const MIN_ACHIEVED_RATE = 0.95;

const WORKER = (name: string) => fileURLToPath(new URL(`../workers/${name}.ts`, import.meta.url));
const MB = 1024 * 1024;
const round = (x: number, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : NaN);

export interface RunnerContext {
  opts: Options;
  repoRoot: string;
  log(msg: string): void;
  /** Phase numbers are unique over the whole bench run. */
  nextPhase(): number;
}

function sumRss(procs: readonly ManagedProcess[]): number {
  return procs.reduce((s, p) => s + rssBytes(p.pid), 0);
}

export async function runScenario(
  adapter: SystemAdapter,
  sc: Scenario,
  rep: number,
  ctx: RunnerContext,
): Promise<RunRecord> {
  const { opts, log } = ctx;
  const started = performance.now();
  const record: RunRecord = {
    system: adapter.name,
    scenario: sc.id,
    family: sc.family,
    title: sc.title,
    rep,
    startedAt: new Date().toISOString(),
    seconds: 0,
  };
  if (sc.kind === "members" && adapter.membersUnsupported) {
    record.skipped = adapter.membersUnsupported;
    return record;
  }

  const scope = new ProcessScope();
  const clients: Array<WorkerClient<ClientWorkerApi>> = [];
  let publisher: WorkerClient<PublisherWorkerApi> | undefined;
  try {
    const deployment = await adapter.start({ spawn: (s) => scope.spawn(s), repoRoot: ctx.repoRoot });
    const servers = deployment.processes;
    const crashCheck = () => {
      const dead = scope.crashed();
      if (dead.length) throw new Error(`process(es) died: ${dead.map((p) => `${p.name}\n${p.tail()}`).join("\n")}`);
    };

    const clientProcs = Math.min(
      opts.clientProcs,
      Math.max(1, Math.ceil(sc.clients / MIN_CONNECTIONS_PER_CLIENT_PROCESS)),
    );
    const workerSpec = (name: string, script: string) => ({
      name,
      args: ["--import", "tsx", WORKER(script)],
      cwd: ctx.repoRoot,
      ipc: true,
    });
    for (let i = 0; i < clientProcs; i++)
      clients.push(new WorkerClient(await scope.spawn(workerSpec(`client${i + 1}`, "client"))));
    publisher = new WorkerClient(await scope.spawn(workerSpec("publisher", "publisher")));
    await Promise.all([...clients.map((c) => c.ready), publisher.ready]);
    await publisher.request("init", { system: adapter.name, url: deployment.publishUrl }, 60_000);
    const pub = publisher;

    await sleep(SERVER_SETTLE_MS);
    const rssBefore = sumRss(servers);
    const assignments = clients.map(() => [] as Array<{ index: number; channel: string | null }>);
    for (let i = 0; i < sc.clients; i++) assignments[i % clientProcs]!.push({ index: i, channel: sc.channelOf(i) });
    log(`  connecting ${sc.clients} clients from ${clientProcs} process(es)`);
    const t0 = performance.now();
    const connects = await Promise.all(
      clients.map((c, j) =>
        c.request(
          "connect",
          {
            system: adapter.name,
            urls: deployment.clientUrls,
            connections: assignments[j]!,
            concurrency: opts.connectConcurrency,
          },
          opts.setupSeconds * 1000,
        ),
      ),
    );
    const failed = connects.reduce((s, r) => s + r.failed, 0);
    if (failed > 0) {
      throw new Error(
        `${failed} of ${sc.clients} connections failed: ${connects.find((r) => r.firstError)?.firstError}`,
      );
    }
    record.setup = {
      connections: sc.clients,
      clientProcesses: clientProcs,
      connectSeconds: round((performance.now() - t0) / 1000, 2),
      serverRssBeforeMb: round(rssBefore / MB),
      serverRssAfterMb: round(sumRss(servers) / MB),
    };
    log(`  connected in ${record.setup.connectSeconds} s`);
    crashCheck();

    const serverPids = servers.map((p) => p.pid);
    const clientPids = clients.map((c) => c.proc.pid);
    const allPids = [...serverPids, ...clientPids, pub.proc.pid];

    if (sc.kind === "idle") {
      await sleep(opts.settleSeconds * 1000);
      const after = sumRss(servers);
      record.idle = {
        connections: sc.clients,
        rssBeforeMb: round(rssBefore / MB),
        rssAfterMb: round(after / MB),
        bytesPerConnection: Math.round((after - rssBefore) / sc.clients),
        rssByProcessMb: Object.fromEntries(servers.map((p) => [p.name, round(rssBytes(p.pid) / MB)])),
      } satisfies IdleResult;
      return record;
    }

    if (sc.kind === "members") {
      const c0 = readCpu(serverPids);
      const r = await pub.request(
        "members",
        {
          channel: sc.target.kind === "channel" ? sc.target.channel : "",
          durationMs: opts.stepSeconds * 1000,
          expected: sc.clients,
        },
        opts.stepSeconds * 1000 + 60_000,
      );
      const d = cpuDelta(c0, readCpu(serverPids));
      record.members = {
        calls: r.calls,
        callsPerSec: round(r.calls / (r.elapsedMs / 1000)),
        errors: r.errors,
        firstError: r.firstError,
        wrongCount: r.wrongCount,
        lastCount: r.lastCount,
        expected: sc.clients,
        latency: summarize(mergeEncoded([r.callHistogram])),
        serverCpuPct: round(pctOfCore(sumCpu(d, serverPids), d.wallMicros)),
      } satisfies MembersRunResult;
      crashCheck();
      return record;
    }

    const measure = async (
      label: PointResult["label"],
      publishRate: number,
      nominalSeconds: number,
    ): Promise<PointResult> => {
      const seconds = Math.min(
        Math.max(nominalSeconds, MIN_PUBLISHES_PER_WINDOW / publishRate),
        nominalSeconds * MAX_WINDOW_STRETCH,
      );
      const phase = ctx.nextPhase();
      await Promise.all(clients.map((c) => c.request("phase", { phase }, IPC_TIMEOUT_MS)));
      const c0 = readCpu(allPids);
      const run = await pub.request(
        "run",
        {
          phase,
          target: sc.target,
          rate: publishRate,
          durationMs: seconds * 1000,
          payloadBytes: opts.payloadBytes,
          maxInFlight: MAX_IN_FLIGHT,
          ackDrainMs: opts.drainSeconds * 1000,
        },
        seconds * 1000 + opts.drainSeconds * 1000 + 60_000,
      );
      const c1 = readCpu(allPids);
      const serverRss = sumRss(servers);
      const dpm = sc.deliveriesPerMessage;
      const drainEnd = performance.now() + opts.drainSeconds * 1000;
      let last = -1;
      let lastChange = performance.now();
      for (;;) {
        const counts = await Promise.all(clients.map((c) => c.request("count", null, IPC_TIMEOUT_MS)));
        const got = counts.reduce((s, c) => s + c.received, 0);
        const now = performance.now();
        if (got >= run.sent * dpm || now > drainEnd) break;
        if (got !== last) {
          last = got;
          lastChange = now;
        } else if (now - lastChange > DRAIN_STABLE_MS) break;
        await sleep(100);
      }
      const c2 = readCpu(allPids);
      const reports = await Promise.all(clients.map((c) => c.request("report", null, IPC_TIMEOUT_MS)));
      crashCheck();

      const received = reports.reduce((s, r) => s + r.received, 0);
      const expected = run.scheduled * dpm;
      const publishSeconds = run.elapsedMs / 1000;
      const d1 = cpuDelta(c0, c1);
      const d2 = cpuDelta(c0, c2);
      const clientPcts = clientPids.map((p) => pctOfCore(sumCpu(d1, [p]), d1.wallMicros));
      const latency = summarize(mergeEncoded(reports.map((r) => r.histogram)));
      const call = summarize(mergeEncoded([run.callHistogram]));
      const lag = summarize(mergeEncoded([run.lagHistogram]));
      const completeness = expected > 0 ? received / expected : 0;
      const achieved = run.scheduled / Math.max(publishSeconds, 1e-9) / publishRate;
      const disconnects = reports.reduce((s, r) => s + r.disconnects, 0);

      const failReasons: string[] = [];
      if (latency.p99 > opts.p99LimitMs) failReasons.push(`p99 ${latency.p99} ms > ${opts.p99LimitMs} ms`);
      if (completeness < opts.completenessMin)
        failReasons.push(`completeness ${round(completeness * 100, 2)}% < ${opts.completenessMin * 100}%`);
      if (sc.gateOnCallLatency && call.p99 > opts.p99LimitMs)
        failReasons.push(`call p99 ${call.p99} ms > ${opts.p99LimitMs} ms`);
      if (run.errors + run.dropped > 0.01 * run.scheduled)
        failReasons.push(`${run.errors} call errors, ${run.dropped} dropped`);
      if (achieved < MIN_ACHIEVED_RATE)
        failReasons.push(`publisher reached only ${round(achieved * 100)}% of the rate`);
      if (disconnects > 0)
        failReasons.push(`${disconnects} disconnects (${reports.find((r) => r.firstDisconnect)?.firstDisconnect})`);

      const point: PointResult = {
        label,
        phase,
        publishRate: round(publishRate, 3),
        targetDeliveryRate: Math.round(publishRate * dpm),
        publishSeconds: round(publishSeconds, 3),
        scheduled: run.scheduled,
        sent: run.sent,
        callErrors: run.errors,
        dropped: run.dropped,
        firstCallError: run.firstError,
        expected,
        received,
        completeness: round(completeness, 5),
        deliveredPerSec: Math.round(received / publishSeconds),
        latency,
        call,
        publisherLagP99Ms: lag.p99,
        serverCpuPct: round(pctOfCore(sumCpu(d1, serverPids), d1.wallMicros)),
        serverCpuPctByProcess: Object.fromEntries(
          servers.map((p) => [p.name, round(pctOfCore(sumCpu(d1, [p.pid]), d1.wallMicros))]),
        ),
        serverCpuMicrosPerDelivery: round(sumCpu(d2, serverPids) / Math.max(received, 1), 2),
        serverRssMb: round(serverRss / MB),
        clientCpuPct: round(clientPcts.reduce((a, b) => a + b, 0)),
        clientCpuMaxPct: round(Math.max(...clientPcts)),
        publisherCpuPct: round(pctOfCore(sumCpu(d1, [pub.proc.pid]), d1.wallMicros)),
        machineBusyPct: round(pctOfCore(d1.machineBusyMicros, d1.wallMicros)),
        stale: reports.reduce((s, r) => s + r.stale, 0),
        negative: reports.reduce((s, r) => s + r.negative, 0),
        disconnects,
        pass: failReasons.length === 0,
        failReasons,
      };
      log(
        `  ${label} ${point.targetDeliveryRate}/s: delivered ${point.deliveredPerSec}/s, ` +
          `p50 ${latency.p50} p99 ${latency.p99} ms, complete ${round(completeness * 100, 2)}%, ` +
          `server ${point.serverCpuPct}% cpu, clients ${point.clientCpuPct}% (max ${point.clientCpuMaxPct}%)` +
          (point.pass ? "" : `  FAIL: ${failReasons.join("; ")}`),
      );
      await sleep(PAUSE_BETWEEN_WINDOWS_MS);
      return point;
    };

    const stepPublishRate = opts.stepRate / sc.deliveriesPerMessage;
    if (opts.warmupSeconds > 0) await measure("warmup", stepPublishRate, opts.warmupSeconds);
    record.step = await measure("step", stepPublishRate, opts.stepSeconds);
    if (opts.ramp) record.ramp = await ramp(record.step, sc, opts, (rate) => measure("ramp", rate, opts.rampSeconds));
    return record;
  } catch (err) {
    record.error = String((err as Error)?.message ?? err);
    log(`  ERROR: ${record.error.split("\n").slice(0, 6).join("\n  ")}`);
    return record;
  } finally {
    await Promise.allSettled([
      ...clients.map((c) => c.request("close", null, 5_000)),
      publisher?.request("close", null, 5_000),
    ]);
    await scope.stopAll();
    record.seconds = round((performance.now() - started) / 1000);
  }
}

/**
 * Doubles the publish rate from the step until a window fails, then bisects
 * between the highest pass and the lowest failure until the bracket is
 * narrower than the resolution, the step budget is spent, or the ceiling is
 * reached. Starts below the step when the step itself failed, down to the
 * lowest rate a window can measure (then the maximum is reported as 0).
 */
async function ramp(
  step: PointResult,
  sc: Scenario,
  opts: Options,
  measure: (publishRate: number) => Promise<PointResult>,
): Promise<RampResult> {
  const points: PointResult[] = [];
  const ceiling = opts.maxDeliveryRate / sc.deliveriesPerMessage;
  let lo = step.pass ? step.publishRate : 0;
  let hi = step.pass ? Infinity : step.publishRate;
  let best = step.pass ? step : undefined;
  for (let i = 0; i < opts.rampMaxSteps; i++) {
    let rate = hi === Infinity ? lo * 2 : (lo + hi) / 2;
    if (rate > ceiling) rate = ceiling;
    if (rate <= lo) break; // at the ceiling already
    if (hi !== Infinity && (hi - lo) / hi <= opts.rampResolution) break;
    // Too slow to hold MIN_PUBLISHES_PER_WINDOW even in a stretched window: not measurable.
    if (rate * opts.rampSeconds * MAX_WINDOW_STRETCH < MIN_PUBLISHES_PER_WINDOW) break;
    const p = await measure(rate);
    points.push(p);
    if (p.pass) {
      lo = rate;
      best = p;
    } else {
      hi = rate;
    }
  }
  return {
    points,
    maxPublishRate: lo,
    maxDeliveredPerSec: best?.deliveredPerSec ?? 0,
    bestPhase: best?.phase,
    firstFailedPublishRate: hi === Infinity ? undefined : hi,
    firstFailedDeliveryRate: hi === Infinity ? undefined : Math.round(hi * sc.deliveriesPerMessage),
  };
}
