/**
 * Publications lost on the way to an edge (its link to the API, or its
 * Redis connections, cut by the network while the rest of the service goes
 * on) do not reach its clients as a silent gap: when the edge is back it
 * reads each channel's history after the last position it delivered and
 * hands its clients what they missed, in order, once, before anything
 * newer (docs/protocol.md, "Positions, recovery and history"). Real
 * processes on port 0; a TCP proxy cuts the edge's connections.
 */
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { Event } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, startProcess, stopAll, type Cluster, type Proc } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { NO_REDIS, eventually, testRedisUrl, uniquePrefix } from "./helpers/redis-topology.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";
import { TestClient } from "./helpers/ws-client.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
afterAll(() => stopAll());

const json = (n: number) => ({ case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } });
const numbers = (c: TestClient, channel: string) =>
  c
    .events("n")
    .filter((e) => e.channel === channel)
    .map((e: Event) => (e.payload.value as { kind: { value: number } }).kind.value);

async function client(url: string): Promise<TestClient> {
  const c = await TestClient.connect(url, "proto");
  cleanup.push(() => c.close());
  return c;
}

/**
 * A client behind the cut edge and a witness on another edge both join
 * `gap`; 2 events; the cut; 5 events while it lasts (the witness gets
 * them); the edge reconnects and hands the client the 5 with nothing newer
 * sent; 2 more. The client must hold 1..9, in order, once, and no Resync.
 */
async function loseAndRecover(
  api: RealtimeTestClient,
  cutEdge: string,
  witnessEdge: string,
  proxy: TcpProxy,
  backUp: () => Promise<void>,
): Promise<void> {
  const a = await client(cutEdge);
  const witness = await client(witnessEdge);
  for (const c of [a, witness]) await c.ok({ command: { case: "join", value: { channel: "gap" } } });
  for (let n = 1; n <= 2; n++) await api.send({ channel: "gap", event: "n", payload: json(n) });
  await eventually(() => numbers(a, "gap").length === 2, 5_000, "a has 2 events");
  proxy.cut();
  for (let n = 3; n <= 7; n++) await api.send({ channel: "gap", event: "n", payload: json(n) });
  await eventually(() => numbers(witness, "gap").length === 7, 5_000, "the witness has 7 events");
  expect(numbers(a, "gap")).toEqual([1, 2]);
  proxy.reopen();
  await backUp();
  // Nothing newer is needed to show the gap: the edge reads on from its last position.
  await eventually(() => numbers(a, "gap").length >= 7, 10_000, "a has the 5 it missed");
  for (let n = 8; n <= 9; n++) await api.send({ channel: "gap", event: "n", payload: json(n) });
  await eventually(() => numbers(a, "gap").length >= 9, 15_000, "a has 9 events");
  // A moment for anything doubled to show.
  await new Promise((r) => setTimeout(r, 200));
  expect(numbers(a, "gap")).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const offsets = a
    .events()
    .filter((e) => e.channel === "gap")
    .map((e) => e.offset);
  expect(offsets).toEqual([...offsets].sort((x, y) => (x < y ? -1 : 1)));
  expect(new Set(offsets).size).toBe(offsets.length);
  expect(a.frames.filter((f) => f.frame.case === "resync")).toEqual([]);
}

/** Waits until the edge's /ready answers 200 again. */
async function ready(edge: Proc): Promise<void> {
  await eventually(
    async () => (await fetch(`http://${edge.ready.ws!.replace(/^ws:\/\//, "")}/readyz`)).status === 200,
    15_000,
    "the edge is ready again",
  );
}

describe("an edge whose link was cut (embedded mode)", () => {
  it("fills its clients' gap from the hub's history once the link is back", async () => {
    const cluster: Cluster = await startCluster(1);
    cleanup.push(() => cluster.stop());
    const proxy = await TcpProxy.start(cluster.api.ready.link!);
    cleanup.push(() => proxy.close());
    const cut = await cluster.addEdge({ REALTIME_LINK_URL: proxy.address });
    const api = realtimeClient(cluster.grpc);
    cleanup.push(() => api.close());
    await loseAndRecover(api, cut.ready.ws!, cluster.ws[0]!, proxy, () => ready(cut));
  }, 60_000);
});

describe.skipIf(NO_REDIS)("an edge whose Redis connections were cut (Redis mode)", () => {
  it("fills its clients' gap from the history in Redis once it is back", async () => {
    const url = new URL(testRedisUrl());
    const proxy = await TcpProxy.start(`${url.hostname}:${url.port || 6379}`);
    cleanup.push(() => proxy.close());
    const env = {
      REALTIME_REDIS_URL: testRedisUrl(),
      REALTIME_REDIS_PREFIX: uniquePrefix("gaps"),
      REALTIME_GRPC_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_WS_PORT: "0",
    };
    const procs = await Promise.all([
      startProcess("api", env),
      startProcess("edge", env),
      startProcess("edge", { ...env, REALTIME_REDIS_URL: `redis://${proxy.address}` }),
    ]);
    cleanup.push(() => Promise.all(procs.map((p) => p.stop())).then(() => {}));
    const [apiProc, witness, cut] = procs as [Proc, Proc, Proc];
    const api = realtimeClient(apiProc.ready.grpc!);
    cleanup.push(() => api.close());
    await loseAndRecover(api, cut.ready.ws!, witness.ready.ws!, proxy, () => ready(cut));
  }, 60_000);
});
