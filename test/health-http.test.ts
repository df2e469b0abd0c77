/**
 * /healthz and /readyz on both roles, against real processes: ready once
 * started, 503 while an edge is still starting or has lost its link, and
 * 503 "draining" for the drain period after SIGTERM while the process is
 * still alive (REALTIME_SHUTDOWN_DRAIN_MS), with gRPC health following.
 */
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../gen/grpc/health/v1/health_pb.js";
import { serviceDefinition } from "../src/api/grpc/adapter.js";
import { startCluster, startProcess, stopAll, type Proc } from "./helpers/cluster.js";
import { freePort } from "./helpers/net.js";
import { httpOf, scrape } from "./helpers/prom.js";
import { NO_REDIS, testRedisUrl } from "./helpers/redis-topology.js";
import { sleep } from "./helpers/ws-client.js";

/** See until(). 8 s failed once on a fresh clone's first run (6.5-7.7 s used alone, most of it the edge's start). */
const UNTIL_TIMEOUT_MS = 20_000;
/**
 * The drain of the first test: what it checks while a process drains (four
 * calls) must fit in it, on a loaded machine too; 1.5 s left little room.
 */
const DRAIN_MS = 4_000;
/** Each test starts processes and waits on drains and on Redis: more than the default 30 s on a loaded machine. */
const TEST_TIMEOUT_MS = 60_000;

afterAll(async () => {
  await stopAll();
});

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

/**
 * Polls url until its answer matches, or fails with the last answer. The
 * budget covers a process's start on a loaded machine (tsx compiles the
 * source first): it only bounds a failure, a pass takes what it takes.
 */
async function until(url: string, status: number, body: RegExp, timeoutMs = UNTIL_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await get(url);
      if (res.status === status && body.test(res.body)) return;
      last = `${res.status} ${res.body}`;
    } catch (err) {
      last = String(err);
    }
    await sleep(50);
  }
  throw new Error(`${url} did not answer ${status} ${body} within ${timeoutMs} ms; last: ${last}`);
}

function exited(proc: Proc): Promise<number | null> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return Promise.resolve(proc.child.exitCode);
  return new Promise((resolve) => proc.child.once("exit", (code) => resolve(code)));
}

function healthCheck(address: string): Promise<ServingStatus> {
  const Client = grpc.makeGenericClientConstructor(serviceDefinition(Health), "Health");
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client &
    Record<string, Function>;
  return new Promise<ServingStatus>((resolve, reject) =>
    client.check!(
      create(HealthCheckRequestSchema, { service: "" }),
      new grpc.Metadata(),
      { deadline: Date.now() + 2_000 },
      (err: grpc.ServiceError | null, res: HealthCheckResponse) => {
        client.close();
        if (err) reject(err);
        else resolve(res.status);
      },
    ),
  );
}

