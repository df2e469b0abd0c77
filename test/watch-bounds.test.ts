/**
 * WatchChannel's resource bounds, against a real API process: a watcher
 * that stops reading holds at most WATCH_MAX_QUEUED_BYTES of events in the
 * API, then its stream ends with RESOURCE_EXHAUSTED.
 */
import { connect as http2Connect, type ClientHttp2Stream } from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { WatchChannelRequestSchema } from "../gen/realtime/v1/realtime_pb.js";
import { WATCH_MAX_QUEUED_BYTES } from "../src/api/watch.js";
import { useCluster } from "./helpers/fixture.js";
import { envelope, envelopes } from "./helpers/raw-rpc.js";
import { sleep } from "./helpers/ws-client.js";

const KEY = "watch-bounds-key-0123456789";
const OTHER_KEY = "watch-bounds-other-key-0123456789";
/** Default bounds. */
const f = useCluster(1, { REALTIME_API_KEYS: `${KEY},${OTHER_KEY}` });
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
});
