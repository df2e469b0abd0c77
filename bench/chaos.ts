/**
 * The chaos run of the positions issue: clients with recovery on, their TCP
 * connections cut at random (not closed: destroyed, as a network does),
 * one edge killed with SIGKILL and, in the Redis mode, one Redis restart
 * (SIGKILL, no persistence) in the middle, while a publisher sends to 20
 * channels. At the end it counts, for every client and channel, the
 * publisher's events it should have received (those sent after its first
 * join): lost (and whether the client was told: a Resync frame or a join
 * reply with recovered = false), duplicated, out of order; and whether the
 * member list it built only from the events it received (and the
 * getMembers it read when told) equals GetMembers.
 *
 *   npx tsx bench/chaos.ts                 embedded: 1 API (the hub), 3 edges
 *   npx tsx bench/chaos.ts --redis         Redis: 2 API nodes, 3 edges, a redis-server of its own
 *   options: --clients 200 --seconds 60 --rate 50 --cut-ms 3000
 *
 * The clients speak the client protocol directly (docs/protocol.md): on
 * every reconnect they rejoin each channel with since = the last position
 * they saw, retry a join refused for now (UNAVAILABLE), and re-read the
 * members (getMembers, one read at a time per channel, with the system
 * events that arrive meanwhile applied after it) when told: what the SDK
 * and an app on it do. Prints Markdown; docs/scaling.md quotes it.
 * CHAOS_TRACE=1 also prints, for every loss, copy or wrong member list,
 * what that client saw of the channel.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema, type Member, type Reply } from "../gen/realtime/client/v1/client_pb.js";
import { startProcess, type Proc } from "../test/helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "../test/helpers/grpc-client.js";
import { freePort } from "../test/helpers/net.js";
import { TcpProxy } from "../test/helpers/tcp-proxy.js";
import { ownRedis } from "./lib/own-redis.js";

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const REDIS_MODE = process.argv.includes("--redis");
/** Redis keeps its data across the restart (appendonly, fsync always): positions and history survive. */
const PERSIST = process.argv.includes("--persist");
/** The clients rejoin without since: each reconnect is a resynchronisation. */
const RECOVER = !process.argv.includes("--no-recover");
const CLIENTS = arg("clients", 200);
const SECONDS = arg("seconds", 60);
const RATE = arg("rate", 50);
const CUT_MS = arg("cut-ms", 3_000);
const CHANNELS = 20;
const CHANNELS_PER_CLIENT = 2;
const SETTLE_MS = 10_000;

const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;

interface Position {
  offset: bigint;
  epoch: string;
}

/** One client: reconnects with backoff, rejoins with since, keeps what it received. */
class ChaosClient {
  private ws: WebSocket | undefined;
  private nextId = 1;
  private readonly replies = new Map<number, (r: Reply) => void>();
  private stopped = false;
  readonly position = new Map<string, Position>();
  /** Per channel: the seq of each publisher event received, in order. */
  readonly received = new Map<string, number[]>();
  /** Per channel: the position of each of those, as "epoch/offset". */
  readonly at = new Map<string, string[]>();
  /** Per channel: when the client was told it may have missed events. */
  readonly told = new Map<string, number[]>();
  /** Per channel: when its first join was answered. */
  readonly firstJoin = new Map<string, number>();
  readonly members = new Map<string, Map<string, Member>>();
  /** Per channel being re-read: the system events that arrived meanwhile. */
  private readonly reloading = new Map<string, { join: boolean; member: Member }[]>();
  /** Channels whose reload a dropped connection interrupted. */
  private readonly stale = new Set<string>();
  connects = 0;
  readonly ids: string[] = [];
  /** Per channel: joins, their replies, resyncs and epoch changes, with times. */
  readonly log = new Map<string, string[]>();
  private logged(channel: string, what: string): void {
    if (!process.env.CHAOS_TRACE) return;
    let l = this.log.get(channel);
    if (!l) this.log.set(channel, (l = []));
    l.push(`${(now() / 1000).toFixed(2)} ${what}`);
  }
  /** Per channel and member id: what this client saw of it, with times (for the report of a mismatch). */
  readonly trace = new Map<string, string[]>();
  private note(channel: string, id: string, what: string): void {
    const key = `${channel} ${id}`;
    let t = this.trace.get(key);
    if (!t) this.trace.set(key, (t = []));
    t.push(`${(now() / 1000).toFixed(2)} ${what}`);
  }