describe("health over HTTP", () => {
  it(
    "readiness flips during drain on the API and the edge; an edge without its link is alive but not ready",
    async () => {
      const cluster = await startCluster(1, {
        REALTIME_SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
        REALTIME_SHUTDOWN_TIMEOUT_MS: String(DRAIN_MS + 10_000),
        REALTIME_SHUTDOWN_SPREAD_MS: "0",
      });
      const apiHttp = `http://${cluster.api.ready.http}`;
      const edgeHttp = httpOf(cluster.ws[0]!);
      try {
        for (const base of [apiHttp, edgeHttp]) {
          expect(await get(`${base}/healthz`)).toEqual({ status: 200, body: "ok\n" });
          expect(await get(`${base}/readyz`)).toEqual({ status: 200, body: "ready\n" });
        }
        expect(await healthCheck(cluster.grpc)).toBe(ServingStatus.SERVING);

        // The API drains: not ready (HTTP and gRPC health) while still alive, then gone.
        const apiExit = exited(cluster.api);
        cluster.api.child.kill("SIGTERM");
        await until(`${apiHttp}/readyz`, 503, /^not ready: draining\n$/);
        expect((await get(`${apiHttp}/healthz`)).status).toBe(200);
        expect((await scrape(`${apiHttp}/metrics`)).get("switchboard_ready")).toBe(0);
        expect(await healthCheck(cluster.grpc)).toBe(ServingStatus.NOT_SERVING);
        expect(cluster.api.child.exitCode).toBeNull();
        expect(await apiExit).toBe(0);

        // Its edge lost the link: alive, not ready, and the metrics say why.
        await until(`${edgeHttp}/readyz`, 503, /^not ready: link down\n$/);
        expect((await get(`${edgeHttp}/healthz`)).status).toBe(200);
        const m = await scrape(`${edgeHttp}/metrics`);
        expect(m.get("switchboard_backend_up", { backend: "link" })).toBe(0);
        expect(m.get("switchboard_ready")).toBe(0);

        // The edge drains too.
        const edge = cluster.edges[0]!;
        const edgeExit = exited(edge);
        edge.child.kill("SIGTERM");
        await until(`${edgeHttp}/readyz`, 503, /^not ready: draining\n$/);
        expect(edge.child.exitCode).toBeNull();
        expect(await edgeExit).toBe(0);
      } finally {
        await cluster.stop();
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "an edge is not ready while it starts (waiting for its link)",
    async () => {
      const wsPort = await freePort();
      const deadLink = await freePort(); // nothing listens there
      const starting = startProcess("edge", {
        REALTIME_WS_PORT: String(wsPort),
        REALTIME_LINK_URL: `127.0.0.1:${deadLink}`,
      });
      await until(`http://127.0.0.1:${wsPort}/readyz`, 503, /^not ready: starting\n$/);
      expect((await get(`http://127.0.0.1:${wsPort}/healthz`)).status).toBe(200);
      const edge = await starting;
      try {
        expect(await get(`http://127.0.0.1:${wsPort}/readyz`)).toEqual({ status: 503, body: "not ready: link down\n" });
      } finally {
        await edge.stop();
      }
    },
    TEST_TIMEOUT_MS,
  );

  it.skipIf(NO_REDIS)(
    "with Redis, a process is ready only while Redis is reachable",
    async () => {
      const deadRedis = `redis://127.0.0.1:${await freePort()}`;
      const prefix = `health-${process.pid}-${Date.now()}:`;
      const cut = await startProcess("api", {
        REALTIME_GRPC_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_REDIS_URL: deadRedis,
        REALTIME_REDIS_PREFIX: prefix,
      });
      const live = await startProcess("api", {
        REALTIME_GRPC_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_REDIS_URL: testRedisUrl(),
        REALTIME_REDIS_PREFIX: prefix,
      });
      try {
        expect(await get(`http://${cut.ready.http}/readyz`)).toEqual({ status: 503, body: "not ready: redis down\n" });
        expect(
          (await scrape(`http://${cut.ready.http}/metrics`)).get("switchboard_backend_up", { backend: "redis" }),
        ).toBe(0);
        expect(await healthCheck(cut.ready.grpc!)).toBe(ServingStatus.NOT_SERVING);
        await until(`http://${live.ready.http}/readyz`, 200, /^ready\n$/);
        expect(
          (await scrape(`http://${live.ready.http}/metrics`)).get("switchboard_backend_up", { backend: "redis" }),
        ).toBe(1);
      } finally {
        await Promise.all([cut.stop(), live.stop()]);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it("answers only GET and HEAD on its paths, and leaves other paths alone", async () => {
    const cluster = await startCluster(1);
    try {
      const edgeHttp = httpOf(cluster.ws[0]!);
      const post = await fetch(`${edgeHttp}/metrics`, { method: "POST" });
      expect(post.status).toBe(405);
      const head = await fetch(`${edgeHttp}/readyz`, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(await head.text()).toBe("");
      expect((await get(`${edgeHttp}/readyz?verbose=1`)).status).toBe(200);
      expect((await get(`${edgeHttp}/other`)).status).toBe(426);
      const metrics = await fetch(`http://${cluster.api.ready.http}/metrics`);
      expect(metrics.headers.get("content-type")).toContain("text/plain");
    } finally {
      await cluster.stop();
    }
  });
});
