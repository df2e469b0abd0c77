/**
 * A request that is not valid protobuf is the caller's fault on every port:
 * INVALID_ARGUMENT with a message naming the message type, counted as
 * INVALID_ARGUMENT in the RPC metrics (never INTERNAL, which the shipped
 * error-rate alert watches), whatever the protocol: gRPC, Connect binary
 * (unary and streaming) and gRPC-Web. In a Publish stream, such a message
 * fails alone, listed with its index, and the stream goes on.
 */
import { createServer } from "node:http2";
import { gzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, it } from "vitest";
import { EventSchema } from "../gen/realtime/client/v1/client_pb.js";
import {
  PublishRequestSchema,
  PublishResponseSchema,
  Realtime,
  type PublishResponse,
} from "../gen/realtime/v1/realtime_pb.js";
import { createConnectHandler } from "../src/api/connect/adapter.js";
import { serviceEntry } from "../src/api/service-entry.js";
import { REQUEST_DECODERS } from "../src/wire/request-codec.js";
import { createRealtimeService } from "../src/api/service.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { IdGenerator } from "../src/core/publication.js";
import { createMetrics, rpcMetricsInterceptor } from "../src/metrics/index.js";
import { useCluster } from "./helpers/fixture.js";
import { Samples, scrape } from "./helpers/prom.js";
import { connectStreamRaw, connectUnaryRaw, envelope, grpcRaw, grpcWebRaw, type RawStatus } from "./helpers/raw-rpc.js";

const f = useCluster(1);

/** Bytes that are no protobuf message: field 1, length 127, one byte of data. */
const TRUNCATED = Uint8Array.of(0x0a, 0x7f, 0x61);
/** GetMembersRequest { channel: "c" } */
const GET_MEMBERS = Uint8Array.of(0x0a, 0x01, 0x63);
/** Field 1 with wire type 7, which does not exist. */
const BAD_WIRE_TYPE = Uint8Array.of(0x0f, 0x01);

const count = (s: Samples, labels: Record<string, string>) => {
  try {
    return s.get("switchboard_rpc_handled_total", labels);
  } catch {
    return 0;
  }
};

type Protocol = "grpc" | "connect" | "grpc-web";
const PROTOCOLS: Protocol[] = ["grpc", "connect", "grpc-web"];

function call(protocol: Protocol, method: string, kind: "unary" | "server", body: Uint8Array): Promise<RawStatus> {
  const path = `/realtime.v1.Realtime/${method}`;
  const http = `http://${f.cluster.http}`;
  if (protocol === "grpc") return grpcRaw(f.cluster.grpc, path, kind, [body]);
  if (protocol === "grpc-web") return grpcWebRaw(http, path, [body]);
  return kind === "unary" ? connectUnaryRaw(http, path, body) : connectStreamRaw(http, path, [body]);
}

const CASES = [
  { method: "Send", kind: "unary", type: "realtime.v1.SendRequest" },
  { method: "GetMembers", kind: "unary", type: "realtime.v1.GetMembersRequest" },
  { method: "WatchChannel", kind: "server", type: "realtime.v1.WatchChannelRequest" },
] as const;

describe("undecodable requests", () => {
  for (const c of CASES) {
    for (const [name, bytes] of [
      ["truncated", TRUNCATED],
      ["bad wire type", BAD_WIRE_TYPE],
    ] as const) {
      it(`${c.method} (${c.kind}), ${name}: INVALID_ARGUMENT naming ${c.type} on every protocol, counted as such`, async () => {
        const metrics = `http://${f.cluster.http}/metrics`;
        const labels = { service: "realtime.v1.Realtime", method: c.method };
        const outcomes = [];
        for (const protocol of PROTOCOLS) {
          const before = await scrape(metrics);
          const status = await call(protocol, c.method, c.kind, bytes);
          const after = await scrape(metrics);
          const delta = (code: string) => count(after, { ...labels, code }) - count(before, { ...labels, code });
          outcomes.push({
            protocol,
            code: status.code,
            message: status.message,
            ...(protocol === "connect" && c.kind === "unary" ? { http: status.http } : {}),
            counted: { INVALID_ARGUMENT: delta("INVALID_ARGUMENT"), INTERNAL: delta("INTERNAL") },
          });
        }
        const message = expect.stringMatching(
          new RegExp(`^the request is not a valid ${c.type.replace(/\./g, "\\.")} message: `),
        );
        expect(outcomes).toEqual(
          PROTOCOLS.map((protocol) => ({
            protocol,
            code: "InvalidArgument",
            message,
            ...(protocol === "connect" && c.kind === "unary" ? { http: 400 } : {}),
            counted: { INVALID_ARGUMENT: 1, INTERNAL: 0 },
          })),
        );
      });
    }
  }

  it("compressed requests are judged after decompression: good ones are served, bad ones INVALID_ARGUMENT", async () => {
    const url = (m: string) => `http://${f.cluster.http}/realtime.v1.Realtime/${m}`;
    const unary = (body: Uint8Array) =>
      fetch(url("GetMembers"), {
        method: "POST",
        headers: { "content-type": "application/proto", "content-encoding": "gzip" },
        body: gzipSync(body),
      });
    expect((await unary(GET_MEMBERS)).status).toBe(200);
    const bad = await unary(TRUNCATED);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/not a valid realtime\.v1\.GetMembersRequest/);
    // gRPC-Web: the envelope's compressed flag, with grpc-encoding.
    const web = (body: Uint8Array) =>
      fetch(url("GetMembers"), {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" },
        body: envelope(gzipSync(body), 1),
      }).then(async (res) => new TextDecoder().decode(await res.arrayBuffer()));
    expect(await web(GET_MEMBERS)).toMatch(/grpc-status: ?0/);
    const trailer = await web(TRUNCATED);
    expect(trailer).toMatch(/grpc-status: ?3\r\n/);
    expect(trailer).toMatch(/grpc-message: the%20request%20is%20not%20a%20valid/);
  });

  it("the server keeps answering good requests on every protocol afterwards", async () => {
    const ok = await call("connect", "GetMembers", "unary", GET_MEMBERS);
    expect(ok.code).toBe("Ok");
    expect((await call("grpc-web", "GetMembers", "unary", GET_MEMBERS)).code).toBe("Ok");
    expect((await call("grpc", "GetMembers", "unary", GET_MEMBERS)).code).toBe("Ok");
  });
});