  constructor(
    readonly channels: string[],
    private readonly edges: () => string[],
  ) {
    for (const c of channels) {
      this.received.set(c, []);
      this.at.set(c, []);
      this.told.set(c, []);
      this.members.set(c, new Map());
    }
  }

  connect(): void {
    if (this.stopped) return;
    this.connects++;
    const ws = new WebSocket(pick(this.edges()), "realtime.v1.proto");
    this.ws = ws;
    ws.on("message", (data: Buffer) => this.frame(data));
    ws.on("error", () => {});
    ws.on("close", () => {
      for (const resolve of this.replies.values()) resolve({ id: 0 } as Reply);
      this.replies.clear();
      if (!this.stopped) setTimeout(() => this.connect(), 50 + Math.random() * 250);
    });
  }

  stop(): void {
    this.stopped = true;
    this.ws?.terminate();
  }

  private request(init: MessageInitShape<typeof ClientFrameSchema>): Promise<Reply> {
    const id = this.nextId++;
    const ws = this.ws!;
    return new Promise((resolve) => {
      // Not open (closed, or the next one not yet open): answered as a dropped connection.
      if (ws.readyState !== WebSocket.OPEN) return resolve({ id: 0 } as Reply);
      this.replies.set(id, resolve);
      ws.send(toBinary(ClientFrameSchema, create(ClientFrameSchema, { ...init, id })));
    });
  }

  private frame(data: Buffer): void {
    const { frame } = fromBinary(ServerFrameSchema, data);
    if (frame.case === "connected") {
      this.ids.push(`${(now() / 1000).toFixed(2)} ${frame.value.id}`);
      return void this.joinAll();
    }
    if (frame.case === "reply") {
      this.replies.get(frame.value.id)?.(frame.value);
      this.replies.delete(frame.value.id);
      return;
    }
    if (frame.case === "resync") {
      this.logged(frame.value.channel, `resync ${frame.value.position?.epoch}/${frame.value.position?.offset}`);
      return void this.tell(frame.value.channel);
    }
    if (frame.case !== "event") return;
    const e = frame.value;
    if (e.offset !== 0n) {
      const p = this.position.get(e.channel);
      if (p && p.epoch !== e.epoch)
        this.logged(e.channel, `event in epoch ${e.epoch}/${e.offset} (was ${p.epoch}/${p.offset}) ${e.event}`);
      if (!p || p.epoch !== e.epoch || e.offset > p.offset)
        this.position.set(e.channel, { offset: e.offset, epoch: e.epoch });
    }
    if (e.event === "m" && e.payload.case === "binary") {
      this.received.get(e.channel)?.push(Buffer.from(e.payload.value).readUInt32LE(0));
      this.at.get(e.channel)?.push(`${e.epoch}/${e.offset}`);
      this.logged(e.channel, `m ${e.epoch}/${e.offset}`);
    } else if (e.payload.case === "member") {
      const change = { join: e.event !== "channel:leave", member: e.payload.value };
      const buffer = this.reloading.get(e.channel);
      if (buffer) buffer.push(change);
      else this.apply(e.channel, change);
    }
  }

  private apply(channel: string, { join, member }: { join: boolean; member: Member }): void {
    const list = this.members.get(channel)!;
    this.note(channel, member.id, join ? "join" : "leave");
    if (join) list.set(member.id, member);
    else list.delete(member.id);
  }

