/**
 * The SDK's recovery (docs/protocol.md, "Positions, recovery and history"),
 * on real API and edge processes and the real RealtimeClient, in both
 * encodings: a client whose connection the network cuts (a TCP proxy
 * between it and its edge) reconnects by itself, re-joins with the last
 * position it saw, and receives every event sent meanwhile, in order, once,
 * before onConnect; past what history keeps it gets channel:resync
 * ("not_recovered"); an edge that lost events sends Resync and the SDK says
 * so ("resync"); with recover: false it re-joins without a position;
 * getHistory reads the channel's events with their positions.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { ClientFrame, Join, ServerFrame } from "../gen/realtime/client/v1/client_pb.js";
import {
  RealtimeClient,
  type EncodingName,
  type MemberEvent,
  type MessageEvent,
  type RealtimeClientOptions,
  type ResyncEvent,
  type StreamPosition,
  type WebSocketConstructor,
} from "../src/client/index.js";
import { protoEncoding } from "../src/client/proto.js";
import { fromBinary, fromJsonString } from "@bufbuild/protobuf";
import { ClientFrameSchema } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { connected, sdkEncoding, waitFor } from "./helpers/sdk.js";
import { TcpProxy } from "./helpers/tcp-proxy.js";

const ENCODINGS: EncodingName[] = ["proto", "json"];
/** Long enough for a busy machine: every wait is for a condition, not a delay. */
const WAIT_MS = 20_000;

let cluster: Cluster;
let api: RealtimeTestClient;
/** Between the SDK and edge 0, so that a test can cut the client's connection as a network does. */
let wsProxy: TcpProxy;
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  cluster = await startCluster(1, { REALTIME_HISTORY_RULES: "small:=5" });
  api = realtimeClient(cluster.grpc);
  wsProxy = await TcpProxy.start(cluster.ws[0]!.replace(/^ws:\/\//, ""));
}, 60_000);

afterEach(async () => {
  wsProxy.reopen();
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

afterAll(async () => {
  await wsProxy?.close();
  api?.close();
  await cluster?.stop();
  await stopAll();
}, 30_000);

/** A RealtimeClient that records its events, resyncs, connects, and every frame on its sockets. */
class Recorder {
  readonly events: { event: string; payload: MessageEvent | MemberEvent }[] = [];
  readonly resyncs: ResyncEvent[] = [];
  readonly sent: ClientFrame[] = [];
  readonly received: ServerFrame[] = [];
  /** How many numbered events ("n") each onConnect found already delivered. */
  readonly atConnect: number[] = [];
  readonly rt: RealtimeClient;

  constructor(options: Partial<RealtimeClientOptions>) {
    this.rt = new RealtimeClient({
      url: `ws://${wsProxy.address}`,
      WebSocket: spyingWebSocket(this.sent, this.received),
      encoding: protoEncoding, // unless a test says otherwise
      reconnect: { initialDelayMs: 50, maxDelayMs: 250 },
      ...options,
    });
    this.rt.onAny((event, payload) => this.events.push({ event, payload }));
    this.rt.onResync((e) => this.resyncs.push(e));
    this.rt.onConnect(() => this.atConnect.push(this.named("n").length));
    cleanup.push(() => this.rt.close());
  }

  named(event: string, channel?: string): (MessageEvent | MemberEvent)[] {
    return this.events
      .filter((e) => e.event === event && (channel === undefined || e.payload.channel === channel))
      .map((e) => e.payload);
  }

  /** The numbers of the "n" events of channel, in the order they came. */
  numbers(channel: string): number[] {
    return this.named("n", channel).map((e) => e.message as number);
  }

  /** The join frames this client sent for channel, each with the reply it got. */
  joins(channel: string): { frame: ClientFrame; reply: ServerFrame | undefined }[] {
    return this.sent
      .filter((f) => f.command.case === "join" && f.command.value.channel === channel)
      .map((frame) => ({
        frame,
        reply: this.received.find((r) => r.frame.case === "reply" && r.frame.value.id === frame.id),
      }));
  }
}

/** ws's WebSocket, recording what the SDK sends and receives (decoded). */
function spyingWebSocket(sent: ClientFrame[], received: ServerFrame[]): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on("message", (data: Buffer, isBinary: boolean) =>
        received.push(protoEncoding.decodeServerFrame(isBinary ? new Uint8Array(data) : data.toString())),
      );
      const send = this.send.bind(this);
      this.send = ((data: string | Uint8Array) => {
        sent.push(
          typeof data === "string" ? fromJsonString(ClientFrameSchema, data) : fromBinary(ClientFrameSchema, data),
        );
        send(data);
      }) as WebSocket["send"];
    }
  };
}

