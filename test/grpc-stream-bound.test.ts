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
  it(`holds at most GRPC_MAX_CONCURRENT_STREAMS streams of one connection: health Watch streams past it wait for one to end`, async () => {
    const session = http2.connect(`http://${api.ready.grpc}`);
    const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
    expect(settings.maxConcurrentStreams).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    const answered = new Set<number>();
    const streams: http2.ClientHttp2Stream[] = [];
    for (let i = 0; i <= GRPC_MAX_CONCURRENT_STREAMS; i++) {
      const stream = session.request({
        ":method": "POST",
        ":path": "/grpc.health.v1.Health/Watch",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("data", () => answered.add(i));
      stream.on("error", () => {});
      stream.end(EMPTY_REQUEST);
      streams.push(stream);
    }
    // The first GRPC_MAX_CONCURRENT_STREAMS are served; the last waits (the client holds it back).
    await expect.poll(() => answered.size, { timeout: 30_000, interval: 50 }).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    await new Promise((r) => setTimeout(r, 500));
    expect(answered.size).toBe(GRPC_MAX_CONCURRENT_STREAMS);
    expect(answered.has(GRPC_MAX_CONCURRENT_STREAMS)).toBe(false);
    // One ends: the one that waited is served.
    streams[0]!.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => answered.has(GRPC_MAX_CONCURRENT_STREAMS), { timeout: 30_000, interval: 50 }).toBe(true);
    for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
    session.close();
  });
});