  private async joinAll(): Promise<void> {
    for (const channel of this.channels) {
      const since = RECOVER ? this.position.get(channel) : undefined;
      const first = !this.firstJoin.has(channel);
      const ws = this.ws;
      let reply = await this.request({ command: { case: "join", value: { channel, since } } });
      // Refused for now (UNAVAILABLE while Redis is away): try again on the same connection.
      while (reply.error && ws && this.ws === ws && ws.readyState === WebSocket.OPEN) {
        await sleep(200);
        reply = await this.request({ command: { case: "join", value: { channel, since } } });
      }
      this.logged(
        channel,
        `join since ${since?.epoch}/${since?.offset} on ${this.ids.at(-1)}: ${reply.id === 0 ? "dropped" : reply.error ? reply.error.message : `recovered ${reply.recovered}, position ${reply.position?.epoch}/${reply.position?.offset}`}`,
      );
      if (reply.id === 0 || reply.error) return; // the connection dropped meanwhile: the next one rejoins
      if (first) this.firstJoin.set(channel, now());
      if (reply.position && !since) this.position.set(channel, reply.position);
      if (first || !since || !reply.recovered || this.stale.has(channel)) {
        if (!first) this.told.get(channel)!.push(now());
        await this.reload(channel);
      }
    }
  }

  /** Told: it may have missed events of channel; re-read its members. */
  private async tell(channel: string): Promise<void> {
    this.told.get(channel)?.push(now());
    await this.reload(channel);
  }

  /** getMembers, with the system events that arrive meanwhile applied after it. */
  private async reload(channel: string): Promise<void> {
    // One reload of a channel at a time; one asked for meanwhile runs after it.
    if (this.reloads.has(channel)) return void this.again.add(channel);
    this.reloads.add(channel);
    try {
      do {
        this.again.delete(channel);
        await this.reloadOnce(channel);
      } while (this.again.has(channel));
    } finally {
      this.reloads.delete(channel);
    }
  }

  private readonly reloads = new Set<string>();
  private readonly again = new Set<string>();

  private async reloadOnce(channel: string): Promise<void> {
    this.reloading.set(channel, []);
    this.stale.add(channel);
    const members = new Map<string, Member>();
    let pageToken = "";
    for (;;) {
      const reply = await this.request({
        command: { case: "getMembers", value: { channel, pageSize: 500, pageToken } },
      });
      if (reply.id === 0) {
        // The connection dropped: keep what arrived meanwhile; the next connection reloads.
        for (const change of this.reloading.get(channel) ?? []) this.apply(channel, change);
        this.reloading.delete(channel);
        return;
      }
      if (reply.error) {
        // Refused for now: read again from the first page.
        await sleep(200);
        members.clear();
        pageToken = "";
        continue;
      }
      for (const m of reply.members) members.set(m.id, m);
      if (!reply.nextPageToken) break;
      pageToken = reply.nextPageToken;
    }
    const buffered = this.reloading.get(channel) ?? [];
    this.reloading.delete(channel);
    this.members.set(channel, members);
    for (const id of members.keys()) this.note(channel, id, "listed by getMembers");
    this.stale.delete(channel);
    for (const change of buffered) this.apply(channel, change);
  }
}

