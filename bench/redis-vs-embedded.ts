/**
 * Send -> receive latency and Send throughput through the embedded mode
 * (one API with its link, two edges) and through Redis (two API nodes, two
 * edges, a redis-server of this run's own), in one run, plus what one Redis
 * carries by itself and the Redis operations each call costs (from INFO
 * commandstats). Small on purpose: the machine has two shared cores.
 *
 *   npx tsx bench/redis-vs-embedded.ts            (about 40 s)
 *
 * Prints a Markdown table; docs/scaling.md quotes it.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Redis } from "ioredis";
import { performance } from "node:perf_hooks";
import { ServerFrameSchema } from "../gen/realtime/client/v1/client_pb.js";
import { PublicationSchema } from "../gen/realtime/link/v1/link_pb.js";
import { startProcess, stopAll, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "../test/helpers/grpc-client.js";
import { freePort, OwnRedis } from "../test/helpers/redis-topology.js";
import { TestClient } from "../test/helpers/ws-client.js";

const CLIENTS = 10;
const LATENCY_SENDS = 300;
const THROUGHPUT_MS = 3_000;
const THROUGHPUT_CONCURRENCY = 16;
const RAW_REDIS_MS = 2_000;
const CHANNEL = "bench";

interface Result {
  mode: string;
  p50: number;
  p99: number;
  sendsPerSecond: number;
  deliveriesPerSecond: number;
}

/** Counts events per client from raw frames (no per-frame bookkeeping beyond a decode). */
async function subscribers(ws: string[], onEvent: (sentAt: number) => void): Promise<TestClient[]> {
  const clients: TestClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const c = await TestClient.connect(ws[i % ws.length]!, "proto");
    await c.ok({ command: { case: "join", value: { channel: CHANNEL } } });
    c.ws.removeAllListeners("message");
    c.ws.on("message", (data: Buffer) => {
      const f = fromBinary(ServerFrameSchema, data);
      if (f.frame.case === "event" && f.frame.value.event === "t" && f.frame.value.payload.case === "binary") {
        onEvent(Buffer.from(f.frame.value.payload.value).readDoubleLE(0));
      }
    });
    clients.push(c);
  }
  return clients;
}

function stamp(): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(performance.now(), 0);
  return b;
}

async function measure(mode: string, apis: RealtimeTestClient[], ws: string[]): Promise<Result> {
  let latencies: number[] = [];
  let deliveries = 0;
  const clients = await subscribers(ws, (sentAt) => {
    latencies.push(performance.now() - sentAt);
    deliveries++;
  });
  // Warm up, then sequential Sends: each one's latency to every client.
  for (let i = 0; i < 50; i++)
    await apis[i % apis.length]!.send({ channel: CHANNEL, event: "t", payload: { case: "binary", value: stamp() } });
  await new Promise((r) => setTimeout(r, 200));
  latencies = [];
  for (let i = 0; i < LATENCY_SENDS; i++) {
    await apis[i % apis.length]!.send({ channel: CHANNEL, event: "t", payload: { case: "binary", value: stamp() } });
  }
  await new Promise((r) => setTimeout(r, 300));
  const sorted = [...latencies].sort((a, b) => a - b);
  const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

  // Throughput: THROUGHPUT_CONCURRENCY Sends in flight, spread over the API nodes.
  deliveries = 0;
  let sends = 0;
  const end = performance.now() + THROUGHPUT_MS;
  await Promise.all(
    Array.from({ length: THROUGHPUT_CONCURRENCY }, async (_, w) => {
      while (performance.now() < end) {
        await apis[w % apis.length]!.send({
          channel: CHANNEL,
          event: "t",
          payload: { case: "binary", value: stamp() },
        });
        sends++;
      }
    }),
  );
  const elapsed = (performance.now() - (end - THROUGHPUT_MS)) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  for (const c of clients) c.ws.close();
  return {
    mode,
    p50: p(0.5),
    p99: p(0.99),
    sendsPerSecond: sends / elapsed,
    deliveriesPerSecond: deliveries / elapsed,
  };
}

/** Pipelined SPUBLISH of a typical publication to a channel two connections subscribe to. */
async function rawRedis(url: string): Promise<{ perSecond: number; bytes: number }> {
  const pub = new Redis(url);
  const subs = [new Redis(url), new Redis(url)];
  let received = 0;
  for (const s of subs) {
    await s.ssubscribe("raw");
    s.on("smessageBuffer", () => received++);
  }
  const bytes = Buffer.from(
    toBinary(
      PublicationSchema,
      create(PublicationSchema, {
        channel: "room",
        event: new Uint8Array(120),
        eventJson: "x".repeat(160),
        origin: "",
      }),
    ),
  );
  let sent = 0;
  const end = performance.now() + RAW_REDIS_MS;
  while (performance.now() < end) {
    const p = pub.pipeline();
    for (let i = 0; i < 200; i++) p.spublish("raw", bytes);
    await p.exec();
    sent += 200;
  }
  await new Promise((r) => setTimeout(r, 300));
  pub.disconnect();
  for (const s of subs) s.disconnect();
  if (received < sent * 2 * 0.99) throw new Error(`raw Redis: ${received} of ${sent * 2} received`);
  return { perSecond: sent / (RAW_REDIS_MS / 1000), bytes: bytes.length };
}