const publish = (event: string) =>
  toBinary(
    PublishRequestSchema,
    create(PublishRequestSchema, {
      event: {
        case: "send",
        value: { channel: "undecodable", event, payload: { case: "json", value: fromJson(ValueSchema, 1) } },
      },
    }),
  );
/** Publish stream: good, garbage, good, garbage (another kind), good. */
const PUBLISH_STREAM = [publish("e0"), TRUNCATED, publish("e2"), BAD_WIRE_TYPE, publish("e4")];

/** What a Publish stream of PUBLISH_STREAM must answer: the bad ones listed by index, the rest published, OK. */
function expectIndexedFailures(status: RawStatus) {
  expect(status.code).toBe("Ok");
  const responses: PublishResponse[] = status.messages.map((m) => fromBinary(PublishResponseSchema, m));
  expect(Number(responses.at(-1)!.handled)).toBe(5);
  const errors = responses
    .flatMap((r) => r.errors)
    .map((e) => ({ index: Number(e.index), code: e.code, message: e.message }));
  const message = expect.stringMatching(/^the request is not a valid realtime\.v1\.PublishRequest message: /);
  expect(errors).toEqual([
    { index: 1, code: 3, message },
    { index: 3, code: 3, message },
  ]);
}

describe("Publish: an undecodable message is an error for its index, and the stream goes on", () => {
  it("over gRPC", async () => {
    const c = await f.client(0, "json");
    await c.ok({ command: { case: "join", value: { channel: "undecodable" } } });
    const status = await grpcRaw(f.cluster.grpc, "/realtime.v1.Realtime/Publish", "bidi", PUBLISH_STREAM);
    expectIndexedFailures(status);
    await c.event("e4");
    expect(["e0", "e2", "e4"].map((e) => c.events(e).length)).toEqual([1, 1, 1]);
  });

  // The HTTP port speaks HTTP/1.1, where connect-node refuses bidi streams
  // (docs/reach.md); the Connect adapter is the same over HTTP/2.
  const servers: { close(): void }[] = [];
  afterAll(() => servers.forEach((s) => s.close()));
  async function serveConnectH2() {
    const broker = new MemoryBroker();
    const delivered: string[] = [];
    const edge = broker.attach((pub) => delivered.push(fromBinary(EventSchema, pub.event).event), true);
    await edge.subscribe("undecodable");
    const presence = new MemoryPresence();
    const service = createRealtimeService({
      broker: broker.attach(() => {}, false),
      presence: presence.view("api"),
      limits: DEFAULT_LIMITS,
      eventIds: new IdGenerator(),
      watchers: (h) => broker.attach(h, false),
    });
    const metrics = createMetrics({ role: "api", processMetrics: false });
    const handler = createConnectHandler(
      [
        serviceEntry(Realtime, service, {
          requestDecoders: REQUEST_DECODERS,
          interceptor: rpcMetricsInterceptor(metrics),
        }),
      ],
      { readMaxBytes: 1 << 20 },
    );
    const server = createServer(handler as never);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { url: `h2c://127.0.0.1:${(server.address() as AddressInfo).port}`, delivered, metrics };
  }

  for (const protocol of ["connect", "grpc-web"] as const) {
    it(`over ${protocol} (HTTP/2)`, async () => {
      const { url, delivered } = await serveConnectH2();
      const raw = protocol === "connect" ? connectStreamRaw : grpcWebRaw;
      const status = await raw(url, "/realtime.v1.Realtime/Publish", PUBLISH_STREAM);
      expectIndexedFailures(status);
      expect(delivered).toEqual(["e0", "e2", "e4"]);
    });
  }

  it("the same bytes as WatchChannel and Send over Connect on HTTP/2 are INVALID_ARGUMENT, counted as such", async () => {
    const { url, metrics } = await serveConnectH2();
    const watch = await connectStreamRaw(url, "/realtime.v1.Realtime/WatchChannel", [TRUNCATED]);
    expect(watch.code).toBe("InvalidArgument");
    const send = await connectUnaryRaw(url, "/realtime.v1.Realtime/Send", TRUNCATED);
    expect(send.code).toBe("InvalidArgument");
    const samples = new Samples(await metrics.scrape());
    expect(count(samples, { method: "WatchChannel", code: "INVALID_ARGUMENT" })).toBe(1);
    expect(count(samples, { method: "Send", code: "INVALID_ARGUMENT" })).toBe(1);
  });
});
