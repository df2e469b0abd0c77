/**
 * Dead peers: an edge pings every client; one that stops answering is
 * terminated within interval + timeout, leaves its channels, and the other
 * members receive channel:leave. A client that answers stays. Real API and
 * edge processes, with a short heartbeat.
 */
import WebSocket from "ws";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const INTERVAL = 400;
const TIMEOUT = 300;
let cluster: Cluster;
let api: RealtimeTestClient;
const clients: TestClient[] = [];

beforeAll(async () => {
  cluster = await startCluster(1, {
    REALTIME_HEARTBEAT_INTERVAL_MS: String(INTERVAL),
    REALTIME_HEARTBEAT_TIMEOUT_MS: String(TIMEOUT),
  });
  api = realtimeClient(cluster.grpc);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  api?.close();
  await cluster?.stop();
  await stopAll();
});

/** A client that joins a channel and then never answers a ping (autoPong off). */
async function deadPeer(channel: string): Promise<{ ws: WebSocket; id: string; closed: Promise<number> }> {
  const ws = new WebSocket(cluster.ws[0]!, "realtime.v1.json", { autoPong: false });
  const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
  const frames: string[] = [];
  ws.on("message", (d) => frames.push(d.toString()));
  await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
  while (frames.length === 0) await sleep(10);
  const id = (JSON.parse(frames[0]!) as { connected: { id: string } }).connected.id;
  ws.send(JSON.stringify({ id: 1, join: { channel } }));
  while (!frames.some((f) => f.includes('"reply"'))) await sleep(10);
  return { ws, id, closed };
}

it("terminates a peer that stops answering pings within interval + timeout; it leaves its channels", async () => {
  const alive = await TestClient.connect(cluster.ws[0]!, "proto");
  clients.push(alive);
  await alive.ok({ command: { case: "join", value: { channel: "hb" } } });
  const dead = await deadPeer("hb");
  expect((await api.getMembers({ channel: "hb" })).members.map((m) => m.id).sort()).toEqual([alive.id, dead.id].sort());

  const started = Date.now();
  const leave = await alive.next(
    (f) =>
      f.frame.case === "event" &&
      f.frame.value.event === "channel:leave" &&
      f.frame.value.payload.case === "member" &&
      f.frame.value.payload.value.id === dead.id,
    5_000,
  );
  const elapsed = Date.now() - started;
  expect(leave).toBeDefined();
  // Joined at some point in a ping round: pinged within INTERVAL, cut TIMEOUT later (plus scheduling slack).
  expect(elapsed).toBeLessThan(INTERVAL + TIMEOUT + 700);
  expect(await dead.closed).toBe(1006); // terminated: no closing handshake with a dead peer
  expect((await api.getMembers({ channel: "hb" })).members.map((m) => m.id)).toEqual([alive.id]);

  // The client that answers pings (ws does by default) outlives many rounds.
  await sleep(3 * (INTERVAL + TIMEOUT));
  expect(alive.closeCode).toBeUndefined();
  expect((await alive.request({ command: { case: "ping", value: {} } })).error).toBeUndefined();
}, 30_000);
