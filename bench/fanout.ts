/**
 * The edge's fan-out hot path alone: Edge.deliver -> the connection's send
 * (the connection policy's outbound bound) -> the ws transport -> the
 * socket, in this process, against real WebSocket clients in another (half
 * JSON, half protobuf, all in one channel). Prints, for the measured rounds
 * (after a warm-up): the wall time inside Edge.deliver per recipient (the
 * JavaScript of the hot path, up to the corked socket write), this
 * process's CPU per delivery (with the writev of each tick), and, with
 * --expose-gc, the heap held per idle connection.
 *
 *   node --expose-gc --import tsx bench/fanout.ts [--clients 200] [--burst 10] [--rounds 300]
 *
 * Bounded: clients x burst x rounds deliveries (600,000 by default, ~1 s).
 */
import { create } from "@bufbuild/protobuf";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { spawn } from "node:child_process";
import { EventSchema } from "../gen/realtime/client/v1/client_pb.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import { Edge } from "../src/core/edge.js";
import { DEFAULT_LIMITS, DEFAULT_MAX_OUTBOUND_BYTES } from "../src/core/limits.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { createPublication } from "../src/core/publication.js";
import { ConnectionPolicy } from "../src/core/connections.js";
import { WsEdgeServer } from "../src/edge/ws-server.js";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const CLIENTS = Number(arg("clients", "200"));
const BURST = Number(arg("burst", "10"));
const ROUNDS = Number(arg("rounds", "300"));

function startServer(edge: Edge) {
  const connections = new ConnectionPolicy({ edge, maxOutboundBytes: DEFAULT_MAX_OUTBOUND_BYTES });
  const server = new WsEdgeServer({ connections, maxFrameBytes: 100_000 });
  return { server, listen: () => server.listen(0, "127.0.0.1"), close: () => server.close() };
}

const CLIENT = `
const WebSocket = require("ws");
const [url, n] = process.argv.slice(1);
let got = 0, open = 0;
for (let i = 0; i < Number(n); i++) {
  const proto = i % 2 === 1;
  const ws = new WebSocket(url, proto ? "realtime.v1.proto" : "realtime.v1.json");
  ws.on("open", () => ws.send(proto ? Buffer.from([8, 1, 0x12, 5, 0x0a, 3, 0x66, 0x61, 0x6e]) : '{"id":1,"join":{"channel":"fan"}}'));
  let replied = false;
  ws.on("message", (d) => {
    got++;
    if (replied || !(proto ? d[0] === 0x12 : String(d).startsWith('{"reply"'))) return;
    replied = true;
    if (++open === Number(n)) process.stdout.write("joined\\n");
  });
}
process.stdin.on("data", () => process.stdout.write(got + "\\n"));
`;

/** The heap in use after a full GC (run with node --expose-gc), or NaN without it. */
function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return NaN;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function main() {
  const broker = new MemoryBroker();
  const presence = new MemoryPresence();
  let edge!: Edge;
  const node = broker.attach((pub) => edge.deliver(pub), true);
  edge = new Edge({ broker: node, presence: presence.view("e"), limits: DEFAULT_LIMITS, allowClientBroadcast: false });
  const { listen, close } = startServer(edge);
  const addr = await listen();
  const heap0 = heapAfterGc();
  const child = spawn(process.execPath, ["-e", CLIENT, `ws://127.0.0.1:${addr.port}`, String(CLIENTS)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  child.stdout.on("data", (d: Buffer) => {
    lines.push(...d.toString().trim().split("\n"));
    wake?.();
  });
  const line = () =>
    new Promise<string>((resolve) => {
      const take = () => (lines.length ? resolve(lines.shift()!) : (wake = take));
      take();
    });
  if ((await line()) !== "joined") throw new Error("clients did not join");
  await new Promise((r) => setTimeout(r, 300));
  const heapPerConnection = (heapAfterGc() - heap0) / CLIENTS;
  await new Promise((r) => setTimeout(r, 300));
  const pubs = Array.from({ length: BURST }, (_, i) =>
    createPublication(
      create(EventSchema, {
        id: `x.${i}`,
        channel: "fan",
        event: "e",
        payload: { case: "json", value: fromJson(ValueSchema, { t: i, p: "x".repeat(64) }) },
      }),
      Infinity,
    ),
  );
  // Warm-up: the JIT settles before the measured rounds.
  for (let r = 0; r < ROUNDS / 3; r++) {
    for (const pub of pubs) edge.deliver(pub);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write("?\n");
  const before = Number(await line());
  let inDeliver = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < ROUNDS; r++) {
    const s = performance.now();
    for (const pub of pubs) edge.deliver(pub);
    inDeliver += performance.now() - s;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => setTimeout(r, 500));
  child.stdin.write("?\n");
  const got = Number(await line());
  const deliveries = ROUNDS * BURST * CLIENTS;
  console.log(
    JSON.stringify({
      deliveries,
      received: got - before,
      deliverNsPerRecipient: +((inDeliver * 1e6) / deliveries).toFixed(1),
      cpuNsPerDelivery: +(((cpu.user + cpu.system) * 1e3) / deliveries).toFixed(1),
      wallMs: Math.round(wall),
      heapBytesPerConnection: Math.round(heapPerConnection),
    }),
  );
  child.kill();
  await close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
