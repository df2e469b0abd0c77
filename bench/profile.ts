/**
 * Profiles Switchboard's API and edge under a steady load, with
 * `node --cpu-prof`, and prints where the CPU time goes (self time by
 * function, top entries per process). Bounded: one run of --seconds.
 *
 *   npm run build && npx tsx bench/profile.ts [--clients 1000] [--channels 100] [--rate 500] [--seconds 10] [--mode batch|unary|stream] [--settle 2] [--no-prof] [--top 25] [--inclusive]
 *
 * Profiles are written to bench/results/raw/profile/<role>/ (one per thread).
 */
import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import WebSocket from "ws";
import {
  PublishRequestSchema,
  PublishResponseSchema,
  SendBatchRequestSchema,
  SendRequestSchema,
} from "../gen/realtime/v1/realtime_pb.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const CLIENTS = Number(arg("clients", "1000"));
const CHANNELS = Number(arg("channels", "100"));
const RATE = Number(arg("rate", "500"));
const SECONDS = Number(arg("seconds", "10"));
const MODE = arg("mode", "batch");
const PROFILE = !process.argv.includes("--no-prof");
const SETTLE = Number(arg("settle", "2"));
const OUT = join(process.cwd(), "bench/results/raw/profile");

function start(
  role: string,
  env: Record<string, string>,
): Promise<{ child: ChildProcess; ready: Record<string, string> }> {
  const child = spawn(
    process.execPath,
    [...(PROFILE ? ["--cpu-prof", `--cpu-prof-dir=${join(OUT, role)}`] : []), "dist/src/cli.js", role],
    {
      env: { ...process.env, REALTIME_LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${role} exited ${code}`)));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const msg = JSON.parse(line) as Record<string, string>;
        if (msg.ready === role) resolve({ child, ready: msg });
      } catch {
        // not the ready line
      }
    });
  });
}

async function main() {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const api = await start("api", { REALTIME_GRPC_PORT: "0", REALTIME_LINK_PORT: "0", REALTIME_HTTP_PORT: "0" });
  const edge = await start("edge", { REALTIME_LINK_URL: api.ready.link!, REALTIME_WS_PORT: "0" });
  let received = 0;
  const sockets: WebSocket[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    const ws = new WebSocket(edge.ready.ws!, "realtime.v1.json");
    await new Promise<void>((resolve, reject) => {
      ws.once("error", reject);
      ws.on("message", (d: Buffer) => {
        const text = d.toString();
        if (text.startsWith('{"event":{"channel":"c') && text.includes('"event":"e"')) received++;
        else if (text.startsWith('{"reply"')) resolve();
      });
      ws.once("open", () => ws.send(JSON.stringify({ id: 1, join: { channel: `c${i % CHANNELS}` } })));
    });
    sockets.push(ws);
  }
  const client = new grpc.Client(api.ready.grpc!, grpc.credentials.createInsecure());
  const call = (method: string, bytes: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      client.makeUnaryRequest(
        `/realtime.v1.Realtime/${method}`,
        (b: Uint8Array) => Buffer.from(b),
        (b: Buffer) => b,
        bytes,
        (err) => (err ? reject(err) : resolve()),
      ),
    );
  // Let the joins' channel:join traffic drain before measuring.
  await new Promise((r) => setTimeout(r, SETTLE * 1000));
  const idle0 = [api, edge].map((p) => cpuMicros(p.child.pid!));
  await new Promise((r) => setTimeout(r, 2000));
  const idle1 = [api, edge].map((p) => cpuMicros(p.child.pid!));
  console.log(
    `CPU idle with ${CLIENTS} clients (2 s): api ${((idle1[0]! - idle0[0]!) / 20_000).toFixed(1)}%, edge ${((idle1[1]! - idle0[1]!) / 20_000).toFixed(1)}% of a core`,
  );
  const stream =
    MODE === "stream"
      ? client.makeBidiStreamRequest(
          `/realtime.v1.Realtime/Publish`,
          (b: Uint8Array) => Buffer.from(b),
          (b: Buffer) => b,
        )
      : undefined;
  let acked = 0n;
  stream?.on("data", (b: Buffer) => {
    acked = fromBinary(PublishResponseSchema, b).handled;
  });
  const total = RATE * SECONDS;
  const cpu0 = [api, edge].map((p) => cpuMicros(p.child.pid!));
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
    const reqs = [];
    for (; sent < due; sent++)
      reqs.push(
        fromJson(SendRequestSchema, {
          channel: `c${sent % CHANNELS}`,
          event: "e",
          json: { t: Date.now(), p: "x".repeat(64) },
        }),
      );
    if (stream)
      for (const r of reqs)
        stream.write(
          toBinary(PublishRequestSchema, create(PublishRequestSchema, { event: { case: "send", value: r } })),
        );
    else if (MODE === "batch" && reqs.length > 0)
      void call("SendBatch", toBinary(SendBatchRequestSchema, create(SendBatchRequestSchema, { requests: reqs })));
    else for (const r of reqs) void call("Send", toBinary(SendRequestSchema, r));
    await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => setTimeout(r, 500));
  const wallMicros = (performance.now() - t0) * 1000;
  const cpu1 = [api, edge].map((p) => cpuMicros(p.child.pid!));
  const used = cpu1.map((c, i) => c - cpu0[i]!);
  console.log(
    `CPU over the load (user+system): api ${((100 * used[0]!) / wallMicros).toFixed(1)}%, edge ${((100 * used[1]!) / wallMicros).toFixed(1)}% of a core; ${((used[0]! + used[1]!) / (total * (CLIENTS / CHANNELS))).toFixed(2)} µs per delivery`,
  );
  const expected = total * (CLIENTS / CHANNELS);
  console.log(
    `sent ${total} events in ${SECONDS} s (${MODE}), ${received}/${expected} deliveries${stream ? `, ${acked} acknowledged` : ""}`,
  );
  stream?.end();
  client.close();
  for (const ws of sockets) ws.terminate();
  for (const p of [edge, api]) {
    p.child.removeAllListeners("exit");
    const exited = new Promise((r) => p.child.once("exit", r));
    p.child.kill("SIGTERM");
    await exited;
  }
  // One profile per thread; the main thread's is the largest (tsx's loader
  // thread writes one too).
  for (const role of PROFILE ? ["api", "edge"] : []) {
    const dir = join(OUT, role);
    const files = readdirSync(dir).map((f) => join(dir, f));
    const main = files.sort((a, b) => statSync(b).size - statSync(a).size)[0];
    if (main) summarize(role, main);
  }
}

/** utime + stime of a process, in microseconds (clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}

function summarize(role: string, file: string) {
  const prof = JSON.parse(readFileSync(file, "utf8")) as {
    nodes: Node[];
    startTime: number;
    endTime: number;
    samples: number[];
  };
  const self = new Map<string, number>();
  let all = 0;
  for (const n of prof.nodes) {
    const where = n.callFrame.url.replace(/^.*\/(node_modules\/)?/, "").replace(/^file:\/\//, "");
    const key = `${n.callFrame.functionName || "(anonymous)"} ${where}:${n.callFrame.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + n.hitCount);
    all += n.hitCount;
  }
  const idle = [...self].filter(([k]) => k.startsWith("(idle)")).reduce((a, [, v]) => a + v, 0);
  console.log(`\n${role} (${file.split("/").pop()}): ${all} samples, ${(100 * (1 - idle / all)).toFixed(1)}% busy`);
  for (const [k, v] of [...self]
    .filter(([k]) => !k.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, Number(arg("top", "25")))) {
    console.log(`  ${((100 * v) / (all - idle)).toFixed(1).padStart(5)}%  ${k}`);
  }
  if (!process.argv.includes("--inclusive")) return;
  // Inclusive ("total") time: each sample counts once for every distinct
  // function on its stack.
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const total = new Map<string, number>();
  const keyOf = (n: Node) =>
    `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*\/(node_modules\/)?/, "")}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: Node, onStack: Set<string>): number => {
    const key = keyOf(n);
    let hits = key.startsWith("(idle)") ? 0 : n.hitCount;
    const added = !onStack.has(key);
    if (added) onStack.add(key);
    for (const c of n.children ?? []) hits += walk(byId.get(c)!, onStack);
    if (added) {
      onStack.delete(key);
      total.set(key, (total.get(key) ?? 0) + hits);
    }
    return hits;
  };
  walk(prof.nodes[0]!, new Set());
  console.log(`  inclusive:`);
  for (const [k, v] of [...total].sort((a, b) => b[1] - a[1]).slice(0, Number(arg("top", "25")))) {
    console.log(`  ${((100 * v) / (all - idle)).toFixed(1).padStart(5)}%  ${k}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
