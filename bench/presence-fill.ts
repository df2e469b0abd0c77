/**
 * How long it takes to fill ONE channel with MEMBERS members spread over
 * two edges (embedded mode: one API with its hub, two edges), with presence
 * events on and coalesced (the clients connect with presence=compact, as the
 * SDK does; REALTIME_PRESENCE_WINDOW_MS as configured, default 200 ms), and
 * with presence events off for the channel's prefix
 * (REALTIME_PRESENCE_RULES=quiet:=off).
 *
 * Each member is a raw WebSocket client (protobuf binary, echo=false) that
 * connects, joins, and counts what it receives without decoding it: a frame
 * is decoded only when it is a reply (first byte 0x12), or a small event
 * (0x1a) that may be the end marker. Reported per run: the time until every
 * join is answered, the time until every member has the marker the API sends
 * after the last join (channel order: every presence event before it has
 * arrived too), and the frames and bytes the members received.
 *
 *   npx tsx bench/presence-fill.ts                    (10,000 members, 3 runs each)
 *   npx tsx bench/presence-fill.ts --members 2000 --runs 1 --window 0
 *
 * Prints Markdown; docs/scaling.md quotes it. One process holds every
 * client socket (MEMBERS fds, under the 20,000 allowed here).
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { startProcess, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient } from "../test/helpers/grpc-client.js";
import { fillMember, type FillMember } from "./lib/fill-member.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const MEMBERS = arg("members", 10_000);
const RUNS = arg("runs", 3);
const WINDOW_MS = arg("window", -1); // -1: the default of REALTIME_PRESENCE_WINDOW_MS
/** Clients connecting and joining at once. */
const CONCURRENCY = 200;
const MARKER = "bench-fill-done";

/** CPU seconds (user + system) a process used so far. */
function cpu(proc: Proc): number {
  const fields = readFileSync(`/proc/${proc.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function deploy(): Promise<{ api: Proc; edges: Proc[]; stop(): Promise<void> }> {
  const common: NodeJS.ProcessEnv = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_MAX_CONNECTIONS: String(MEMBERS),
    REALTIME_PRESENCE_RULES: "quiet:=off",
    REALTIME_OUTAGE_CLOSE_MS: "0",
    ...(WINDOW_MS >= 0 ? { REALTIME_PRESENCE_WINDOW_MS: String(WINDOW_MS) } : {}),
  };
  const api = await startProcess("api", common);
  // BENCH_PROFILE_DIR: the edges write CPU profiles there (node --cpu-prof) when they stop.
  const profile = process.env.BENCH_PROFILE_DIR
    ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}` }
    : {};
  const edges = await Promise.all(
    [0, 1].map(() => startProcess("edge", { ...common, ...profile, REALTIME_LINK_URL: api.ready.link })),
  );
  return { api, edges, stop: () => Promise.all([...edges, api].map((p) => p.stop())).then(() => {}) };
}

async function fill(d: Awaited<ReturnType<typeof deploy>>, channel: string) {
  const api = realtimeClient(d.api.ready.grpc!);
  const members: FillMember[] = [];
  const cpu0 = { api: cpu(d.api), edges: cpu(d.edges[0]!) + cpu(d.edges[1]!), clients: ownCpu() };
  const start = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < MEMBERS) {
      const i = next++;
      const m = fillMember(d.edges[i % 2]!.ready.ws!, channel, MARKER);
      members.push(m);
      await m.joined;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const joinedS = (performance.now() - start) / 1000;
  const { members: page } = await api.getMembers({ channel, pageSize: 1 });
  if (page.length === 0) throw new Error("GetMembers lists no one");
  await api.send({ channel, event: MARKER, payload: { case: "binary", value: new Uint8Array() } });
  await Promise.all(members.map((m) => m.marked));
  const settledS = (performance.now() - start) / 1000;
  const frames = members.reduce((n, m) => n + m.frames, 0);
  const bytes = members.reduce((n, m) => n + m.bytes, 0);
  const cpuS = {
    api: cpu(d.api) - cpu0.api,
    edges: cpu(d.edges[0]!) + cpu(d.edges[1]!) - cpu0.edges,
    clients: ownCpu() - cpu0.clients,
  };
  for (const m of members) m.ws.terminate();
  api.close();
  return { joinedS, settledS, frames, bytes, cpuS };
}

async function main(): Promise<void> {
  const rows: string[] = [];
  for (const [label, prefix] of [
    [`presence events on, coalesced (presence=${process.env.BENCH_PRESENCE_FORM ?? "compact"})`, "big:"],
    ["presence events off for the prefix", "quiet:"],
  ] as const) {
    if (process.argv.includes("--on-only") && prefix !== "big:") continue;
    const runs = [];
    for (let r = 0; r < RUNS; r++) {
      const d = await deploy();
      try {
        runs.push(await fill(d, `${prefix}${r}`));
      } finally {
        await d.stop();
      }
      const last = runs.at(-1)!;
      console.error(
        `${label} run ${r + 1}: joined ${last.joinedS.toFixed(2)} s, settled ${last.settledS.toFixed(2)} s, ` +
          `${last.frames} frames, ${(last.bytes / 1e6).toFixed(0)} MB; CPU s: API ${last.cpuS.api.toFixed(1)}, ` +
          `edges ${last.cpuS.edges.toFixed(1)}, clients ${last.cpuS.clients.toFixed(1)}`,
      );
    }
    rows.push(
      `| ${label} | ${median(runs.map((r) => r.joinedS)).toFixed(2)} | ${median(runs.map((r) => r.settledS)).toFixed(2)} | ` +
        `${median(runs.map((r) => r.frames)).toLocaleString("en")} | ${(median(runs.map((r) => r.bytes)) / 1e6).toFixed(0)} |`,
    );
  }
  const window = WINDOW_MS >= 0 ? `${WINDOW_MS} ms` : "default";
  console.log(
    `One channel, ${MEMBERS.toLocaleString("en")} members over 2 edges, window ${window}, median of ${RUNS}:\n`,
  );
  console.log(
    "| scenario | all joins answered (s) | every member has all events (s) | frames to members | MB to members |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const row of rows) console.log(row);
}

await main();
