/**
 * REALTIME_WRITE_DELAY_MS, opt-in batching at the edge: a connection's
 * frames wait up to the delay and leave in one write. Seen from a raw TCP
 * client: 30 events of one SendBatch arrive in one or two reads, no sooner
 * than the delay, in order; the close frame of a Disconnect still follows
 * the event written before it; an edge without the setting writes at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { eventually } from "./helpers/redis-topology.js";
import { clientFrame, Opcode, RawClient } from "./helpers/raw-ws.js";

const DELAY_MS = 300;

let cluster: Cluster;
let api: RealtimeTestClient;
beforeAll(async () => {
  cluster = await startCluster(0);
  await cluster.addEdge({ REALTIME_WRITE_DELAY_MS: String(DELAY_MS) });
  await cluster.addEdge();
  api = realtimeClient(cluster.grpc);
}, 60_000);
afterAll(async () => {
  api?.close();
  await cluster?.stop();
  await stopAll();
});

/** A raw client in channel, recording each TCP read (when, and its bytes as latin1 text). */
async function member(edge: number, channel: string) {
  const c = await RawClient.open(cluster.ws[edge]!);
  const reads: { at: number; text: string }[] = [];
  c.socket.on("data", (d: Buffer) => reads.push({ at: performance.now(), text: d.toString("latin1") }));
  await c.write(clientFrame(Opcode.Text, Buffer.from(JSON.stringify({ id: 1, join: { channel } }))));
  await eventually(() => reads.some((r) => r.text.includes('"reply":{"id":1')), 10_000, "the join's reply");
  const id = /"connected":\{"id":"([^"]+)"/.exec(reads.map((r) => r.text).join(""))?.[1];
  reads.length = 0;
  return { c, reads, id: id! };
}

const all = (reads: { text: string }[]) => reads.map((r) => r.text).join("");
const ticks = (text: string) => [...text.matchAll(/"event":"tick","json":(\d+)/g)].map((m) => Number(m[1]));

describe("REALTIME_WRITE_DELAY_MS", () => {
  it("holds a connection's frames up to the delay and writes them together, in order", async () => {
    const { c, reads } = await member(0, "wd");
    const sent = performance.now();
    await api.sendBatch({
      requests: Array.from({ length: 30 }, (_, n) => ({
        channel: "wd",
        event: "tick",
        payload: { case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } },
      })),
    });
    await eventually(() => ticks(all(reads)).length === 30, 10_000, "30 events");
    expect(ticks(all(reads))).toEqual(Array.from({ length: 30 }, (_, n) => n));
    // One write of the edge (two if the batch reached it across a flush).
    const withTicks = reads.filter((r) => ticks(r.text).length > 0);
    expect(withTicks.length).toBeLessThanOrEqual(2);
    expect(withTicks[0]!.at - sent).toBeGreaterThanOrEqual(DELAY_MS * 0.8);
    c.destroy();
  });

  it("a close frame still follows the events written before it", async () => {
    const { c, reads, id } = await member(0, "wd-close");
    await api.send({
      channel: "wd-close",
      event: "tick",
      payload: { case: "json", value: { kind: { case: "numberValue", value: 7 } } },
    });
    await api.disconnect({ target: { target: { case: "connectionId", value: id } }, reason: "bye" });
    await c.closeFrame();
    expect(c.closeCode).toBe(4505);
    const text = all(reads);
    expect(ticks(text)).toEqual([7]);
    expect(text.indexOf('"event":"tick"')).toBeLessThan(text.indexOf("bye"));
    c.destroy();
  });

  it("an edge without it writes at once: one Send reaches its member a delay before the other edge's", async () => {
    const held = await member(0, "wd-both");
    const now = await member(1, "wd-both");
    await api.send({
      channel: "wd-both",
      event: "tick",
      payload: { case: "json", value: { kind: { case: "numberValue", value: 1 } } },
    });
    await eventually(() => ticks(all(held.reads)).length === 1 && ticks(all(now.reads)).length === 1, 10_000, "both");
    // Half the delay: room for either edge to be late on a busy machine.
    expect(held.reads[0]!.at - now.reads[0]!.at).toBeGreaterThanOrEqual(DELAY_MS / 2);
    held.c.destroy();
    now.c.destroy();
  });
});
