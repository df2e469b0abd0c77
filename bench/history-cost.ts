/**
 * What positions and history cost end to end, in the embedded mode (one API
 * with its hub, one edge) and, with --redis URL, in the Redis mode (one API
 * node, one edge, under a prefix of this run's own):
 *
 * 1. Send: sequential unary Sends to a channel of CLIENTS members, with the
 *    channel's history on (the default, 100 events) and off
 *    (REALTIME_HISTORY_SIZE=0): Send → receive latency (median, p99) and
 *    the server CPU (API + edge, from /proc) per Send, in alternating runs;
 * 2. recovery: a client that missed MISSED events rejoins with since:
 *    join → reply time, with the MISSED events delivered before the reply.
 *
 *   npx tsx bench/history-cost.ts                          (about 60 s)
 *   npx tsx bench/history-cost.ts --redis redis://127.0.0.1:6379
 *
 * Prints Markdown; docs/scaling.md quotes it. Small on purpose: the
 * machine has two shared cores.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { ServerFrameSchema } from "../gen/realtime/client/v1/client_pb.js";
import { startProcess, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient } from "../test/helpers/grpc-client.js";
import { TestClient } from "../test/helpers/ws-client.js";

const CLIENTS = 10;
const SENDS = 1_000;
const RUNS = 3;
const MISSED = 1_000;

const redisAt = process.argv.indexOf("--redis");
const REDIS = redisAt > 0 ? process.argv[redisAt + 1]! : "";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)]!;

/** CPU seconds (user + system) a process used so far. */
function cpu(proc: Proc): number {
  const fields = readFileSync(`/proc/${proc.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function deploy(env: NodeJS.ProcessEnv): Promise<{ api: Proc; edge: Proc; stop(): Promise<void> }> {
  const common = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_RATE_LIMIT_PER_SECOND: "100000",
    REALTIME_RATE_LIMIT_BURST: "100000",
    ...(REDIS ? { REALTIME_REDIS_URL: REDIS, REALTIME_REDIS_PREFIX: `bench:${randomBytes(4).toString("hex")}:` } : {}),
    ...env,
  };
  const api = await startProcess("api", common);
  const edge = await startProcess("edge", { ...common, REALTIME_LINK_URL: api.ready.link });
  return { api, edge, stop: () => Promise.all([edge.stop(), api.stop()]).then(() => {}) };
}

async function sendCost(history: boolean): Promise<{ p50: number; p99: number; cpuUs: number }> {
  const d = await deploy(history ? {} : { REALTIME_HISTORY_SIZE: "0" });
  const api = realtimeClient(d.api.ready.grpc!);
  let waiting: (() => void) | undefined;
  let received = 0;
  const clients: TestClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const c = await TestClient.connect(d.edge.ready.ws!, "proto");
    await c.ok({ command: { case: "join", value: { channel: "cost" } } });
    c.ws.removeAllListeners("message");
    c.ws.on("message", (data: Buffer) => {
      const f = fromBinary(ServerFrameSchema, data);
      if (f.frame.case === "event" && f.frame.value.event === "t" && ++received % CLIENTS === 0) waiting?.();
    });
    clients.push(c);
  }
  const payload = { case: "binary" as const, value: new Uint8Array(200) };
  for (let i = 0; i < 100; i++) await api.send({ channel: "cost", event: "warm", payload });
  const latencies: number[] = [];
  const before = cpu(d.api) + cpu(d.edge);
  for (let i = 0; i < SENDS; i++) {
    const all = new Promise<void>((resolve) => (waiting = resolve));
    const t0 = performance.now();
    await api.send({ channel: "cost", event: "t", payload });
    await all;
    latencies.push(performance.now() - t0);
  }
  const cpuUs = ((cpu(d.api) + cpu(d.edge) - before) / SENDS) * 1e6;
  await Promise.all(clients.map((c) => c.close()));
  api.close();
  await d.stop();
  return { p50: median(latencies), p99: p99(latencies), cpuUs };
}

async function recovery(): Promise<{ ms: number; replayed: number; recovered: boolean }> {
  const d = await deploy({ REALTIME_HISTORY_RULES: `rec:=${MISSED + 10}` });
  const api = realtimeClient(d.api.ready.grpc!);
  const first = await TestClient.connect(d.edge.ready.ws!, "proto");
  const joined = await first.ok({ command: { case: "join", value: { channel: "rec:1" } } });
  await first.close();
  const payload = { case: "binary" as const, value: new Uint8Array(200) };
  // Its own channel:leave is one of the missed events.
  for (let i = 0; i < MISSED - 1; i++) await api.send({ channel: "rec:1", event: "t", payload });
  const again = await TestClient.connect(d.edge.ready.ws!, "proto");
  const t0 = performance.now();
  const reply = await again.ok({ command: { case: "join", value: { channel: "rec:1", since: joined.position! } } });
  const ms = performance.now() - t0;
  const replayed = again
    .events()
    .filter((e) => e.offset > joined.position!.offset && e.offset < reply.position!.offset);
  await again.close();
  api.close();
  await d.stop();
  return { ms, replayed: replayed.length, recovered: reply.recovered };
}

const on: Awaited<ReturnType<typeof sendCost>>[] = [];
const off: Awaited<ReturnType<typeof sendCost>>[] = [];
for (let run = 0; run < RUNS; run++) {
  off.push(await sendCost(false));
  on.push(await sendCost(true));
}
const fmt = (rs: typeof on, k: "p50" | "p99" | "cpuUs", digits: number) =>
  `${median(rs.map((r) => r[k])).toFixed(digits)} (${rs.map((r) => r[k].toFixed(digits)).join(", ")})`;
console.log(
  `\n### History on and off, ${REDIS ? "Redis" : "embedded"} mode (${SENDS} sequential Sends to ${CLIENTS} members, ${RUNS} runs each, alternating)\n`,
);
console.log("| history | Send → all received, median ms | p99 ms | server CPU per Send, µs |");
console.log("|---|---|---|---|");
console.log(`| off | ${fmt(off, "p50", 3)} | ${fmt(off, "p99", 3)} | ${fmt(off, "cpuUs", 0)} |`);
console.log(`| on (100) | ${fmt(on, "p50", 3)} | ${fmt(on, "p99", 3)} | ${fmt(on, "cpuUs", 0)} |`);
const rec = [await recovery(), await recovery(), await recovery()];
console.log(`\n### Recovery of ${MISSED} missed events (join with since → reply, 3 runs)\n`);
console.log(
  `median ${median(rec.map((r) => r.ms)).toFixed(1)} ms (${rec.map((r) => r.ms.toFixed(1)).join(", ")}); replayed ${rec.map((r) => r.replayed).join(", ")}; recovered ${rec.map((r) => r.recovered).join(", ")}`,
);
process.exit(0);
