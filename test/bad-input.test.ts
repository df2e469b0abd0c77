/**
 * Bad input gets a clear error and never crashes a process: the gRPC API
 * answers INVALID_ARGUMENT / RESOURCE_EXHAUSTED, the edge an error reply or
 * a documented close code.
 */
import { create, fromJson, toBinary } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Client, credentials, status } from "@grpc/grpc-js";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientFrameSchema, ErrorCode } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { TestClient } from "./helpers/ws-client.js";

let cluster: Cluster;
let api: RealtimeTestClient;
const json = (v: unknown) => fromJson(ValueSchema, v as never);
const ok = { case: "json" as const, value: json({ ok: true }) };

beforeAll(async () => {
  cluster = await startCluster(1, { REALTIME_MAX_PAYLOAD_BYTES: "4096" });
  api = realtimeClient(cluster.grpc);
});

afterAll(async () => {
  api?.close();
  await cluster?.stop();
  await stopAll();
});

async function grpcError(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error("expected the call to fail");
}

describe("gRPC API", () => {
  const cases: [string, () => Promise<unknown>, number, RegExp][] = [
    [
      "empty channel",
      () => api.send({ channel: "", event: "e", payload: ok }),
      status.INVALID_ARGUMENT,
      /channel is required/,
    ],
    [
      "over-long channel",
      () => api.send({ channel: "c".repeat(129), event: "e", payload: ok }),
      status.INVALID_ARGUMENT,
      /129 characters long; the limit is 128/,
    ],
    [
      "channel with a space",
      () => api.send({ channel: "a b", event: "e", payload: ok }),
      status.INVALID_ARGUMENT,
      /character outside/,
    ],
    [
      "empty event",
      () => api.send({ channel: "c", event: "", payload: ok }),
      status.INVALID_ARGUMENT,
      /event is required/,
    ],
    [
      "over-long event",
      () => api.broadcast({ event: "e".repeat(65), payload: ok }),
      status.INVALID_ARGUMENT,
      /limit is 64/,
    ],
    [
      "event with a slash",
      () => api.broadcast({ event: "a/b", payload: ok }),
      status.INVALID_ARGUMENT,
      /character outside/,
    ],
    [
      "reserved event",
      () => api.send({ channel: "c", event: "channel:join", payload: ok }),
      status.INVALID_ARGUMENT,
      /reserved/,
    ],
    ["missing payload", () => api.send({ channel: "c", event: "e" }), status.INVALID_ARGUMENT, /payload is required/],
    ["missing broadcast payload", () => api.broadcast({ event: "e" }), status.INVALID_ARGUMENT, /payload is required/],
    [
      "GetMembers without channel",
      () => api.getMembers({ channel: "" }),
      status.INVALID_ARGUMENT,
      /channel is required/,
    ],
    [
      "payload over the limit",
      () => api.send({ channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(5000) } }),
      status.RESOURCE_EXHAUSTED,
      /limit is 4096 bytes/,
    ],
    [
      "payload over the limit, under the request limit",
      () => api.send({ channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(64 * 1024) } }),
      status.RESOURCE_EXHAUSTED,
      /limit is 4096 bytes/,
    ],
    [
      "request over the request limit",
      () => api.send({ channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(1024 * 1024 + 1) } }),
      status.RESOURCE_EXHAUSTED,
      /larger than max/,
    ],
    ["empty batch", () => api.sendBatch({ requests: [] }), status.INVALID_ARGUMENT, /a batch holds 1 to 1000/],
    [
      "batch of 1001",
      () =>
        api.sendBatch({ requests: Array.from({ length: 1001 }, () => ({ channel: "c", event: "e", payload: ok })) }),
      status.INVALID_ARGUMENT,
      /1001 events/,
    ],
    [
      "batch with one bad event",
      () =>
        api.sendBatch({
          requests: [
            { channel: "c", event: "e", payload: ok },
            { channel: "c", event: "e" },
          ],
        }),
      status.INVALID_ARGUMENT,
      /^requests\[1\]: payload is required/,
    ],
    [
      "batch with one event over the limit",
      () =>
        api.sendBatch({
          requests: [{ channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(5000) } }],
        }),
      status.RESOURCE_EXHAUSTED,
      /^requests\[0\]: the event is/,
    ],
  ];
  for (const [name, call, code, message] of cases) {
    it(`${name}: ${status[code]}`, async () => {
      const err = await grpcError(call());
      expect(err.code).toBe(code);
      expect(err.details).toMatch(message);
    });
  }

  it("a request that is not protobuf: INVALID_ARGUMENT naming the message type", async () => {
    const raw = new Client(cluster.grpc, credentials.createInsecure());
    try {
      const err = await grpcError(
        new Promise((resolve, reject) =>
          raw.makeUnaryRequest(
            "/realtime.v1.Realtime/Send",
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from([0x0a, 0x7f, 0x61]),
            (e, r) => (e ? reject(e) : resolve(r)),
          ),
        ),
      );
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/not a valid realtime\.v1\.SendRequest message/);
    } finally {
      raw.close();
    }
  });

  it("still serves after all of that", async () => {
    expect((await api.send({ channel: "c", event: "e", payload: ok })).edges).toBe(0);
  });
});

