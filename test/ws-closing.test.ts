/**
 * Closing means stopping: once the edge has decided to close a connection
 * (its error budget spent: 4503; a protocol error: 1002), no later frame of
 * it reaches the core, the edge stops reading it, and destroys it within
 * the close handshake timeout even if the client never answers the close.
 * A raw client (test/helpers/raw-ws.ts) floods 80 KB frames after the close;
 * another client's ping latency, measured before and during the flood in
 * the same test, stays near its baseline. Real API and edge processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOSE_HANDSHAKE_TIMEOUT_MS } from "../src/core/limits.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { httpOf, scrape } from "./helpers/prom.js";
import { clientFrame, Opcode, RawClient } from "./helpers/raw-ws.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const BUDGET = 3;
let cluster: Cluster;
const clients: TestClient[] = [];
const raws: RawClient[] = [];

beforeAll(async () => {
  cluster = await startCluster(1, {
    REALTIME_ERROR_BUDGET: String(BUDGET),
    // The observer pings as fast as it can.
    REALTIME_RATE_LIMIT_PER_SECOND: "100000",
    REALTIME_RATE_LIMIT_BURST: "100000",
  });
}, 60_000);

afterAll(async () => {
  for (const r of raws) r.destroy();
  await Promise.all(clients.map((c) => c.close()));
  await cluster?.stop();
  await stopAll();
});

/** Median round trip of application pings from c while `during` runs (or for ms). */
async function pingMedian(c: TestClient, ms: number): Promise<number> {
  const times: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t = performance.now();
    await c.ok({ command: { case: "ping", value: {} } });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/**
 * Writes frame again and again, as fast as the edge takes it, until the
 * socket is gone or ms passed; resolves with the bytes that left for the edge.
 */
async function flood(c: RawClient, frame: Buffer, ms: number): Promise<number> {
  const start = c.socket.bytesWritten;
  const end = performance.now() + ms;
  while (performance.now() < end && !c.socket.destroyed) {
    // Keep a little queued, never awaiting a drain that a paused edge never gives.
    if (c.socket.writableLength < 2 * frame.length) c.socket.write(frame);
    else await sleep(5);
  }
  return c.socket.bytesWritten - c.socket.writableLength - start;
}

/** Frames the edge's core could not decode so far (the series appears with the first). */
async function invalid(edgeUrl: string): Promise<number> {
  const samples = await scrape(`${httpOf(edgeUrl)}/metrics`);
  return samples.samples.some((s) => s.name === "switchboard_messages_in_total" && s.labels.kind === "invalid")
    ? samples.get("switchboard_messages_in_total", { kind: "invalid" })
    : 0;
}

const BIG = clientFrame(Opcode.Text, Buffer.alloc(80_000, "x"));
/** 80 KB of pings: control frames are frames too. */
const PINGS = Buffer.concat(Array.from({ length: 610 }, () => clientFrame(Opcode.Ping, Buffer.alloc(125))));
/** BUDGET + 1 malformed frames spend the budget; 10 more in the same write follow the decision. */
const SPEND_BUDGET = Buffer.concat(
  Array.from({ length: BUDGET + 1 + 10 }, () => clientFrame(Opcode.Text, Buffer.from("{"))),
);

describe("after the edge decides to close a connection", () => {
  const cases = [
    { name: "its error budget spent (4503)", code: 4503, trigger: SPEND_BUDGET, invalidFrames: BUDGET + 1, frame: BIG },
    {
      name: "its error budget spent (4503), then pings",
      code: 4503,
      trigger: SPEND_BUDGET,
      invalidFrames: BUDGET + 1,
      frame: PINGS,
    },
    {
      name: "a protocol error (1002: opcode 3)",
      code: 1002,
      trigger: Buffer.concat([clientFrame(3, Buffer.from("x")), clientFrame(Opcode.Text, Buffer.from("{"))]),
      invalidFrames: 0,
      frame: BIG,
    },
  ];
  for (const { name, code, trigger, invalidFrames, frame } of cases) {
    it(`${name}: no later frame reaches the core, it reads no more, and the socket is destroyed within ${CLOSE_HANDSHAKE_TIMEOUT_MS} ms; others' latency holds`, async () => {
      const url = cluster.ws[0]!;
      const observer = await TestClient.connect(url, "json");
      clients.push(observer);
      const baseline = await pingMedian(observer, 1_000);

      const before = await invalid(url);
      const flooder = await RawClient.open(url, { answerPings: false, halfOpen: true });
      raws.push(flooder);
      await flooder.write(trigger);
      await flooder.closeFrame();
      expect(flooder.closeCode).toBe(code);
      const closedAt = flooder.closeAt!;

      // The flooder ignores the close (and the end of the edge's side) and
      // sends 80 KB of frames as fast as the edge takes them, until it is cut off.
      const flooding = flood(flooder, frame, CLOSE_HANDSHAKE_TIMEOUT_MS + 3_000);
      const during = await pingMedian(observer, 2_000);
      const sent = await flooding;
      const endedAfter = flooder.endAt === undefined ? Infinity : flooder.endAt - closedAt;
      console.log(
        `${name}: ping median ${baseline.toFixed(2)} ms before, ${during.toFixed(2)} ms during the flood; ` +
          `the edge took ${(sent / 1e6).toFixed(1)} MB after the close; socket gone ${endedAfter.toFixed(0)} ms after the close frame`,
      );
      // Only the frames before the decision were decoded by the core.
      expect((await invalid(url)) - before).toBe(invalidFrames);
      expect(endedAfter).toBeLessThan(CLOSE_HANDSHAKE_TIMEOUT_MS + 1_000);
      // Generous: the flood must not cost the others more than noise on a busy machine.
      expect(during).toBeLessThan(baseline * 5 + 5);
      // It stopped reading: at most a frame or two beyond what the kernel buffers hold.
      expect(sent).toBeLessThan(16 * 1024 * 1024);
    }, 30_000);
  }
});
