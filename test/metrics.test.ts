/**
 * The metrics move as traffic flows: a real API and edge, ten WebSocket
 * clients, a Send through the gRPC API, and /metrics scraped before and
 * after on both processes. Also: disconnect reasons, RPC codes, and that no
 * channel or connection id ever becomes a label.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { httpOf, scrape } from "./helpers/prom.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

let cluster: Cluster;
let api: RealtimeTestClient;
let edgeMetrics: string;
let apiMetrics: string;
const clients: TestClient[] = [];
const CHANNEL = "metrics-room-7f3a";

beforeAll(async () => {
  cluster = await startCluster(1);
  api = realtimeClient(cluster.grpc);
  edgeMetrics = `${httpOf(cluster.ws[0]!)}/metrics`;
  apiMetrics = `http://${cluster.api.ready.http}/metrics`;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  api?.close();
  await cluster?.stop();
  await stopAll();
});

/** Polls until check passes (the edge counts a close after the client sees it). */
async function eventually(check: () => Promise<void>, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
}

describe("metrics", () => {
  it("count connections, members, deliveries and RPCs as a Send reaches 10 clients", async () => {
    const edge0 = await scrape(edgeMetrics);
    const api0 = await scrape(apiMetrics);
    expect(edge0.get("switchboard_connections")).toBe(0);

    for (let i = 0; i < 10; i++) {
      const c = await TestClient.connect(cluster.ws[0]!, i % 2 ? "json" : "proto");
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: CHANNEL } } });
    }
    const edge1 = await scrape(edgeMetrics);
    expect(edge1.get("switchboard_connections")).toBe(10);
    expect(edge1.get("switchboard_members")).toBe(10);
    expect(edge1.get("switchboard_channels")).toBe(1);
    expect(edge1.get("switchboard_connections_opened_total") - edge0.get("switchboard_connections_opened_total")).toBe(
      10,
    );
    expect(edge1.get("switchboard_connections_opened_total", { encoding: "realtime.v1.json" })).toBe(5);
    expect(edge1.get("switchboard_messages_in_total", { kind: "join" })).toBe(10);

    const res = await api.send({
      channel: CHANNEL,
      event: "tick",
      payload: { case: "json", value: fromJson(ValueSchema, { n: 1 }) },
    });
    expect(res.edges).toBe(1);
    await Promise.all(clients.map((c) => c.event("tick", CHANNEL)));

    const edge2 = await scrape(edgeMetrics);
    expect(edge2.get("switchboard_deliveries_total") - edge1.get("switchboard_deliveries_total")).toBe(10);
    expect(
      edge2.get("switchboard_messages_out_total", { kind: "event" }) -
        edge1.get("switchboard_messages_out_total", { kind: "event" }),
    ).toBe(10);
    expect(
      edge2.get("switchboard_publications_received_total") - edge1.get("switchboard_publications_received_total"),
    ).toBe(1);
    expect(edge2.get("switchboard_backend_up", { backend: "link" })).toBe(1);
    expect(edge2.get("switchboard_ready")).toBe(1);

    const api1 = await scrape(apiMetrics);
    const sendOk = { service: "realtime.v1.Realtime", method: "Send", code: "OK" };
    expect(
      api1.get("switchboard_rpc_handled_total", sendOk) -
        (api0.samples.some((s) => s.name === "switchboard_rpc_handled_total" && s.labels.method === "Send")
          ? api0.get("switchboard_rpc_handled_total", sendOk)
          : 0),
    ).toBe(1);
    expect(api1.get("switchboard_rpc_duration_seconds_count", sendOk)).toBeGreaterThanOrEqual(1);
    expect(
      api1.get("switchboard_hub_publications_total", { scope: "channel" }) -
        api0.get("switchboard_hub_publications_total", { scope: "channel" }),
    ).toBeGreaterThanOrEqual(1);
    expect(api1.get("switchboard_hub_edges")).toBe(1);
    expect(api1.get("switchboard_hub_channels")).toBe(1);
    expect(api1.get("switchboard_ready")).toBe(1);
  });

  it("count a failed RPC under its status code", async () => {
    await expect(
      api.send({ channel: "", event: "tick", payload: { case: "json", value: fromJson(ValueSchema, 1) } }),
    ).rejects.toMatchObject({ code: 3 });
    const after = await scrape(apiMetrics);
    expect(after.get("switchboard_rpc_handled_total", { method: "Send", code: "INVALID_ARGUMENT" })).toBe(1);
  });

  it("count disconnects by reason and lower the levels", async () => {
    const before = await scrape(edgeMetrics);
    await clients.pop()!.close();
    await eventually(async () => {
      const after = await scrape(edgeMetrics);
      expect(
        after.get("switchboard_disconnects_total", { reason: "client" }) -
          before.get("switchboard_disconnects_total", { reason: "client" }),
      ).toBe(1);
      expect(after.get("switchboard_connections")).toBe(9);
      expect(after.get("switchboard_members")).toBe(9);
    });
  });

  it("count RPCs made over Connect like those over gRPC", async () => {
    const before = await scrape(apiMetrics);
    const sendOk = { service: "realtime.v1.Realtime", method: "Send", code: "OK" };
    const res = await fetch(`http://${cluster.api.ready.http}/realtime.v1.Realtime/Send`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ channel: CHANNEL, event: "tick", json: { n: 2 } }),
    });
    expect(res.status).toBe(200);
    const after = await scrape(apiMetrics);
    expect(
      after.get("switchboard_rpc_handled_total", sendOk) - before.get("switchboard_rpc_handled_total", sendOk),
    ).toBe(1);
  });

  it("count client commands answered with an error, by code", async () => {
    const before = await scrape(edgeMetrics);
    const reply = await clients[0]!.request({ command: { case: "join", value: { channel: "bad channel name!" } } });
    expect(reply.error?.code).toBe(3);
    const after = await scrape(edgeMetrics);
    const key = { code: "INVALID_ARGUMENT" };
    const was = before.samples.some(
      (s) => s.name === "switchboard_command_errors_total" && s.labels.code === "INVALID_ARGUMENT",
    )
      ? before.get("switchboard_command_errors_total", key)
      : 0;
    expect(after.get("switchboard_command_errors_total", key) - was).toBe(1);
    expect(after.text).not.toContain("bad channel name");
  });

  it("count refused upgrades by reason", async () => {
    const before = await scrape(edgeMetrics);
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(cluster.ws[0]!, "chat.v9");
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => reject(new Error("the upgrade was accepted")));
      ws.on("error", () => {});
    });
    expect(refused).toBe(400);
    const after = await scrape(edgeMetrics);
    expect(
      after.get("switchboard_connections_refused_total", { reason: "protocol" }) -
        before.get("switchboard_connections_refused_total", { reason: "protocol" }),
    ).toBe(1);
  });

  it("never label a series with a channel or a connection id", async () => {
    for (const url of [edgeMetrics, apiMetrics]) {
      const { text } = await scrape(url);
      expect(text).not.toContain(CHANNEL);
      for (const c of clients) expect(text).not.toContain(c.id);
    }
  });
});
