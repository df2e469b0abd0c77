/**
 * Send throughput through the service on one Redis and on a Redis Cluster
 * of 3 masters, in one run: 2 API nodes and 2 edges each time (the cluster
 * in REALTIME_REDIS_MODE=cluster), CHANNELS channels (spread over the
 * cluster's slots by their names), one protobuf client per channel on each
 * edge, and THROUGHPUT_CONCURRENCY Sends in flight from each of 2 gRPC
 * clients (one per API node) for THROUGHPUT_MS. Reported per run: Sends
 * answered OK per second, deliveries counted at the clients per second,
 * and the CPU each Redis process used per Send. Then the Redis side alone:
 * one RedisBroker (what an API node publishes through: the history script,
 * which positions, keeps and SPUBLISHes each publication) publishing to
 * CHANNELS channels with BROKER_IN_FLIGHT publishes in flight for
 * THROUGHPUT_MS, publications per second. Runs alternate (one Redis,
 * cluster, one Redis, ...) so that the machine's noise falls on both.
 *
 *   npx tsx bench/redis-cluster.ts            (about 1 minute; --runs N)
 *
 * Prints Markdown; docs/scaling.md quotes it. Needs redis-server and
 * redis-cli. Small on purpose: two shared cores carry the clients, the
 * four processes and the Redis servers alike.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { readFileSync } from "node:fs";
import { EventSchema, ServerFrameSchema } from "../gen/realtime/client/v1/client_pb.js";
import { historyRules } from "../src/core/history-rules.js";
import { createPublication } from "../src/core/publication.js";
import { RedisBroker } from "../src/redis/broker-redis.js";
import { ClusterSubscriber } from "../src/redis/cluster-subscriber.js";
import { closeRedis, connectRedis, openRedis, openRedisCluster } from "../src/redis/connection.js";
import { startProcess, stopAll, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient } from "../test/helpers/grpc-client.js";
import { OwnRedisCluster } from "../test/helpers/redis-cluster.js";
import { TestClient } from "../test/helpers/ws-client.js";
import { ownRedis } from "./lib/own-redis.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const RUNS = arg("runs", 3);
const CHANNELS = 30;
const THROUGHPUT_MS = 5_000;
const THROUGHPUT_CONCURRENCY = 32;
const BROKER_IN_FLIGHT = 256;

/** CPU seconds (user + system) a process used so far. */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Result {
  sends: number;
  deliveries: number;
  redisCpuUsPerSend: number;
}

async function measure(url: string, mode: "standalone" | "cluster", redisPids: number[]): Promise<Result> {
  const env = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_REDIS_URL: url,
    REALTIME_REDIS_MODE: mode,
    REALTIME_REDIS_PREFIX: `bench-cluster-${Date.now()}:`,
  };
  const procs: Proc[] = await Promise.all([
    startProcess("api", env),
    startProcess("api", env),
    startProcess("edge", env),
    startProcess("edge", env),
  ]);
  const [api0, api1, edge0, edge1] = procs as [Proc, Proc, Proc, Proc];
  let deliveries = 0;
  const clients: TestClient[] = [];
  for (let ch = 0; ch < CHANNELS; ch++)
    for (const edge of [edge0, edge1]) {
      const c = await TestClient.connect(edge.ready.ws!, "proto");
      await c.ok({ command: { case: "join", value: { channel: `ch-${ch}` } } });
      c.ws.removeAllListeners("message");
      c.ws.on("message", (data: Buffer) => {
        const f = fromBinary(ServerFrameSchema, data);
        if (f.frame.case === "event" && f.frame.value.event === "t") deliveries++;
      });
      clients.push(c);
    }
  const apis = [api0, api1].map((p) => realtimeClient(p.ready.grpc!));
  const value = create(ValueSchema, { kind: { case: "stringValue", value: "x".repeat(200) } });
  let sends = 0;
  let n = 0;
  const cpuBefore = redisPids.map(cpuOf);
  const until = Date.now() + THROUGHPUT_MS;
  await Promise.all(
    apis.flatMap((api) =>
      Array.from({ length: THROUGHPUT_CONCURRENCY }, async () => {
        while (Date.now() < until) {
          await api.send({ channel: `ch-${n++ % CHANNELS}`, event: "t", payload: { case: "json", value } });
          sends++;
        }
      }),
    ),
  );
  const redisCpu = redisPids.reduce((sum, pid, i) => sum + cpuOf(pid) - cpuBefore[i]!, 0);
  await new Promise((r) => setTimeout(r, 500));
  for (const api of apis) api.close();
  await Promise.all(clients.map((c) => c.close()));
  await stopAll();
  const seconds = THROUGHPUT_MS / 1000;
  return { sends: sends / seconds, deliveries: deliveries / seconds, redisCpuUsPerSend: (redisCpu / sends) * 1e6 };
}

