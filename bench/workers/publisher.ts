/**
 * The publisher process: publishes on a schedule (open loop: a slow server
 * does not slow the schedule down, it shows as latency, lag or drops), and
 * times each call until the server acknowledges it.
 *
 * Each payload is stamped with the time it actually left; how late that was
 * against the schedule is recorded separately (lagHistogram), so a
 * publisher that cannot keep up is visible instead of hiding server latency.
 */
import { nowMicros, sleep } from "../lib/clock.js";
import { createHistogram, encodeHistogram, recordMicros } from "../lib/histogram.js";
import { serveWorker } from "../lib/ipc.js";
import { loadSystem } from "../systems/index.js";
import type { BenchPayload, Publisher } from "../systems/system.js";
import type { PublisherWorkerApi } from "./protocol.js";

/** JSON of {"t":1795949590293728.5,"k":12,"p":""} without the padding. */
const PAYLOAD_OVERHEAD_BYTES = 40;

let publisher: Publisher | undefined;

function need(): Publisher {
  if (!publisher) throw new Error("publisher not initialised");
  return publisher;
}

serveWorker<PublisherWorkerApi>({
  async init({ system, url }) {
    publisher = await (await loadSystem(system)).createPublisher(url);
    return null;
  },

  async run({ phase, target, rate, durationMs, payloadBytes, maxInFlight, ackDrainMs }) {
    const pub = need();
    const pad = "x".repeat(Math.max(0, payloadBytes - PAYLOAD_OVERHEAD_BYTES));
    const callHist = createHistogram();
    const lagHist = createHistogram();
    const total = Math.max(1, Math.round((rate * durationMs) / 1000));
    const intervalMicros = 1e6 / rate;
    let sent = 0;
    let acked = 0;
    let errors = 0;
    let dropped = 0;
    let inFlight = 0;
    let firstError: string | undefined;
    let pickChannel: () => string = () => "";
    if (target.kind === "channel") pickChannel = () => target.channel;
    if (target.kind === "groups") pickChannel = () => target.prefix + Math.floor(Math.random() * target.count);

    const fire = (scheduled: number) => {
      if (inFlight >= maxInFlight) {
        dropped++;
        return;
      }
      const t = nowMicros();
      recordMicros(lagHist, t - scheduled);
      const payload: BenchPayload = { t, k: phase, p: pad };
      inFlight++;
      sent++;
      const call = target.kind === "broadcast" ? pub.broadcast(payload) : pub.publish(pickChannel(), payload);
      call.then(
        () => {
          acked++;
          inFlight--;
          recordMicros(callHist, nowMicros() - t);
        },
        (err: unknown) => {
          errors++;
          inFlight--;
          firstError ??= String((err as Error)?.message ?? err);
        },
      );
    };

    const start = nowMicros();
    let i = 0;
    while (i < total) {
      const now = nowMicros();
      while (i < total && start + i * intervalMicros <= now) fire(start + i++ * intervalMicros);
      if (i < total) await sleep(Math.max(1, Math.floor((start + i * intervalMicros - nowMicros()) / 1000)));
    }
    // The window is [first publish, last publish + one interval): N intervals.
    const elapsedMs = (Math.max(nowMicros(), start + (total - 1) * intervalMicros) - start + intervalMicros) / 1000;
    const drainUntil = performance.now() + ackDrainMs;
    while (inFlight > 0 && performance.now() < drainUntil) await sleep(5);
    return {
      scheduled: total,
      sent,
      acked,
      errors: errors + inFlight, // unacknowledged by now: failed
      dropped,
      firstError: firstError ?? (inFlight > 0 ? `${inFlight} calls unacknowledged after ${ackDrainMs} ms` : undefined),
      callHistogram: encodeHistogram(callHist),
      lagHistogram: encodeHistogram(lagHist),
      elapsedMs,
    };
  },

  async members({ channel, durationMs, expected }) {
    const pub = need();
    const hist = createHistogram();
    let calls = 0;
    let errors = 0;
    let wrongCount = 0;
    let lastCount = -1;
    let firstError: string | undefined;
    const start = performance.now();
    while (performance.now() - start < durationMs) {
      const t = nowMicros();
      try {
        lastCount = await pub.members(channel);
        recordMicros(hist, nowMicros() - t);
        if (lastCount !== expected) wrongCount++;
      } catch (err) {
        errors++;
        firstError ??= String((err as Error)?.message ?? err);
        await sleep(10);
      }
      calls++;
    }
    return {
      calls,
      errors,
      firstError,
      wrongCount,
      lastCount,
      callHistogram: encodeHistogram(hist),
      elapsedMs: performance.now() - start,
    };
  },

  async close() {
    await publisher?.close();
    publisher = undefined;
    return null;
  },
});
