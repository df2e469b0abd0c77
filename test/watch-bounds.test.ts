/**
 * WatchChannel's resource bounds, against a real API process: a watcher
 * that stops reading holds at most WATCH_MAX_QUEUED_BYTES of events in the
 * API, then its stream ends with RESOURCE_EXHAUSTED; one connection may
 * hold WATCH_MAX_STREAMS_PER_CONNECTION streams and one API key
 * REALTIME_WATCH_MAX_STREAMS_PER_KEY, over gRPC and Connect together; past
 * either, a new stream gets RESOURCE_EXHAUSTED naming the bound, and ending
 * streams frees room.
 */
import { connect as http2Connect, type ClientHttp2Stream } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import { Realtime, WatchChannelRequestSchema } from "../gen/realtime/v1/realtime_pb.js";
import { serviceDefinition } from "../src/api/grpc/adapter.js";
import { parseApiKeys } from "../src/auth/api-keys.js";
import { WATCH_MAX_QUEUED_BYTES, WATCH_MAX_STREAMS_PER_CONNECTION } from "../src/api/watch.js";
import { useCluster } from "./helpers/fixture.js";
import { envelope, envelopes } from "./helpers/raw-rpc.js";
import { sleep } from "./helpers/ws-client.js";

const KEY = "watch-bounds-key-0123456789";
const OTHER_KEY = "watch-bounds-other-key-0123456789";
const PER_KEY = 4;
/** Default bounds. */
const f = useCluster(1, { REALTIME_API_KEYS: `${KEY},${OTHER_KEY}` });
/** A small per-key bound. */
const small = useCluster(0, {
  REALTIME_API_KEYS: `${KEY},${OTHER_KEY}`,
  REALTIME_WATCH_MAX_STREAMS_PER_KEY: String(PER_KEY),
});
const auth = (key = KEY) => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${key}`);
  return m;
};

/** A WatchChannel call over raw HTTP/2 whose reader can be paused: a client that stops reading. */
function rawWatch(address: string, channel: string, key = KEY) {
  const session = http2Connect(`http://${address}`);
  const stream: ClientHttp2Stream = session.request({
    ":method": "POST",
    ":path": "/realtime.v1.Realtime/WatchChannel",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${key}`,
  });
  const chunks: Buffer[] = [];
  let bytes = 0;
  let status: { code: number; message: string } | undefined;
  stream.on("data", (c: Buffer) => (chunks.push(c), (bytes += c.length)));
  stream.on("trailers", (t) => {
    status = { code: Number(t["grpc-status"]), message: decodeURIComponent(String(t["grpc-message"] ?? "")) };
  });
  stream.on("error", () => {});
  stream.end(
    Buffer.from(envelope(toBinary(WatchChannelRequestSchema, create(WatchChannelRequestSchema, { channel })))),
  );
  return {
    stream,
    get bytes() {
      return bytes;
    },
    get status() {
      return status;
    },
    messages: () => envelopes(Buffer.concat(chunks)).length,
    close: () => session.destroy(),
  };
}

describe("WatchChannel bounds", () => {
  it(`a watcher that stops reading ends with RESOURCE_EXHAUSTED once ${WATCH_MAX_QUEUED_BYTES} bytes of events wait for it`, async () => {
    const channel = "stalled";
    const w = rawWatch(f.cluster.grpc, channel);
    // The snapshot arrives: the watch is in effect; then the client stops reading.
    for (let i = 0; w.bytes === 0 && i < 100; i++) await sleep(20);
    expect(w.bytes).toBeGreaterThan(0);
    w.stream.pause();
    const api = f.api;
    const EVENT_BYTES = 60 * 1024;
    const EVENTS = 200; // 11.7 MiB: many times the bound
    const payload = { case: "binary" as const, value: new Uint8Array(EVENT_BYTES) };
    for (let i = 0; i < EVENTS; i++) await api.send({ channel, event: "big", payload }, auth());
    await sleep(200);
    // Read again: what the API kept for the watcher, then the status.
    w.stream.resume();
    for (let i = 0; !w.status && i < 150; i++) await sleep(20);
    const received = w.messages() - 1; // minus the snapshot
    const outcome = { status: w.status, received, receivedBytes: received * EVENT_BYTES };
    w.close();
    console.log(
      `stalled watcher: ${received} of ${EVENTS} events of 60 KiB reached it, then ${JSON.stringify(w.status)}`,
    );
    expect(outcome.status, `no status after ${received} of ${EVENTS} events`).toBeDefined();
    expect(outcome.status!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(outcome.status!.message).toMatch(
      /^the watcher fell 1 MiB of events \(WATCH_MAX_QUEUED_BYTES\) behind the channel: .*watch again/,
    );
    // What reached the client: the bound, plus what the transport had taken
    // before it (HTTP/2 windows and stream buffers), far from all 200.
    expect(outcome.receivedBytes).toBeLessThan(WATCH_MAX_QUEUED_BYTES + 2 * 1024 * 1024);
  });

  it(`one connection holds at most ${WATCH_MAX_STREAMS_PER_CONNECTION} streams: more get RESOURCE_EXHAUSTED; ending some frees room`, async () => {
    const watcher = grpcWatcher(f.cluster.grpc);
    const calls = Array.from({ length: WATCH_MAX_STREAMS_PER_CONNECTION + 3 }, () => watcher.open(KEY));
    const outcomes = await Promise.all(calls.map((c) => c.outcome));
    expect(outcomes.filter((o) => o === "open").length).toBe(WATCH_MAX_STREAMS_PER_CONNECTION);
    const refused = outcomes.filter((o) => o !== "open");
    expect(refused.map((e) => e.code)).toEqual([
      Code.ResourceExhausted,
      Code.ResourceExhausted,
      Code.ResourceExhausted,
    ]);
    expect(refused[0]!.rawMessage).toMatch(
      new RegExp(
        `this connection already has ${WATCH_MAX_STREAMS_PER_CONNECTION} WatchChannel, WatchStats, WatchLifecycle or WatchMessages streams open .*another connection`,
      ),
    );
    // Another connection is not held to this one's bound.
    const other = grpcWatcher(f.cluster.grpc);
    expect(await other.open(KEY).outcome).toBe("open");
    // Cancel two: two new ones fit, a third does not.
    calls
      .filter((_, i) => outcomes[i] === "open")
      .slice(0, 2)
      .forEach((c) => c.cancel());
    await sleep(200);
    const more = [watcher.open(KEY), watcher.open(KEY), watcher.open(KEY)];
    const again = await Promise.all(more.map((c) => c.outcome));
    expect(again.filter((o) => o === "open").length).toBe(2);
    for (const c of [...calls, ...more]) c.cancel();
    watcher.close();
    other.close();
  });

  it(`one API key holds at most REALTIME_WATCH_MAX_STREAMS_PER_KEY streams, over gRPC and Connect together`, async () => {
    const g = grpcWatcher(small.cluster.grpc);
    const http = `http://${small.cluster.http}`;
    const opened = [g.open(KEY), g.open(KEY), connectWatch(http, KEY), connectWatch(http, KEY)];
    expect(await Promise.all(opened.map((c) => c.outcome))).toEqual(["open", "open", "open", "open"]);
    for (const extra of [g.open(KEY), connectWatch(http, KEY)]) {
      const outcome = await extra.outcome;
      expect(outcome).not.toBe("open");
      const err = outcome as ConnectError;
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toMatch(
        new RegExp(
          `API key ${parseApiKeys(KEY)[0]!.fingerprint} already has ${PER_KEY} WatchChannel, WatchStats, WatchLifecycle or WatchMessages streams open \\(REALTIME_WATCH_MAX_STREAMS_PER_KEY\\)`,
        ),
      );
    }
    // Another key has its own room.
    const other = connectWatch(http, OTHER_KEY);
    expect(await other.outcome).toBe("open");
    // Ending one of the key's streams frees a place.
    opened[2]!.cancel();
    await sleep(200);
    const next = g.open(KEY);
    expect(await next.outcome).toBe("open");
    for (const c of [...opened, other, next]) c.cancel();
    g.close();
  });
});

