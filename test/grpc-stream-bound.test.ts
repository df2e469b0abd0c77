/**
 * One client connection cannot make the API hold streams without bound:
 * the gRPC port announces SETTINGS_MAX_CONCURRENT_STREAMS
 * (GRPC_MAX_CONCURRENT_STREAMS), so streams that no RPC of ours bounds
 * itself (grpc.health.v1 Watch, server reflection) are as bounded per
 * connection as WatchChannel and its kin are (WatchStreams). A real API
 * process, a raw HTTP/2 client.
 */
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GRPC_MAX_CONCURRENT_STREAMS } from "../src/core/limits.js";
import { startProcess, type Proc } from "./helpers/cluster.js";

let api: Proc;
beforeAll(async () => {
  api = await startProcess("api", { REALTIME_GRPC_PORT: "0", REALTIME_HTTP_PORT: "0", REALTIME_LINK_PORT: "0" });
});
afterAll(() => api.stop());

/** An empty HealthCheckRequest (service ""), gRPC length-prefixed. */
const EMPTY_REQUEST = Buffer.from([0, 0, 0, 0, 0]);

describe("gRPC port: concurrent streams per connection", () => {
  it("holds at most GRPC_MAX_CONCURRENT_STREAMS streams of one connection: a health Watch stream past it is not served", async () => {
    const session = http2.connect(`http://${api.ready.grpc}`);
    const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
    expect(settings.maxConcurrentStreams).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    const answered = new Set<number>();
    const refused = new Set<number>();
    const streams: http2.ClientHttp2Stream[] = [];
    const open = (i: number) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/grpc.health.v1.Health/Watch",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("data", () => answered.add(i));
      stream.on("error", () => refused.add(i));
      stream.end(EMPTY_REQUEST);
      streams[i] = stream;
    };
    for (let i = 0; i <= GRPC_MAX_CONCURRENT_STREAMS; i++) open(i);
    const last = GRPC_MAX_CONCURRENT_STREAMS;
    await expect.poll(() => answered.size, { timeout: 20_000, interval: 50 }).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    await new Promise((r) => setTimeout(r, 500));
    // The one past the bound is held back (Node 20's HTTP/2 server) or refused (Node 24's: ENHANCE_YOUR_CALM), never served.
    expect(answered.has(last)).toBe(false);
    expect(answered.size).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    // One ends: a stream fits again. Node 20's server serves the one it held; Node 24's refuses it then, and serves a new one.
    streams[0]!.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => answered.has(last) || refused.has(last), { timeout: 20_000, interval: 50 }).toBe(true);
    if (refused.has(last)) {
      open(last + 1);
      await expect.poll(() => answered.has(last + 1), { timeout: 20_000, interval: 50 }).toBe(true);
    }
    for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
    session.close();
  });
});