/** The run's own redis-server: killed and started again on the same port (and, with --persist, the same data). */
class OwnRedis {
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "chaos-redis-"));
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const persist = PERSIST ? ["--appendonly", "yes", "--appendfsync", "always"] : [];
    ({ child: this.child } = await ownRedis({ port: this.port, args: ["--dir", this.dir, ...persist] }));
  }
  async kill(): Promise<void> {
    const child = this.child!;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const redis = REDIS_MODE ? new OwnRedis(await freePort()) : undefined;
  await redis?.start();
  const env: NodeJS.ProcessEnv = {
    REALTIME_GRPC_PORT: "0",
    REALTIME_HTTP_PORT: "0",
    REALTIME_LINK_PORT: "0",
    REALTIME_WS_PORT: "0",
    REALTIME_HISTORY_RULES: "chaos:=1000/600000",
    REALTIME_RATE_LIMIT_PER_SECOND: "1000",
    REALTIME_RATE_LIMIT_BURST: "1000",
    REALTIME_REDIS_EDGE_TTL_MS: "3000",
    ...(redis ? { REALTIME_REDIS_URL: redis.url, REALTIME_REDIS_PREFIX: "chaos:" } : {}),
  };
  const apis: Proc[] = [];
  for (let i = 0; i < (redis ? 2 : 1); i++) apis.push(await startProcess("api", env));
  const edges: Proc[] = [];
  for (let i = 0; i < 3; i++)
    edges.push(await startProcess("edge", { ...env, REALTIME_LINK_URL: apis[0]!.ready.link }));
  const proxies = await Promise.all(edges.map((e) => TcpProxy.start(e.ready.ws!.replace(/^ws:\/\//, ""))));
  const live = new Set(proxies.map((_, i) => i));
  const edgeUrls = () => [...live].map((i) => `ws://${proxies[i]!.address}`);
  const grpc: RealtimeTestClient[] = apis.map((a) => realtimeClient(a.ready.grpc!));

  const channels = Array.from({ length: CHANNELS }, (_, i) => `chaos:${i}`);
  const clients = Array.from({ length: CLIENTS }, (_, i) => {
    const mine = new Set<string>();
    while (mine.size < CHANNELS_PER_CLIENT)
      mine.add(channels[(i + mine.size * 7 + Math.floor(Math.random() * CHANNELS)) % CHANNELS]!);
    return new ChaosClient([...mine], edgeUrls);
  });
  for (const c of clients) c.connect();
  await sleep(3_000);

  // The publisher: one Send at a time, each retried with its idempotency key until it is acknowledged.
  const sent: { seq: number; channel: string; startedAt: number }[] = [];
  let publishing = true;
  let retries = 0;
  let duplicateAcks = 0;
  const publisher = (async () => {
    const t0 = now();
    for (let seq = 1; publishing; seq++) {
      const due = t0 + (seq * 1000) / RATE;
      if (due > now()) await sleep(due - now());
      const channel = channels[seq % CHANNELS]!;
      const payload = Buffer.alloc(4);
      payload.writeUInt32LE(seq);
      const startedAt = now();
      for (;;) {
        try {
          const res = await pick(grpc).send({
            channel,
            event: "m",
            payload: { case: "binary", value: payload },
            idempotencyKey: `s${seq}`,
          });
          if (res.duplicate) duplicateAcks++;
          break;
        } catch {
          retries++;
          await sleep(100);
        }
      }
      sent.push({ seq, channel, startedAt });
    }
  })();

  // The network: each client's connection is cut every CUT_MS on average.
  let cuts = 0;
  const cutter = setInterval(
    () => {
      for (const i of live) if (proxies[i]!.cutOne()) cuts++;
    },
    CUT_MS / (CLIENTS / 3),
  );
  const start = now();
  const events: string[] = [];
  await sleep((SECONDS * 1000) / 3);
  if (redis) {
    events.push(
      `${((now() - start) / 1000).toFixed(0)} s: Redis killed (SIGKILL), restarted 1 s later, ${PERSIST ? "with its data (appendonly, fsync always)" : "empty"}`,
    );
    if (process.env.CHAOS_TRACE) console.log(`Redis killed at ${(now() / 1000).toFixed(2)}`);
    await redis.kill();
    await sleep(1_000);
    await redis.start();
    if (process.env.CHAOS_TRACE) console.log(`Redis back at ${(now() / 1000).toFixed(2)}`);
  }
  await sleep((SECONDS * 1000) / 3);
  events.push(`${((now() - start) / 1000).toFixed(0)} s: edge 3 killed (SIGKILL)`);
  live.delete(2);
  await edges[2]!.kill();
  await sleep((SECONDS * 1000) / 3);
  clearInterval(cutter);
  publishing = false;
  await publisher;
  await sleep(SETTLE_MS);

  // The count.
  let expected = 0;
  let lostTold = 0;
  let lostSilent = 0;
  let duplicated = 0;
  let deliveredTwice = 0;
  let outOfOrder = 0;
  let clientsTold = 0;
  let memberMismatches = 0;
  let memberChecks = 0;
  const mismatches: string[] = [];
  const truth = new Map<string, Set<string>>();
  for (const channel of channels) {
    const res = await grpc[0]!.getMembers({ channel });
    truth.set(channel, new Set(res.members.map((m) => m.id)));
  }
  for (const c of clients) {
    if (c.channels.some((ch) => c.told.get(ch)!.length > 0)) clientsTold++;
    for (const channel of c.channels) {
      const joinedAt = c.firstJoin.get(channel);
      if (joinedAt === undefined) continue;
      const got = c.received.get(channel)!;
      const counts = new Map<number, number>();
      for (const seq of got) counts.set(seq, (counts.get(seq) ?? 0) + 1);
      for (const n of counts.values()) if (n > 1) duplicated += n - 1;
      // A duplicate at the same position: delivered twice; at another: published twice.
      const positions = c.at.get(channel)!;
      const seen = new Set<string>();
      for (let i = 0; i < got.length; i++) {
        const key = `${got[i]} ${positions[i]}`;
        if (seen.has(key)) {
          deliveredTwice++;
          if (process.env.CHAOS_TRACE)
            mismatches.push(
              `delivered twice: ${channel} ${key}; its log: ${(c.log.get(channel) ?? []).join("; ")}; its connections: ${c.ids.join(", ")}`,
            );
        }
        seen.add(key);
      }
      for (let i = 1; i < got.length; i++) if (got[i]! < got[i - 1]!) outOfOrder++;
      const told = c.told.get(channel)!;
      for (const s of sent) {
        if (s.channel !== channel || s.startedAt <= joinedAt) continue;
        expected++;
        if (counts.has(s.seq)) continue;
        if (told.some((t) => t >= s.startedAt)) lostTold++;
        else {
          lostSilent++;
          if (process.env.CHAOS_TRACE)
            mismatches.push(
              `lost silently: ${channel} seq ${s.seq} sent at ${(s.startedAt / 1000).toFixed(2)}; its log: ${(c.log.get(channel) ?? []).join("; ")}; its connections: ${c.ids.join(", ")}`,
            );
        }
      }
      memberChecks++;
      const mine = new Set(c.members.get(channel)!.keys());
      const real = truth.get(channel)!;
      if (mine.size !== real.size || [...mine].some((id) => !real.has(id))) {
        memberMismatches++;
        const extra = [...mine].filter((id) => !real.has(id));
        const missing = [...real].filter((id) => !mine.has(id));
        mismatches.push(
          `${channel}: the client lists ${extra.join(", ") || "nothing"} too many and ${missing.join(", ") || "nothing"} too few; it saw: ${[...extra, ...missing].map((id) => `${id} [${(c.trace.get(`${channel} ${id}`) ?? []).join("; ")}]`).join(" ")}; told at ${c.told
            .get(channel)!
            .map((t) => (t / 1000).toFixed(2))
            .join(", ")}; its connections: ${c.ids.slice(-4).join(", ")}`,
        );
      }
    }
  }
  const connects = clients.reduce((n, c) => n + c.connects, 0);
  console.log(
    `\n### Chaos, ${redis ? "Redis mode (2 API nodes, 3 edges)" : "embedded mode (1 API, 3 edges)"}, recovery ${RECOVER ? "on" : "off"}\n`,
  );
  console.log(
    `${CLIENTS} clients × ${CHANNELS_PER_CLIENT} of ${CHANNELS} channels, ${SECONDS} s, ${RATE} events/s (${sent.length} sent, ${retries} Send retries, ${duplicateAcks} answered duplicate), ${cuts} TCP cuts, ${connects} connections opened; ${events.join("; ")}.\n`,
  );
  console.log(
    "| expected deliveries | received | lost, client told | lost silently | duplicated (of which one publication delivered twice) | out of order | clients told at least once | member lists ≠ GetMembers |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  console.log(
    `| ${expected} | ${expected - lostTold - lostSilent} | ${lostTold} | **${lostSilent}** | **${duplicated}** (${deliveredTwice}) | **${outOfOrder}** | ${clientsTold} | **${memberMismatches}** of ${memberChecks} |`,
  );
  for (const m of mismatches.slice(0, 8)) console.log(`- ${m}`);
  for (const c of clients) c.stop();
  for (const g of grpc) g.close();
  await Promise.all([...edges.slice(0, 2), ...apis].map((p) => p.stop()));
  for (const p of proxies) await p.close();
  await redis?.kill();
  redis?.remove();
  process.exit(0);
}

await main();