/** Redis commands (script bodies included) run while fn runs. */
async function opsDuring(redis: Redis, fn: () => Promise<number>): Promise<number> {
  const count = async () => {
    const info = await redis.info("commandstats");
    let calls = 0;
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
      if (!["info", "ping"].includes(m[1]!)) calls += Number(m[2]);
    return calls;
  };
  const before = await count();
  const n = await fn();
  const after = await count();
  return (after - before) / n;
}

async function main(): Promise<void> {
  const common = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_LOG_LEVEL: "error",
  };
  const results: Result[] = [];
  const procs: Proc[] = [];
  try {
    // Embedded: one API (the hub), two edges.
    const api = await startProcess("api", common);
    procs.push(api);
    const edges = await Promise.all(
      [0, 1].map(() => startProcess("edge", { ...common, REALTIME_LINK_URL: api.ready.link })),
    );
    procs.push(...edges);
    const client = realtimeClient(api.ready.grpc!);
    results.push(
      await measure(
        "embedded (1 API, 2 edges)",
        [client],
        edges.map((e) => e.ready.ws!),
      ),
    );
    client.close();
    await Promise.all(procs.splice(0).map((p) => p.stop()));

    // Redis: two API nodes, two edges, a Redis of this run's own.
    const redis = new OwnRedis(await freePort());
    await redis.start();
    try {
      const env = { ...common, REALTIME_REDIS_URL: redis.url, REALTIME_REDIS_PREFIX: "bench:" };
      const rprocs = await Promise.all([
        startProcess("api", env),
        startProcess("api", env),
        startProcess("edge", env),
        startProcess("edge", env),
      ]);
      procs.push(...rprocs);
      const clients = rprocs.slice(0, 2).map((p) => realtimeClient(p.ready.grpc!));
      results.push(
        await measure(
          "Redis (2 API nodes, 2 edges)",
          clients,
          rprocs.slice(2).map((e) => e.ready.ws!),
        ),
      );

      // Redis operations per call, with the processes idle otherwise.
      const admin = new Redis(redis.url);
      const perSend = await opsDuring(admin, async () => {
        for (let i = 0; i < 200; i++)
          await clients[0]!.send({ channel: "ops", event: "t", payload: { case: "binary", value: stamp() } });
        return 200;
      });
      const perGetMembers = await opsDuring(admin, async () => {
        for (let i = 0; i < 200; i++) await clients[0]!.getMembers({ channel: CHANNEL });
        return 200;
      });
      const joiners: TestClient[] = [];
      const perJoin = await opsDuring(admin, async () => {
        for (let i = 0; i < 50; i++) {
          const c = await TestClient.connect(rprocs[2]!.ready.ws!, "proto");
          joiners.push(c);
          await c.ok({ command: { case: "join", value: { channel: "joins" } } });
        }
        return 50;
      });
      for (const c of joiners) await c.close();
      admin.disconnect();
      for (const c of clients) c.close();
      await Promise.all(procs.splice(0).map((p) => p.stop()));

      const raw = await rawRedis(redis.url);
      console.log(
        `\n| mode | Send->receive p50 | p99 | Sends/s (${THROUGHPUT_CONCURRENCY} in flight) | deliveries/s (${CLIENTS} clients) |`,
      );
      console.log("|---|---|---|---|---|");
      for (const r of results) {
        console.log(
          `| ${r.mode} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${Math.round(r.sendsPerSecond)} | ${Math.round(r.deliveriesPerSecond)} |`,
        );
      }
      console.log(
        `\nOne Redis, pipelined SPUBLISH of a ${raw.bytes}-byte publication to 2 subscribers: ${Math.round(raw.perSecond)} publications/s (${Math.round(raw.perSecond * 2)} deliveries/s).`,
      );
      console.log(
        `Redis commands per call (scripts count their inner commands too): Send ${perSend.toFixed(2)}, join ${perJoin.toFixed(2)} (with the edge's heartbeats and sweeps of the time), GetMembers ${perGetMembers.toFixed(2)}.`,
      );
    } finally {
      await redis.kill();
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await stopAll();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
