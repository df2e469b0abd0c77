/**
 * Measures the server memory one idle connection costs Switchboard, per
 * process, the way scenario (d) does (RSS after − before, per connection),
 * and also after a forced GC (heap used, external, array buffers), so that
 * garbage not yet collected and memory really held can be told apart.
 * Optionally diffs heap snapshots by constructor (--snapshots).
 *
 *   npm run build && npx tsx bench/memory-probe.ts [--clients 10000] [--group 10] [--concurrency 192] [--settle 3] [--idle 0] [--dist dist] [--snapshots]
 *
 * --dist: the compiled tree to run (its src/cli.js), e.g. a private
 * `tsc -p tsconfig.build.json --outDir /tmp/x/dist` build, so that a build
 * of the shared tree by someone else does not change what is measured.
 * Bounded: one run; the servers are killed on exit.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import { cpuMicros, machineCpuMicros } from "./lib/procstat.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const CLIENTS = Number(arg("clients", "10000"));
const GROUP = Number(arg("group", "10"));
const CONCURRENCY = Number(arg("concurrency", "192"));
const SETTLE_S = Number(arg("settle", "3"));
/**
 * --idle S: after the RSS reading, the CPU (user + system, from /proc) each
 * server uses over S more seconds with every connection open and nothing
 * sent: its idle CPU. 0 (the default) skips it. A window of at least two
 * heartbeat intervals (REALTIME_HEARTBEAT_INTERVAL_MS, 25 s) includes their rounds.
 */
const IDLE_S = Number(arg("idle", "0"));
const DIST = resolve(arg("dist", "dist"));
const SNAPSHOTS = process.argv.includes("--snapshots");
/**
 * --sampling: a sampling heap profile of each server while connecting that
 * keeps objects later freed by a major GC (promoted garbage) but not those
 * a scavenge freed: what fills the old space. Top allocation sites printed.
 */
const SAMPLING = process.argv.includes("--sampling");
/** Extra node flags for the servers (experiments, e.g. "--max-semi-space-size=1"). */
const NODE_FLAGS = arg("node-flags", "").split(" ").filter(Boolean);
const SNAP_DIR = resolve("bench/results/raw/memory-probe");
/** "switchboard" (API + edge) or "ws" (the baseline server of bench/systems/ws-server.ts, for comparison). */
const SYSTEM = arg("system", "switchboard");

/**
 * Preloaded into each server: on SIGUSR2 it reports process.memoryUsage()
 * on stderr (before and after two full GCs) and, with MEMPROBE_SNAPSHOTS set,
 * writes a heap snapshot there.
 */
const PRELOAD = `
import v8 from "node:v8";
import { PerformanceObserver, constants } from "node:perf_hooks";
import { Session } from "node:inspector";
import { writeFileSync } from "node:fs";
let n = 0;
const inspector = process.env.MEMPROBE_SAMPLING ? new Session() : undefined;
inspector?.connect();
const gcs = { minor: 0, major: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR ? gcs.minor++ : gcs.major++;
}).observe({ entryTypes: ["gc"] });
process.on("SIGUSR2", () => {
  const before = process.memoryUsage();
  const spacesBefore = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]));
  globalThis.gc?.(); globalThis.gc?.();
  const after = process.memoryUsage();
  let snapshot;
  if (inspector && n === 0) inspector.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: false });
  if (inspector && n === 1) inspector.post("HeapProfiler.stopSampling", (err, r) => writeFileSync(process.env.MEMPROBE_SAMPLING, JSON.stringify(r.profile)));
  if (process.env.MEMPROBE_SNAPSHOTS) snapshot = v8.writeHeapSnapshot(process.env.MEMPROBE_SNAPSHOTS + "/" + n + ".heapsnapshot");
  n++;
  process.stderr.write("MEMPROBE " + JSON.stringify({ before, after, snapshot, spacesBefore, gcs: { ...gcs } }) + "\\n");
});
`;

interface Mem {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}
interface Report {
  before: Mem;
  after: Mem;
  snapshot?: string;
  /** Committed bytes per V8 heap space, before the GC. */
  spacesBefore: Record<string, number>;
  /** GCs so far (the probe's own forced ones included). */
  gcs: { minor: number; major: number };
}