describe("WebSocket edge", () => {
  it("answers malformed frames with INVALID_ARGUMENT replies that say what to fix, and keeps the connection", async () => {
    const j = await TestClient.connect(cluster.ws[0]!, "json");
    const replies: [string | Buffer, boolean, RegExp][] = [
      ["not json", false, /not valid JSON/],
      [JSON.stringify({ id: 7, join: { channel: "c" }, leave: { channel: "c" } }), false, /oneof/],
      [JSON.stringify({ id: 8 }), false, /no command/],
      [JSON.stringify({ id: 9, join: { channel: 5 } }), false, /cannot decode/],
      [Buffer.from([1, 2, 3]), true, /send text frames/],
    ];
    for (const [data, binary, message] of replies) {
      const count = j.frames.length;
      j.ws.send(data, { binary });
      const f = await j.next((f) => j.frames.indexOf(f) >= count && f.frame.case === "reply");
      const reply = f.frame.value as { id: number; error?: { code: number; message: string } };
      expect(reply.error?.code).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(reply.error?.message).toMatch(message);
    }
    // The id is kept when the frame could still be read, so the caller's request fails.
    expect(j.frames.flatMap((f) => (f.frame.case === "reply" ? [f.frame.value.id] : []))).toEqual([0, 7, 8, 9, 0]);
    await j.ok({ command: { case: "ping", value: {} } });
    await j.close();
  });

  it("rejects broken protobuf, two commands and text frames on the binary encoding", async () => {
    const p = await TestClient.connect(cluster.ws[0]!, "proto");
    const twoCommands = Buffer.concat([
      Buffer.from(
        toBinary(ClientFrameSchema, create(ClientFrameSchema, { id: 3, command: { case: "ping", value: {} } })),
      ),
      Buffer.from([0x12, 0x00]),
    ]);
    const frames: [string | Buffer, boolean, RegExp][] = [
      [Buffer.from([0x0a, 0xff]), true, /malformed frame/],
      [twoCommands, true, /2 commands \(ping, join\)/],
      ["{}", false, /send binary frames/],
    ];
    for (const [data, binary, message] of frames) {
      const count = p.frames.length;
      p.ws.send(data, { binary });
      const f = await p.next((f) => p.frames.indexOf(f) >= count && f.frame.case === "reply");
      expect((f.frame.value as { error?: { message: string } }).error?.message).toMatch(message);
    }
    await p.ok({ command: { case: "ping", value: {} } });
    await p.close();
  });

  it("closes with 1009 when a frame is larger than the limit", async () => {
    const j = await TestClient.connect(cluster.ws[0]!, "json");
    j.ws.send("x".repeat(64 * 1024));
    await j.closed;
    expect(j.closeCode).toBe(1009);
  });

  it("refuses a handshake that offers only unknown subprotocols, with HTTP 400 and the ones it speaks", async () => {
    const ws = new WebSocket(cluster.ws[0]!, "graphql-ws");
    const res = await new Promise<{ status: number; body: string }>((resolve) =>
      ws.on("unexpected-response", (_req, r) => {
        let body = "";
        r.on("data", (d: Buffer) => (body += d.toString()));
        r.on("end", () => resolve({ status: r.statusCode ?? 0, body }));
      }),
    );
    expect(res.status).toBe(400);
    expect(res.body).toMatch(/realtime\.v1\.proto and realtime\.v1\.json/);
  });

  it("speaks JSON to a client that offers no subprotocol", async () => {
    const ws = new WebSocket(cluster.ws[0]!);
    const first = await new Promise<string>((resolve) => ws.once("message", (d) => resolve(d.toString())));
    expect(JSON.parse(first)).toHaveProperty("connected.id");
    ws.close();
  });

  it("bad names over the client protocol get the same messages as over gRPC", async () => {
    const j = await TestClient.connect(cluster.ws[0]!, "json");
    const r1 = await j.request({ command: { case: "join", value: { channel: "" } } });
    expect(r1.error?.message).toMatch(/channel is required/);
    const r2 = await j.request({ command: { case: "join", value: { channel: "ok" } } });
    expect(r2.error).toBeUndefined();
    const r3 = await j.request({
      command: { case: "send", value: { channel: "ok", event: "bad event", payload: ok } },
    });
    expect(r3.error?.code).toBe(ErrorCode.INVALID_ARGUMENT);
    const r4 = await j.request({
      command: {
        case: "send",
        value: { channel: "ok", event: "e", payload: { case: "binary", value: new Uint8Array(5000) } },
      },
    });
    expect(r4.error?.code).toBe(ErrorCode.RESOURCE_EXHAUSTED);
    await j.close();
  });

  it("the processes are alive after all bad input", async () => {
    expect(cluster.api.child.exitCode).toBeNull();
    expect(cluster.edges[0]!.child.exitCode).toBeNull();
    const c = await TestClient.connect(cluster.ws[0]!, "proto");
    await c.ok({ command: { case: "join", value: { channel: "alive" } } });
    await api.send({ channel: "alive", event: "e", payload: ok });
    await c.event("e");
    await c.close();
  });
});
