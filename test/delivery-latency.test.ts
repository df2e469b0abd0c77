/**
 * switchboard_delivery_latency_seconds end to end: real API and edge
 * processes on port 0, WebSocket clients of both encodings, events through
 * a grpc-js client (Send, SendBatch, Broadcast, Publish), and the edge's
 * /metrics scraped before and after. One observation per accepted event
 * and edge (by scope), none for what a client sent or what a join replays
 * from history; a delivery held up shows as that long. Embedded (the link)
 * and Redis (the history script and a plain publish).
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELIVERY_LATENCY_BUCKETS } from "../src/metrics/metrics.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { publishAll, realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { httpOf, scrape, type Samples } from "./helpers/prom.js";
import {
  deletePrefix,
  NO_REDIS,
  startTopology,
  testRedisUrl,
  uniquePrefix,
  type Topology,
} from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const METRIC = "switchboard_delivery_latency_seconds";
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

/** The histogram's count, sum and buckets for one scope. */
function latency(s: Samples, scope: "channel" | "broadcast") {
  const bucket = (le: string) => s.get(`${METRIC}_bucket`, { scope, le });
  return { count: s.get(`${METRIC}_count`, { scope }), sum: s.get(`${METRIC}_sum`, { scope }), bucket };
}

/** Waits until every client holds `n` events named name. */
async function received(clients: TestClient[], name: string, n: number): Promise<void> {
  for (const c of clients) {
    for (let tries = 0; c.events(name).length < n && tries < 100; tries++) await sleep(20);
    expect(c.events(name)).toHaveLength(n);
  }
}

describe("delivery latency, embedded", () => {
  let cluster: Cluster;
  let api: RealtimeTestClient;
  let metrics: string;
  const clients: TestClient[] = [];
  const ROOM = "latency-room";

  beforeAll(async () => {
    cluster = await startCluster(1);
    api = realtimeClient(cluster.grpc);
    metrics = `${httpOf(cluster.ws[0]!)}/metrics`;
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    api?.close();
    await cluster?.stop();
    await stopAll();
  });

  it("observes each accepted event once per edge, by scope, and not what a client sent", async () => {
    const before = await scrape(metrics);
    // Registered from the start, so that rate() and alerts see 0.
    expect(latency(before, "channel").count).toBe(0);
    expect(latency(before, "broadcast").count).toBe(0);
    expect(before.text).toContain(`# TYPE ${METRIC} histogram`);
    for (const le of DELIVERY_LATENCY_BUCKETS) latency(before, "channel").bucket(String(le));

    for (const enc of ["json", "proto", "proto"] as const) {
      const c = await TestClient.connect(cluster.ws[0]!, enc);
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: ROOM } } });
    }
    // A client's own send reaches the others, unmeasured.
    await clients[0]!.ok({ command: { case: "send", value: { channel: ROOM, event: "chat", payload: json("hi") } } });
    await received(clients.slice(1), "chat", 1);
    const mid = await scrape(metrics);
    expect(latency(mid, "channel").count).toBe(0);

    for (let i = 0; i < 4; i++) await api.send({ channel: ROOM, event: "tick", payload: json({ i }) });
    await api.sendBatch({
      requests: [0, 1, 2].map((i) => ({ channel: ROOM, event: "tick", payload: json({ batch: i }) })),
    });
    await api.broadcast({ event: "notice", payload: json(1) });
    const { responses, status } = await publishAll(api.publish(), [
      { event: { case: "send", value: { channel: ROOM, event: "tick", payload: json({ stream: 0 }) } } },
      { event: { case: "send", value: { channel: ROOM, event: "tick", payload: json({ stream: 1 }) } } },
      { event: { case: "broadcast", value: { event: "notice", payload: json(2) } } },
    ]);
    expect(status.code).toBe(0);
    expect(Number(responses.at(-1)?.handled)).toBe(3);
    await received(clients, "tick", 9);
    await received(clients, "notice", 2);

    const after = await scrape(metrics);
    const channel = latency(after, "channel");
    const broadcast = latency(after, "broadcast");
    // One observation per event (9 sends, 2 broadcasts), not per recipient (3 each).
    expect(channel.count).toBe(9);
    expect(broadcast.count).toBe(2);
    expect(after.get("switchboard_deliveries_total") - mid.get("switchboard_deliveries_total")).toBe(3 * 9 + 3 * 2);
    // On one machine, over loopback: well under a second each, never negative.
    expect(channel.sum).toBeGreaterThanOrEqual(0);
    expect(channel.sum).toBeLessThan(9 * 1);
    expect(broadcast.sum).toBeLessThan(2 * 1);
    expect(channel.bucket("+Inf")).toBe(9);
    expect(channel.bucket("1")).toBe(9);
  });

  it("does not observe what a join replays from history", async () => {
    const first = clients[1]!.events("tick")[0]!;
    const before = await scrape(metrics);
    const late = await TestClient.connect(cluster.ws[0]!, "proto");
    clients.push(late);
    const reply = await late.ok({
      command: {
        case: "join",
        value: { channel: ROOM, since: { offset: first.offset - 1n, epoch: first.epoch } },
      },
    });
    expect(reply.recovered).toBe(true);
    await received([late], "tick", 9);
    const after = await scrape(metrics);
    expect(latency(after, "channel").count).toBe(latency(before, "channel").count);
    expect(after.get("switchboard_deliveries_total")).toBeGreaterThan(before.get("switchboard_deliveries_total"));
  });

  it("shows a delivery held up at the edge as that long", async () => {
    const HOLD_MS = 400;
    const before = latency(await scrape(metrics), "channel");
    // The edge stops; the API accepts the event and hands it to the link; the edge writes it once it runs again.
    const edge = cluster.edges[0]!.child;
    edge.kill("SIGSTOP");
    try {
      await api.send({ channel: ROOM, event: "late", payload: json(0) });
      await sleep(HOLD_MS);
    } finally {
      edge.kill("SIGCONT");
    }
    await received(clients, "late", 1);
    const after = latency(await scrape(metrics), "channel");
    expect(after.count - before.count).toBe(1);
    expect(after.sum - before.sum).toBeGreaterThanOrEqual(HOLD_MS / 1000);
    expect(after.sum - before.sum).toBeLessThan(5);
    // Above the 250 ms bucket, within the 5 s one.
    expect(after.bucket("0.25") - before.bucket("0.25")).toBe(0);
    expect(after.bucket("5") - before.bucket("5")).toBe(1);
  });
});