/** Publications per second through one RedisBroker, with history (the default: 100 kept, 2 minutes). */
async function brokerRate(
  url: string,
  mode: "standalone" | "cluster",
  redisPids: number[],
): Promise<{ rate: number; redisUs: number; clientUs: number }> {
  const prefix = `bench-cluster-broker-${Date.now()}:`;
  const command = mode === "cluster" ? openRedisCluster(url, "bench") : openRedis(url, "bench");
  const subscriber =
    mode === "cluster" && "nodes" in command
      ? new ClusterSubscriber(command, url, "bench:sub")
      : openRedis(url, "bench:sub");
  await connectRedis(command, 10_000);
  await connectRedis(subscriber, 10_000);
  const broker = new RedisBroker({
    command,
    subscriber,
    cluster: mode === "cluster",
    prefix,
    edge: false,
    history: historyRules(100, 120_000, []),
  });
  await broker.start();
  const value = create(ValueSchema, { kind: { case: "stringValue", value: "x".repeat(200) } });
  const pubs = Array.from({ length: CHANNELS }, (_, ch) =>
    createPublication(
      create(EventSchema, { channel: `ch-${ch}`, event: "t", payload: { case: "json", value } }),
      Infinity,
    ),
  );
  let published = 0;
  let n = 0;
  const redisBefore = redisPids.map(cpuOf);
  const clientBefore = process.cpuUsage();
  const until = Date.now() + THROUGHPUT_MS;
  await Promise.all(
    Array.from({ length: BROKER_IN_FLIGHT }, async () => {
      while (Date.now() < until) {
        await broker.publish(pubs[n++ % CHANNELS]!);
        published++;
      }
    }),
  );
  const redisCpu = redisPids.reduce((sum, pid, i) => sum + cpuOf(pid) - redisBefore[i]!, 0);
  const client = process.cpuUsage(clientBefore);
  broker.close();
  await Promise.all([closeRedis(command), closeRedis(subscriber)]);
  return {
    rate: published / (THROUGHPUT_MS / 1000),
    redisUs: (redisCpu / published) * 1e6,
    clientUs: (client.user + client.system) / published,
  };
}

async function main(): Promise<void> {
  const single = await ownRedis();
  const cluster = new OwnRedisCluster();
  await cluster.start();
  const clusterPids = cluster.pids();
  const results: Record<"standalone" | "cluster", Result[]> = { standalone: [], cluster: [] };
  const rates: Record<"standalone" | "cluster", { rate: number; redisUs: number; clientUs: number }[]> = {
    standalone: [],
    cluster: [],
  };
  try {
    for (let run = 0; run < RUNS; run++) {
      results.standalone.push(await measure(single.url, "standalone", [single.child.pid!]));
      results.cluster.push(await measure(cluster.url, "cluster", clusterPids));
      rates.standalone.push(await brokerRate(single.url, "standalone", [single.child.pid!]));
      rates.cluster.push(await brokerRate(cluster.url, "cluster", clusterPids));
      console.error(`run ${run + 1} of ${RUNS} done`);
    }
  } finally {
    single.child.kill("SIGKILL");
    await cluster.stop();
  }
  const row = (name: string, rs: Result[]) => {
    const f = (pick: (r: Result) => number, digits = 0) =>
      `${median(rs.map(pick)).toFixed(digits)} (${rs.map((r) => pick(r).toFixed(digits)).join(", ")})`;
    return `| ${name} | ${f((r) => r.sends)} | ${f((r) => r.deliveries)} | ${f((r) => r.redisCpuUsPerSend, 1)} |`;
  };
  console.log(
    `${CHANNELS} channels × 2 members (one per edge), 2 API nodes × ${THROUGHPUT_CONCURRENCY} Sends in flight, ${THROUGHPUT_MS / 1000} s per run; medians of ${RUNS} (each run)\n`,
  );
  console.log("| Redis | Sends OK/s | deliveries/s | Redis CPU µs per Send (all its processes) |");
  console.log("|---|---|---|---|");
  console.log(row("one redis-server", results.standalone));
  console.log(row("Redis Cluster, 3 masters", results.cluster));
  const ratio = median(results.cluster.map((r) => r.sends)) / median(results.standalone.map((r) => r.sends));
  console.log(`\ncluster ÷ one Redis, Sends OK/s: ${ratio.toFixed(2)}×`);
  const f = (xs: number[], digits = 0) =>
    `${median(xs).toFixed(digits)} (${xs.map((x) => x.toFixed(digits)).join(", ")})`;
  console.log(
    `\nOne RedisBroker (the publish path of an API node), ${BROKER_IN_FLIGHT} publishes in flight over ${CHANNELS} channels with history:\n`,
  );
  console.log(
    "| Redis | publications/s | Redis CPU µs per publication (all its processes) | client CPU µs per publication |",
  );
  console.log("|---|---|---|---|");
  for (const [name, rs] of [
    ["one redis-server", rates.standalone],
    ["Redis Cluster, 3 masters", rates.cluster],
  ] as const)
    console.log(
      `| ${name} | ${f(rs.map((r) => r.rate))} | ${f(
        rs.map((r) => r.redisUs),
        1,
      )} | ${f(
        rs.map((r) => r.clientUs),
        1,
      )} |`,
    );
}

await main();
process.exit(0);
