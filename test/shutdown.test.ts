/**
 * Graceful shutdown on SIGTERM. An edge, in the middle of a broadcast:
 * stops accepting, closes every client with 4000 spread over the window
 * (no reconnect storm), each client's events stay in order without gaps up
 * to its close, and the process exits before its deadline. The API:
 * reports NOT_SERVING, answers new calls UNAVAILABLE, ends streams with
 * UNAVAILABLE, and exits before its deadline.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { startCluster, startProcess, stopAll } from "./helpers/cluster.js";
import { upgrade } from "./helpers/trust.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const SPREAD = 1_000;
const DEADLINE = 4_000;
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

afterAll(async () => {
  await stopAll();
});

describe("edge", () => {
  it("on SIGTERM during a broadcast: 4000 to every client, spread over the window, events in order, exit before the deadline", async () => {
    const cluster = await startCluster(1, {
      REALTIME_SHUTDOWN_SPREAD_MS: String(SPREAD),
      REALTIME_SHUTDOWN_TIMEOUT_MS: String(DEADLINE),
    });
    const rt = createClient(Realtime, createGrpcTransport({ baseUrl: `http://${cluster.grpc}` }));
    const clients = await Promise.all(
      Array.from({ length: 6 }, (_, i) => TestClient.connect(cluster.ws[0]!, i % 2 ? "proto" : "json")),
    );
    const closedAt = new Map<TestClient, number>();
    for (const c of clients) void c.closed.then(() => closedAt.set(c, Date.now()));

    let broadcasting = true;
    let sent = 0;
    const broadcaster = (async () => {
      while (broadcasting) {
        try {
          await rt.broadcast({ event: "tick", payload: json(sent) });
          sent++;
        } catch {
          // UNAVAILABLE once the edge is gone.
        }
        await sleep(5);
      }
    })();
    await clients[0]!.event("tick");
    await sleep(100);

    const edge = cluster.edges[0]!;
    const exited = new Promise<number>((resolve) => edge.child.once("exit", () => resolve(Date.now())));
    const signalled = Date.now();
    edge.child.kill("SIGTERM");
    await sleep(100);
    // It stopped accepting at once.
    const late = await upgrade(cluster.ws[0]!).catch((err: Error) => ({ status: 0, body: err.message }));
    expect(late.status === 503 || /ECONNREFUSED/.test(late.body), `late connection: ${late.status} ${late.body}`).toBe(
      true,
    );

    await Promise.all(clients.map((c) => c.closed));
    const exitAt = await exited;
    broadcasting = false;
    await broadcaster;

    for (const c of clients) {
      expect(c.closeCode).toBe(4000);
      const ticks = c
        .events("tick")
        .map((e) => (e.payload.case === "json" ? (e.payload.value.kind.value as number) : -1));
      expect(ticks.length).toBeGreaterThan(0);
      // In order and without gaps from its first event to its close.
      expect(ticks).toEqual(Array.from({ length: ticks.length }, (_, i) => ticks[0]! + i));
    }
    const times = [...closedAt.values()].sort((a, b) => a - b);
    expect(times[times.length - 1]! - times[0]!, "closes spread over the window").toBeGreaterThan(SPREAD / 3);
    expect(times[times.length - 1]! - signalled).toBeLessThan(SPREAD + 1_000);
    expect(exitAt - signalled, "exit before the deadline").toBeLessThan(DEADLINE);
    expect(edge.child.exitCode).toBe(0);
    await cluster.stop();
  }, 60_000);
});

describe("API", () => {
  it("on SIGTERM: NOT_SERVING, new calls UNAVAILABLE (gRPC and Connect), streams end UNAVAILABLE, exit before the deadline", async () => {
    const api = await startProcess("api", {
      REALTIME_GRPC_PORT: "0",
      REALTIME_LINK_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_SHUTDOWN_DRAIN_MS: "1500",
      REALTIME_SHUTDOWN_TIMEOUT_MS: String(DEADLINE),
    });
    const transport = createGrpcTransport({ baseUrl: `http://${api.ready.grpc}` });
    const rt = createClient(Realtime, transport);
    const health = createClient(Health, transport);
    const connectRt = createClient(
      Realtime,
      createConnectTransport({ baseUrl: `http://${api.ready.http}`, httpVersion: "1.1" }),
    );
    expect((await connectRt.getMembers({ channel: "c" })).members).toEqual([]);
    expect((await health.check({ service: "" })).status).toBe(1); // SERVING
    expect((await rt.getMembers({ channel: "c" })).members).toEqual([]);
    // A stream in flight.
    const watch = (async () => {
      for await (const _ of rt.watchChannel({ channel: "c" }));
    })().then(
      () => "ended",
      (err) => ConnectError.from(err).code,
    );
    await sleep(200);

    const exited = new Promise<number>((resolve) => api.child.once("exit", () => resolve(Date.now())));
    const signalled = Date.now();
    api.child.kill("SIGTERM");
    await sleep(300);
    expect((await health.check({ service: "" })).status).toBe(2); // NOT_SERVING
    const refused = await rt.getMembers({ channel: "c" }).then(
      () => "ok",
      (err) => ConnectError.from(err),
    );
    expect(refused).toMatchObject({ code: Code.Unavailable, rawMessage: expect.stringMatching(/shutting down/) });
    // The same on Connect.
    const overConnect = await connectRt.getMembers({ channel: "c" }).then(
      () => "ok",
      (err) => ConnectError.from(err),
    );
    expect(overConnect).toMatchObject({ code: Code.Unavailable, rawMessage: expect.stringMatching(/shutting down/) });
    expect(await watch).toBe(Code.Unavailable);
    const exitAt = await exited;
    expect(exitAt - signalled).toBeLessThan(DEADLINE);
    expect(api.child.exitCode).toBe(0);
    await api.stop();
  }, 30_000);
});