interface Server {
  role: string;
  child: ChildProcess;
  ready: Record<string, string>;
  reports: Report[];
  waiters: Array<(r: Report) => void>;
}

function start(role: string, env: Record<string, string>, script = [join(DIST, "src/cli.js"), role]): Promise<Server> {
  const snapDir = join(SNAP_DIR, role);
  mkdirSync(SNAP_DIR, { recursive: true });
  if (SNAPSHOTS) {
    rmSync(snapDir, { recursive: true, force: true });
    mkdirSync(snapDir, { recursive: true });
  }
  const child = spawn(
    process.execPath,
    ["--expose-gc", ...NODE_FLAGS, "--import", `data:text/javascript,${encodeURIComponent(PRELOAD)}`, ...script],
    {
      env: {
        ...process.env,
        REALTIME_LOG_LEVEL: "warn",
        ...(SNAPSHOTS ? { MEMPROBE_SNAPSHOTS: snapDir } : {}),
        ...(SAMPLING ? { MEMPROBE_SAMPLING: join(SNAP_DIR, `${role}.heapprofile`) } : {}),
        ...env,
      },
      // The ws baseline exits when its IPC channel closes.
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    },
  );
  const server: Server = { role, child, ready: {}, reports: [], waiters: [] };
  createInterface({ input: child.stderr! }).on("line", (line) => {
    if (line.startsWith("MEMPROBE ")) {
      const r = JSON.parse(line.slice(9)) as Report;
      server.reports.push(r);
      server.waiters.shift()?.(r);
    } else if (process.env.MEMPROBE_VERBOSE) process.stderr.write(`[${role}] ${line}\n`);
  });
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${role} exited ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as Record<string, string>;
        if (msg.ready === role) {
          server.ready = msg;
          resolve(server);
        }
      } catch {
        // not the ready line
      }
    });
  });
}

function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** Resident KiB of a process's mappings, by kind: brk heap, anonymous mappings by size class, files. */
function smaps(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let kind = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const kb = (Number.parseInt(head[2]!, 16) - Number.parseInt(head[1]!, 16)) / 1024;
      const name = head[3]!;
      kind = name
        ? name.startsWith("/")
          ? "file"
          : name
        : process.env.MEMPROBE_SMAPS_DETAIL
          ? `anon ${kb}K`
          : kb <= 256
            ? "anon <=256K"
            : kb <= 1024
              ? "anon <=1M"
              : kb <= 65536
                ? "anon <=64M"
                : "anon >64M";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out.set(kind, (out.get(kind) ?? 0) + Number(rss[1]));
  }
  return out;
}

function measure(s: Server): Promise<Report> {
  return new Promise((resolve) => {
    s.waiters.push(resolve);
    s.child.kill("SIGUSR2");
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function connectAll(url: string): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  let next = 0;
  let id = 0;
  const lane = async () => {
    while (next < CLIENTS) {
      const i = next++;
      const ws =
        SYSTEM === "ws"
          ? new WebSocket(url, { perMessageDeflate: false })
          : new WebSocket(url, "realtime.v1.json", { perMessageDeflate: false });
      const channel = `g${Math.floor(i / GROUP)}`;
      await new Promise<void>((resolve, reject) => {
        const reqId = ++id;
        ws.once("error", reject);
        ws.on("message", (d: Buffer) => {
          const text = d.toString();
          if (text.startsWith(SYSTEM === "ws" ? `{"id":${reqId}}` : `{"reply":{"id":${reqId}`)) {
            if (text.includes('"error"')) reject(new Error(text));
            else resolve();
          }
        });
        ws.once("open", () =>
          ws.send(JSON.stringify(SYSTEM === "ws" ? { id: reqId, join: channel } : { id: reqId, join: { channel } })),
        );
      });
      sockets.push(ws);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, CLIENTS) }, lane));
  return sockets;
}

const kib = (bytes: number) => (bytes / 1024 / CLIENTS).toFixed(2);

