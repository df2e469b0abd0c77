/**
 * One channel of MEMBERS members (100,000 by default) spread over EDGES edge
 * processes and PROCS client processes (a process may hold at most 20,000
 * file descriptors here): every member joins, then a backend Send reaches
 * every member, and GetMembers' first page of 100 is timed.
 *
 *   npx tsx bench/large-channel.ts                              (100,000 members, 6 edges, 6 client processes)
 *   npx tsx bench/large-channel.ts --members 20000 --edges 2 --procs 2 --presence on
 *   npx tsx bench/large-channel.ts --redis                      (2 API nodes on a redis-server of the run's own)
 *
 * --presence off (the default here) runs the channel under a prefix whose
 * members get no join/leave/update events (REALTIME_PRESENCE_RULES
 * big:=off); --presence on lists every change to every member, coalesced
 * per presence window: N²/2 listed changes for N joins (docs/scaling.md).
 * Embedded mode by default (one API with its hub). Prints Markdown;
 * docs/scaling.md quotes it.
 */
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { startProcess, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient } from "../test/helpers/grpc-client.js";
import { ownRedis } from "./lib/own-redis.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const MEMBERS = arg("members", 100_000);
const EDGES = arg("edges", 6);
const PROCS = arg("procs", 6);
const PRESENCE_ON = process.argv[process.argv.indexOf("--presence") + 1] === "on";
const REDIS = process.argv.includes("--redis");
/** Joins in flight per client process. */
const CONCURRENCY = 100;
/** GetMembers first-page calls timed after the fill. */
const PAGE_CALLS = 21;
const MARKER = "bench-large-done";
const CHANNEL = "big:one";
const WORKER = fileURLToPath(new URL("./workers/fill-client.ts", import.meta.url));