type Outcome = "open" | ConnectError;

/** WatchChannel calls over one grpc-js connection of their own: each resolves "open" at its snapshot, or with its error. */
function grpcWatcher(address: string) {
  const Client = grpc.makeGenericClientConstructor(serviceDefinition(Realtime), "Realtime");
  // A connection of its own (grpc-js shares connections between clients by default).
  const client = new Client(address, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  }) as unknown as grpc.Client & {
    watchChannel(req: unknown, md: grpc.Metadata): grpc.ClientReadableStream<unknown>;
  };
  return {
    open(key: string) {
      const call = client.watchChannel(create(WatchChannelRequestSchema, { channel: "many" }), auth(key));
      const outcome = new Promise<Outcome>((resolve) => {
        call.once("data", () => resolve("open"));
        call.on("status", (s: grpc.StatusObject) => resolve(new ConnectError(s.details, s.code as number)));
        call.on("error", () => {});
      });
      return { outcome, cancel: () => call.cancel() };
    },
    close: () => client.close(),
  };
}

/** A WatchChannel call over Connect (HTTP/1.1: a connection of its own). */
function connectWatch(baseUrl: string, key: string) {
  const client = createClient(Realtime, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  const abort = new AbortController();
  const outcome = new Promise<Outcome>((resolve) => {
    void (async () => {
      try {
        const options = { headers: { authorization: `Bearer ${key}` }, signal: abort.signal };
        // Read on (the stream stays open) until cancelled.
        for await (const _ of client.watchChannel({ channel: "many" }, options)) resolve("open");
        resolve(new ConnectError("the stream ended"));
      } catch (err) {
        resolve(ConnectError.from(err));
      }
    })();
  });
  return { outcome, cancel: () => abort.abort() };
}