/** Self size and count per (node type, constructor name) in a heap snapshot. */
function summarizeSnapshot(path: string): Map<string, { count: number; size: number }> {
  const snap = JSON.parse(readFileSync(path, "utf8")) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const out = new Map<string, { count: number; size: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const name =
      type === "object" || type === "closure" || type === "native" || type === "hidden"
        ? snap.strings[snap.nodes[i + nameAt]!]!
        : "";
    const k = `${type} ${name.slice(0, 60)}`;
    const e = out.get(k) ?? { count: 0, size: 0 };
    e.count++;
    e.size += snap.nodes[i + sizeAt]!;
    out.set(k, e);
  }
  return out;
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

/** Sampled bytes by allocating function (self), and by the nearest frame of our own code (src/). */
function summarizeSampling(role: string, path: string): void {
  const head = (JSON.parse(readFileSync(path, "utf8")) as { head: SamplingNode }).head;
  const self = new Map<string, number>();
  const ours = new Map<string, number>();
  const frame = (n: SamplingNode) =>
    `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, "$1/")}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: SamplingNode, own: string) => {
    const f = frame(n);
    const o = /\/dist\/src\//.test(n.callFrame.url) ? f : own;
    if (n.selfSize) {
      self.set(f, (self.get(f) ?? 0) + n.selfSize);
      ours.set(o, (ours.get(o) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, o);
  };
  walk(head, "(not under src/)");
  for (const [title, m] of [
    ["allocating function", self],
    ["nearest src/ frame", ours],
  ] as const) {
    const rows = [...m].sort((a, b) => b[1] - a[1]);
    const total = rows.reduce((s, r) => s + r[1], 0);
    console.log(`\n${role}: promoted or retained while connecting, ${kib(total)} KiB/conn sampled; by ${title}:`);
    for (const [k, v] of rows.slice(0, 18)) console.log(`  ${(v / CLIENTS).toFixed(0).padStart(6)} B  ${k}`);
  }
}

function diffSnapshots(role: string, dir: string): void {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".heapsnapshot"))
    .sort((a, b) => Number.parseInt(a) - Number.parseInt(b));
  if (files.length < 2) return;
  const a = summarizeSnapshot(join(dir, files[0]!));
  const b = summarizeSnapshot(join(dir, files[files.length - 1]!));
  const rows = [...b].map(([k, v]) => {
    const o = a.get(k) ?? { count: 0, size: 0 };
    return { k, count: v.count - o.count, size: v.size - o.size };
  });
  rows.sort((x, y) => y.size - x.size);
  const total = rows.reduce((s, r) => s + r.size, 0);
  console.log(
    `\n${role}: heap snapshot growth ${kib(total)} KiB/conn (self sizes, after GC); top entries per connection:`,
  );
  for (const r of rows.slice(0, 30)) {
    console.log(
      `  ${(r.size / CLIENTS).toFixed(0).padStart(6)} B  ${(r.count / CLIENTS).toFixed(2).padStart(6)} obj  ${r.k}`,
    );
  }
}

async function main() {
  let servers: Server[];
  let url: string;
  if (SYSTEM === "ws") {
    const ws = await start("ws", {}, ["--import", "tsx", "bench/systems/ws-server.ts"]);
    servers = [ws];
    url = ws.ready.ws!;
  } else {
    const api = await start("api", { REALTIME_GRPC_PORT: "0", REALTIME_LINK_PORT: "0", REALTIME_HTTP_PORT: "0" });
    const edge = await start("edge", { REALTIME_LINK_URL: api.ready.link!, REALTIME_WS_PORT: "0" });
    servers = [api, edge];
    url = edge.ready.ws!;
  }
  const stop = () => servers.forEach((s) => s.child.kill("SIGKILL"));
  process.once("exit", stop);
  try {
    await sleep(1000);
    const rss0 = servers.map((s) => rss(s.child.pid!));
    const maps0 = servers.map((s) => smaps(s.child.pid!));
    const gc0 = await Promise.all(servers.map(measure));
    const t0 = performance.now();
    const sockets = await connectAll(url);
    console.log(
      `${CLIENTS} clients in channels of ${GROUP}, connected in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    await sleep(SETTLE_S * 1000);
    const rss1 = servers.map((s) => rss(s.child.pid!));
    const maps1 = servers.map((s) => smaps(s.child.pid!));
    const gc1 = await Promise.all(servers.map(measure));
    console.log(`KiB per connection      ${servers.map((s) => s.role.padStart(8)).join(" ")}      sum`);
    const row = (label: string, f: (i: number) => number) => {
      const v = servers.map((_, i) => f(i));
      console.log(
        `${label.padEnd(24)}${v.map((x) => kib(x).padStart(9)).join("")}${kib(v.reduce((a, b) => a + b, 0)).padStart(9)}`,
      );
    };
    row("RSS (as scenario d)", (i) => rss1[i]! - rss0[i]!);
    row("RSS after GC", (i) => gc1[i]!.after.rss - gc0[i]!.after.rss);
    row("heap used after GC", (i) => gc1[i]!.after.heapUsed - gc0[i]!.after.heapUsed);
    row("heap total after GC", (i) => gc1[i]!.after.heapTotal - gc0[i]!.after.heapTotal);
    row("heap used before GC", (i) => gc1[i]!.before.heapUsed - gc0[i]!.before.heapUsed);
    row("external after GC", (i) => gc1[i]!.after.external - gc0[i]!.after.external);
    row("arrayBuffers after GC", (i) => gc1[i]!.after.arrayBuffers - gc0[i]!.after.arrayBuffers);
    row(
      "RSS-heapTotal-ext",
      (i) =>
        gc1[i]!.after.rss -
        gc1[i]!.after.heapTotal -
        gc1[i]!.after.external -
        (gc0[i]!.after.rss - gc0[i]!.after.heapTotal - gc0[i]!.after.external),
    );
    servers.forEach((s, i) => {
      const sp0 = gc0[i]!.spacesBefore;
      const sp1 = gc1[i]!.spacesBefore;
      console.log(
        `${s.role} GCs while connecting: ${gc1[i]!.gcs.minor - gc0[i]!.gcs.minor} minor, ${gc1[i]!.gcs.major - gc0[i]!.gcs.major - 2} major`,
      );
      console.log(
        `${s.role} committed heap spaces at the end (MB, before GC): ${Object.keys(sp1)
          .filter((k) => sp1[k]! > 0)
          .map((k) => `${k} ${(sp1[k]! / 2 ** 20).toFixed(1)}`)
          .join(", ")}`,
      );
      console.log(
        `${s.role} committed heap space growth (KiB/conn, before GC): ${Object.keys(sp1)
          .map((k) => `${k} ${kib(sp1[k]! - (sp0[k] ?? 0))}`)
          .join(", ")}`,
      );
      const kinds = [...new Set([...maps0[i]!.keys(), ...maps1[i]!.keys()])];
      console.log(
        `${s.role} RSS growth by mapping (KiB/conn, before GC): ${kinds.map((k) => `${k} ${kib(((maps1[i]!.get(k) ?? 0) - (maps0[i]!.get(k) ?? 0)) * 1024)}`).join(", ")}`,
      );
    });
    console.log(
      `absolute MB before/after: ${servers.map((s, i) => `${s.role} ${(rss0[i]! / 2 ** 20).toFixed(1)}/${(rss1[i]! / 2 ** 20).toFixed(1)}`).join(", ")}`,
    );
    if (IDLE_S > 0) {
      const cpu0 = servers.map((s) => cpuMicros(s.child.pid!));
      const machine0 = machineCpuMicros();
      await sleep(IDLE_S * 1000);
      const cpu1 = servers.map((s) => cpuMicros(s.child.pid!));
      const machine1 = machineCpuMicros();
      const pct = (us: number) => ((us / (IDLE_S * 1e6)) * 100).toFixed(2);
      const ours = cpu1.reduce((a, b) => a + b, 0) - cpu0.reduce((a, b) => a + b, 0);
      console.log(
        `idle CPU over ${IDLE_S} s, % of one core: ${servers.map((s, i) => `${s.role} ${pct(cpu1[i]! - cpu0[i]!)}`).join(", ")}; ` +
          `the rest of the machine ${pct(machine1.busy - machine0.busy - ours)}`,
      );
    }
    for (const ws of sockets) ws.terminate();
    if (SNAPSHOTS) for (const s of servers) diffSnapshots(s.role, join(SNAP_DIR, s.role));
    if (SAMPLING) {
      await sleep(500);
      for (const s of servers) summarizeSampling(s.role, join(SNAP_DIR, `${s.role}.heapprofile`));
    }
  } finally {
    stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