/** CPU seconds (user + system) a process used so far. */
function cpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
/** Resident set size of a process, MB. */
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)!;
  return Number(line[1]) / 1024;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const perEdge = Math.ceil(MEMBERS / EDGES) + 100;
  const common: NodeJS.ProcessEnv = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_MAX_CONNECTIONS: String(perEdge),
    REALTIME_OUTAGE_CLOSE_MS: "0",
    ...(PRESENCE_ON ? {} : { REALTIME_PRESENCE_RULES: "big:=off" }),
  };
  const redis = REDIS ? await ownRedis() : undefined;
  const procs: Proc[] = [];
  try {
    const redisEnv = redis ? { REALTIME_REDIS_URL: redis.url, REALTIME_REDIS_PREFIX: "large" } : {};
    const apis = await Promise.all(
      [...Array(REDIS ? 2 : 1).keys()].map(() => startProcess("api", { ...common, ...redisEnv })),
    );
    procs.push(...apis);
    const edges: Proc[] = [];
    for (let e = 0; e < EDGES; e++) {
      const link = redis ? redisEnv : { REALTIME_LINK_URL: apis[0]!.ready.link };
      edges.push(await startProcess("edge", { ...common, ...link }));
    }
    procs.push(...edges);
    const urls = edges.map((e) => e.ready.ws!);
    const pids = { apis: apis.map((p) => p.child.pid!), edges: edges.map((p) => p.child.pid!) };
    const cpu0 = [...pids.apis, ...pids.edges].map(cpu);
    const redisCpu0 = redis ? cpu(redis.child.pid!) : 0;

    const start = performance.now();
    const per = Math.ceil(MEMBERS / PROCS);
    const workers = [...Array(PROCS).keys()].map((w) => {
      const child = fork(WORKER, [], {
        execArgv: ["--import", "tsx"],
        env: {
          ...process.env,
          FILL_ARGS: JSON.stringify({
            urls,
            from: w * per,
            to: Math.min(MEMBERS, (w + 1) * per),
            channel: CHANNEL,
            marker: MARKER,
            concurrency: CONCURRENCY,
          }),
        },
      });
      const messages: Record<string, Promise<Record<string, number>>> = {};
      const waiters = new Map<string, (m: Record<string, number>) => void>();
      for (const type of ["joined", "marked"]) messages[type] = new Promise((resolve) => waiters.set(type, resolve));
      child.on("message", (m: { type: string; message?: string } & Record<string, number>) => {
        if (m.type === "error") {
          console.error(`client process ${w}: ${m.message}`);
          process.exit(1);
        }
        waiters.get(m.type)?.(m);
      });
      return { child, messages };
    });
    const joined = await Promise.all(workers.map((w) => w.messages.joined!));
    const joinedS = (performance.now() - start) / 1000;
    console.error(
      `joined: ${joinedS.toFixed(1)} s (client processes ${joined.map((j) => (j.ms! / 1000).toFixed(1)).join(", ")} s)`,
    );

    const api = realtimeClient(apis.at(-1)!.ready.grpc!);
    const stats = await api.presenceStats({ channel: CHANNEL });
    const pageMs: number[] = [];
    let listed = 0;
    for (let i = 0; i < PAGE_CALLS; i++) {
      const t0 = performance.now();
      const res = await api.getMembers({ channel: CHANNEL, pageSize: 100 });
      pageMs.push(performance.now() - t0);
      listed = res.members.length;
    }
    const sentAt = Date.now();
    const sendRes = await api.send({
      channel: CHANNEL,
      event: MARKER,
      payload: { case: "binary", value: new Uint8Array() },
    });
    const marked = await Promise.all(workers.map((w) => w.messages.marked!));
    const reachMs = Math.max(...marked.map((m) => m.last!)) - sentAt;
    const serverCpu = [...pids.apis, ...pids.edges].map(cpu).map((c, i) => c - cpu0[i]!);
    const edgeRss = pids.edges.map(rssMb);
    const redisCpu = redis ? cpu(redis.child.pid!) - redisCpu0 : 0;
    for (const w of workers) w.child.send({ cmd: "exit" });
    api.close();

    const frames = marked.reduce((n, m) => n + m.frames!, 0);
    const bytes = marked.reduce((n, m) => n + m.bytes!, 0);
    const mode = REDIS ? "Redis (2 API nodes)" : "embedded (1 API)";
    console.log(
      `One channel, ${MEMBERS.toLocaleString("en")} members over ${EDGES} edges and ${PROCS} client processes, ` +
        `${mode}, presence events ${PRESENCE_ON ? "on (coalesced)" : "off for the prefix"}; load average at the end: ` +
        `${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}\n`,
    );
    console.log("| measure | value |");
    console.log("| --- | --- |");
    console.log(`| every join answered | ${joinedS.toFixed(1)} s |`);
    console.log(`| PresenceStats | ${stats.connections.toLocaleString("en")} connections, ${stats.users} users |`);
    console.log(
      `| GetMembers first page of 100 (${PAGE_CALLS} calls) | median ${median(pageMs).toFixed(2)} ms, first ${pageMs[0]!.toFixed(2)} ms, max ${Math.max(...pageMs).toFixed(2)} ms; ${listed} listed |`,
    );
    console.log(`| Send reached every member (Send call → last member) | ${reachMs} ms; edges ${sendRes.edges} |`);
    console.log(`| frames / MB to members | ${frames.toLocaleString("en")} / ${(bytes / 1e6).toFixed(0)} |`);
    console.log(
      `| server CPU, s | API ${serverCpu
        .slice(0, pids.apis.length)
        .map((c) => c.toFixed(1))
        .join(" + ")}; edges ${serverCpu
        .slice(pids.apis.length)
        .map((c) => c.toFixed(1))
        .join(", ")} |`,
    );
    if (redis) console.log(`| redis-server CPU, s | ${redisCpu.toFixed(1)} |`);
    console.log(`| client processes' CPU, s | ${marked.map((m) => m.cpu!.toFixed(1)).join(", ")} |`);
    console.log(`| edge RSS, MB | ${edgeRss.map((r) => r.toFixed(0)).join(", ")} |`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    redis?.child.kill("SIGKILL");
  }
}

await main();
