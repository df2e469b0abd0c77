/**
 * A load-client process: holds many connections of one system, and records
 * the latency of every delivery of the current phase into one histogram.
 * The hot path is the adapter's frame parsing plus one clock read and one
 * histogram record per delivery; nothing is logged or allocated per message
 * here.
 */
import { nowMicros } from "../lib/clock.js";
import { createHistogram, encodeHistogram, recordMicros } from "../lib/histogram.js";
import { serveWorker } from "../lib/ipc.js";
import { loadSystem } from "../systems/index.js";
import type { ClientConnection } from "../systems/system.js";
import type { ClientWorkerApi } from "./protocol.js";

let phase = -1;
let histogram = createHistogram();
let received = 0;
let stale = 0;
let negative = 0;
let disconnects = 0;
let firstDisconnect: string | undefined;
const connections: ClientConnection[] = [];

function onDelivery(sentMicros: number, k: number): void {
  if (k !== phase) {
    stale++;
    return;
  }
  received++;
  const latency = nowMicros() - sentMicros;
  if (latency < 0) negative++;
  if (latency === latency) recordMicros(histogram, latency); // NaN: counted, not recorded
}

function onClose(reason: string): void {
  disconnects++;
  firstDisconnect ??= reason;
}

serveWorker<ClientWorkerApi>({
  async connect({ system, urls, connections: wanted, concurrency }) {
    const adapter = await loadSystem(system);
    const started = performance.now();
    let next = 0;
    let connected = 0;
    let failed = 0;
    let firstError: string | undefined;
    const lane = async () => {
      while (next < wanted.length) {
        const { index, channel } = wanted[next++]!;
        try {
          const c = await adapter.connect(urls[index % urls.length]!, onDelivery, onClose);
          connections.push(c);
          if (channel !== null) await c.join(channel);
          connected++;
        } catch (err) {
          failed++;
          firstError ??= String((err as Error)?.message ?? err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, wanted.length) }, lane));
    return { connected, failed, firstError, seconds: (performance.now() - started) / 1000 };
  },

  phase({ phase: p }) {
    phase = p;
    histogram = createHistogram();
    received = stale = negative = 0;
    return null;
  },

  count() {
    return { received };
  },

  report() {
    return {
      phase,
      received,
      stale,
      negative,
      histogram: encodeHistogram(histogram),
      disconnects,
      firstDisconnect,
    };
  },

  close() {
    for (const c of connections) c.close();
    connections.length = 0;
    return null;
  },
});