const json = (n: number) => ({ case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } });

/** Sends "n" events numbered from..from+count-1 through the API, one after another. */
async function sendN(channel: string, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await api.send({ channel, event: "n", payload: json(i) });
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Cuts the client's connection and waits until the SDK noticed. */
async function cut(r: Recorder): Promise<void> {
  wsProxy.cut();
  await waitFor(() => !r.rt.isConnected(), "the SDK to see its connection cut", WAIT_MS);
}

/** Reopens the network and waits for the client's next onConnect (its session restored). */
async function reconnect(r: Recorder): Promise<void> {
  const before = r.atConnect.length;
  wsProxy.reopen();
  await waitFor(() => r.atConnect.length > before, "the SDK to reconnect", WAIT_MS);
}

function positionsOf(r: Recorder, channel: string): StreamPosition[] {
  return r.events.filter((e) => e.payload.channel === channel).map((e) => e.payload.position!);
}

describe("recovery after a reconnect", () => {
  it("re-joins with the last position seen and receives every event sent meanwhile, in order, once, before onConnect", async () => {
    for (const encoding of ENCODINGS) {
      const channel = `rec-${encoding}`;
      const r = new Recorder({ encoding: sdkEncoding(encoding) });
      await connected(r.rt);
      const joined = await r.rt.join(channel);
      expect(joined.recovered).toBe(false);
      expect(joined.position).toEqual({ offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string });
      await sendN(channel, 1, 2);
      await waitFor(() => r.numbers(channel).length === 2, "2 events", WAIT_MS);
      const lastSeen = r.named("n", channel).at(-1)!.position!;

      await cut(r);
      await sendN(channel, 3, 10);
      await reconnect(r);

      // Replayed before the client was open again.
      expect(r.atConnect.at(-1)).toBe(12);
      await sendN(channel, 13, 1);
      await waitFor(() => r.numbers(channel).length >= 13, "the live event after the replay", WAIT_MS);
      expect(r.numbers(channel)).toEqual(range(1, 13));
      const offsets = positionsOf(r, channel).map((p) => p.offset);
      expect(offsets).toEqual([...offsets].sort((a, b) => (a < b ? -1 : 1)));
      expect(new Set(offsets).size).toBe(offsets.length);
      expect(r.resyncs).toEqual([]);

      // On the wire: the re-join carried since = the last position seen, and the edge answered recovered.
      const rejoin = r.joins(channel).at(-1)!;
      expect(rejoin.frame.command.value).toMatchObject({ channel, echo: false, since: lastSeen });
      expect(rejoin.reply?.frame.value).toMatchObject({ recovered: true });
      r.rt.close();
    }
  }, 120_000);

  it("after its edge is killed and replaced on the same port, recovers from the hub's history what was sent meanwhile", async () => {
    const proc = await cluster.addEdge();
    const url = proc.ready.ws!;
    const channel = "rec-killed";
    const r = new Recorder({ url });
    await connected(r.rt);
    await r.rt.join(channel);
    await sendN(channel, 1, 1);
    await waitFor(() => r.numbers(channel).length === 1, "1 event", WAIT_MS);

    await proc.kill();
    await waitFor(() => !r.rt.isConnected(), "the SDK to see its edge gone", WAIT_MS);
    await sendN(channel, 2, 5);
    const before = r.atConnect.length;
    const replacement = await cluster.addEdge({ REALTIME_WS_PORT: new URL(url).port });
    cleanup.push(() => replacement.stop());
    await waitFor(() => r.atConnect.length > before, "the reconnect", WAIT_MS);

    expect(r.atConnect.at(-1)).toBe(6);
    expect(r.numbers(channel)).toEqual(range(1, 6));
    expect(r.resyncs).toEqual([]);
    expect(r.joins(channel).at(-1)!.reply?.frame.value).toMatchObject({ recovered: true });
  }, 60_000);

  it("past what history keeps, the re-join is not recovered: channel:resync with reason not_recovered, and the channel goes on", async () => {
    for (const encoding of ENCODINGS) {
      const channel = `small:gone-${encoding}`;
      const r = new Recorder({ encoding: sdkEncoding(encoding) });
      await connected(r.rt);
      await r.rt.join(channel);
      await sendN(channel, 1, 1);
      await waitFor(() => r.numbers(channel).length === 1, "1 event", WAIT_MS);

      await cut(r);
      // The channel keeps 5 events: 8 push the gap out of its history.
      await sendN(channel, 2, 8);
      await reconnect(r);

      expect(r.resyncs).toEqual([
        { channel, reason: "not_recovered", position: { offset: expect.any(BigInt), epoch: expect.any(String) } },
      ]);
      expect(r.joins(channel).at(-1)!.reply?.frame.value).toMatchObject({ recovered: false });
      // Still joined: the next event arrives; none of the lost ones was replayed.
      await sendN(channel, 99, 1);
      await waitFor(() => r.numbers(channel).includes(99), "the event after the resync", WAIT_MS);
      expect(r.numbers(channel)).toEqual([1, 99]);
      r.rt.close();
    }
  }, 120_000);

  it("with recover: false, re-joins without since and emits no channel:resync; what was sent meanwhile is lost", async () => {
    for (const encoding of ENCODINGS) {
      const channel = `norec-${encoding}`;
      const r = new Recorder({ encoding: sdkEncoding(encoding), recover: false });
      await connected(r.rt);
      await r.rt.join(channel);
      await sendN(channel, 1, 1);
      await waitFor(() => r.numbers(channel).length === 1, "1 event", WAIT_MS);

      await cut(r);
      await sendN(channel, 2, 3);
      await reconnect(r);

      const joins = r.joins(channel);
      expect(joins.length).toBe(2);
      expect(joins.map((j) => (j.frame.command.value as Join).since)).toEqual([undefined, undefined]);
      await sendN(channel, 5, 1);
      await waitFor(() => r.numbers(channel).includes(5), "the event after the reconnect", WAIT_MS);
      expect(r.numbers(channel)).toEqual([1, 5]);
      expect(r.resyncs).toEqual([]);
      r.rt.close();
    }
  }, 120_000);
});

describe("channel:resync from the edge", () => {
  it("an edge that lost events it cannot fill from history sends Resync: channel:resync with reason resync", async () => {
    // A second edge whose link to the API goes through a proxy that cuts it.
    const linkProxy = await TcpProxy.start(cluster.api.ready.link!);
    cleanup.push(() => linkProxy.close());
    const edge = await cluster.addEdge({ REALTIME_LINK_URL: linkProxy.address });
    for (const encoding of ENCODINGS) {
      const channel = `small:lost-${encoding}`;
      const r = new Recorder({ encoding: sdkEncoding(encoding), url: edge.ready.ws! });
      await connected(r.rt);
      await r.rt.join(channel);
      await sendN(channel, 1, 1);
      await waitFor(() => r.numbers(channel).length === 1, "1 event", WAIT_MS);
      const lastSeen = r.named("n", channel).at(-1)!.position!;

      linkProxy.cut();
      // More than the channel keeps (5), sent while the edge cannot hear them.
      await sendN(channel, 2, 8);
      linkProxy.reopen();

      await waitFor(() => r.resyncs.length > 0, "channel:resync", WAIT_MS);
      expect(r.resyncs).toEqual([{ channel, reason: "resync", position: lastSeen }]);
      expect(r.rt.isConnected()).toBe(true);
      await sendN(channel, 99, 1);
      await waitFor(() => r.numbers(channel).includes(99), "the event after the resync", WAIT_MS);
      expect(r.numbers(channel)).toEqual([1, 99]);
      r.rt.close();
    }
  }, 120_000);
});

describe("getHistory", () => {
  it("reads the channel's events with their positions, as listeners got them: limit, reverse, since, complete", async () => {
    for (const encoding of ENCODINGS) {
      const channel = `hist-${encoding}`;
      const r = new Recorder({ encoding: sdkEncoding(encoding) });
      await connected(r.rt);
      const { position: joinedAt } = await r.rt.join(channel);
      await sendN(channel, 1, 3);
      await waitFor(() => r.numbers(channel).length === 3, "3 events", WAIT_MS);
      const live = r.named("n", channel);

      const all = await r.rt.getHistory(channel);
      expect(all.events.map((e) => e.event)).toEqual(["channel:join", "n", "n", "n"]);
      expect(all.events[0]!.payload.position).toEqual(joinedAt);
      expect((all.events[0]!.payload as MemberEvent).message.id).toBe(r.rt.getSocketId());
      expect(all.events.slice(1).map((e) => e.payload)).toEqual(live);
      expect(all.position).toEqual(live.at(-1)!.position);

      const newest = await r.rt.getHistory(channel, { limit: 2, reverse: true });
      expect(newest.events.map((e) => e.payload.message)).toEqual([3, 2]);

      const after = await r.rt.getHistory(channel, { since: live[0]!.position });
      expect(after.events.map((e) => e.payload.message)).toEqual([2, 3]);
      expect(after.complete).toBe(true);
      r.rt.close();
    }
  }, 60_000);
});