describe.skipIf(NO_REDIS)("delivery latency, Redis", () => {
  let topology: Topology;
  let api: RealtimeTestClient;
  let metrics: string;
  const clients: TestClient[] = [];
  const prefix = uniquePrefix("delivery-latency");

  beforeAll(async () => {
    topology = await startTopology(1, 1, { REALTIME_REDIS_URL: testRedisUrl(), REALTIME_REDIS_PREFIX: prefix });
    api = realtimeClient(topology.grpc[0]!);
    metrics = `${httpOf(topology.ws[0]!)}/metrics`;
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    api?.close();
    await topology?.stop();
    await stopAll();
    await deletePrefix(prefix);
  });

  it("observes events published through the history script and plain broadcasts alike", async () => {
    const before = await scrape(metrics);
    for (const enc of ["json", "proto"] as const) {
      const c = await TestClient.connect(topology.ws[0]!, enc);
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: "latency-redis" } } });
    }
    for (let i = 0; i < 3; i++) await api.send({ channel: "latency-redis", event: "tick", payload: json({ i }) });
    await api.broadcast({ event: "notice", payload: json(1) });
    await received(clients, "tick", 3);
    await received(clients, "notice", 1);
    // The history script wrote the position in: every event has one.
    for (const e of clients[0]!.events("tick")) expect(e.offset).toBeGreaterThan(0n);

    const after = await scrape(metrics);
    const channel = latency(after, "channel");
    const broadcast = latency(after, "broadcast");
    expect(channel.count - latency(before, "channel").count).toBe(3);
    expect(broadcast.count - latency(before, "broadcast").count).toBe(1);
    expect(channel.sum).toBeGreaterThanOrEqual(0);
    expect(channel.sum).toBeLessThan(3 * 1);
    expect(broadcast.sum).toBeLessThan(1);
  });
});
