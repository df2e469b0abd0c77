// The adapter serves connect-style ServiceImpls with grpc-js: a real grpc-js
// server on 127.0.0.1:0, called by a real grpc-js client built from the same
// generated descriptors.
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema, StringValueSchema, file_google_protobuf_wrappers } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { GetMembersRequestSchema, Realtime } from "../gen/realtime/v1/realtime_pb.js";
import {
  addService,
  INTERNAL_ERROR_MESSAGE,
  serviceDefinition,
  type AddServiceOptions,
} from "../src/api/grpc/adapter.js";
import { Code as RealtimeCode, RealtimeError } from "../src/protocol/errors.js";
import { watchLeaks } from "./helpers/leaks.js";

/** Messages a paused client may let the server get ahead by before backpressure must stop it. */
const MAX_PRODUCED_AHEAD = 200;
const STREAM_MESSAGE_BYTES = 16 * 1024;

// A test-only service with the four method kinds, described at runtime from a
// FileDescriptorProto (our protos have no client-streaming method).
const echoFile = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "test/v1/echo.proto",
    package: "test.v1",
    syntax: "proto3",
    dependency: ["google/protobuf/wrappers.proto"],
    service: [
      {
        name: "Echo",
        method: [
          { name: "Unary" },
          { name: "ServerStream", serverStreaming: true },
          { name: "ClientStream", clientStreaming: true },
          { name: "Bidi", clientStreaming: true, serverStreaming: true },
        ].map((m) => ({ ...m, inputType: ".google.protobuf.StringValue", outputType: ".google.protobuf.StringValue" })),
      },
    ],
  }),
  (name) => (name === "google/protobuf/wrappers.proto" ? file_google_protobuf_wrappers : undefined),
);
type S = typeof StringValueSchema;
const Echo = echoFile.getService("test.v1.Echo") as GenService<{
  unary: { methodKind: "unary"; input: S; output: S };
  serverStream: { methodKind: "server_streaming"; input: S; output: S };
  clientStream: { methodKind: "client_streaming"; input: S; output: S };
  bidi: { methodKind: "bidi_streaming"; input: S; output: S };
}>;

// No leaked handles once every server and client is closed (see helpers/leaks.ts).
const leaks = watchLeaks();
beforeAll(() => leaks.start());
afterAll(async () => {
  await leaks.check();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve<T extends typeof Realtime | typeof Echo>(
  service: T,
  impl: Partial<ServiceImpl<T>>,
  options?: AddServiceOptions,
): Promise<{ client: grpc.Client; address: string }> {
  const server = new grpc.Server();
  addService(server, service, impl, options);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  cleanups.push(() => client.close());
  return { client, address: `127.0.0.1:${port}` };
}

interface Outcome<T> {
  response?: T;
  error?: grpc.ServiceError;
  header?: grpc.Metadata;
  trailer?: grpc.Metadata;
}

function unary<T>(
  client: grpc.Client,
  method: grpc.MethodDefinition<unknown, T>,
  request: unknown,
  { metadata = new grpc.Metadata(), deadline }: { metadata?: grpc.Metadata; deadline?: number } = {},
  onCall?: (call: grpc.ClientUnaryCall) => void,
): Promise<Outcome<T>> {
  return new Promise((resolve) => {
    const outcome: Outcome<T> = {};
    const call = client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      metadata,
      deadline === undefined ? {} : { deadline: Date.now() + deadline },
      (error, response) => {
        if (error) outcome.error = error;
        else outcome.response = response;
      },
    );
    call.on("metadata", (md) => (outcome.header = md));
    call.on("status", (status) => {
      outcome.trailer = status.metadata;
      // The callback runs before 'status'.
      setImmediate(() => resolve(outcome));
    });
    onCall?.(call);
  });
}

const realtime = serviceDefinition(Realtime);
const echo = serviceDefinition(Echo);

describe("unary calls", () => {
  it("answers, with request metadata in ctx.requestHeader and ctx headers/trailers sent back", async () => {
    let seen: HandlerContext | undefined;
    const { client } = await serve(Realtime, {
      getMembers(req, ctx) {
        seen = ctx;
        ctx.responseHeader.set("x-served-by", "test");
        ctx.responseTrailer.set("x-count", "1");
        ctx.responseTrailer.set("x-trace-bin", btoa("\u0001\u0002"));
        return { members: [{ id: `member-of-${req.channel}`, data: { kind: { case: "stringValue", value: "x" } } }] };
      },
    });
    const metadata = new grpc.Metadata();
    metadata.set("authorization", "Bearer token-1");
    metadata.set("x-bytes-bin", Buffer.from([1, 2, 3]));
    const out = await unary(client, realtime.getMembers!, { channel: "room" }, { metadata, deadline: 5_000 });

    expect(out.error).toBeUndefined();
    expect(out.response).toMatchObject({ members: [{ id: "member-of-room" }] });
    expect(seen!.requestHeader.get("authorization")).toBe("Bearer token-1");
    expect(seen!.requestHeader.get("x-bytes-bin")).toBe("AQID");
    expect(seen!.method.name).toBe("GetMembers");
    expect(seen!.protocolName).toBe("grpc");
    expect(seen!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/realtime\.v1\.Realtime\/GetMembers$/);
    expect(seen!.timeoutMs()).toBeGreaterThan(0);
    expect(seen!.timeoutMs()).toBeLessThanOrEqual(5_000);
    expect(seen!.signal.aborted).toBe(true); // aborted once the call completed
    expect(out.header!.get("x-served-by")).toEqual(["test"]);
    expect(out.trailer!.get("x-count")).toEqual(["1"]);
    expect(out.trailer!.get("x-trace-bin")).toEqual([Buffer.from([1, 2])]);
  });

  it("sends a ConnectError as the same status code, message and metadata", async () => {
    const { client } = await serve(Realtime, {
      getMembers() {
        throw new ConnectError("channel: must be 1 to 128 characters", Code.InvalidArgument, { "x-field": "channel" });
      },
    });
    const out = await unary(client, realtime.getMembers!, { channel: "" });
    expect(out.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(out.error!.details).toBe("channel: must be 1 to 128 characters");
    expect(out.trailer!.get("x-field")).toEqual(["channel"]);
  });

  /** The error a Connect gRPC client reads for a GetMembers call to `address`. */
  async function getMembersError(address: string): Promise<ConnectError | undefined> {
    const target = `http://${address}`;
    const sessionManager = new Http2SessionManager(target);
    cleanups.push(() => sessionManager.abort());
    const connect = createClient(Realtime, createGrpcTransport({ baseUrl: target, sessionManager }));
    return connect.getMembers({ channel: "room" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
  }

  it("sends a ConnectError's details as grpc-status-details-bin, readable by a Connect gRPC client", async () => {
    const { address } = await serve(Realtime, {
      getMembers() {
        throw new ConnectError("edge-2 is unreachable", Code.Unavailable, undefined, [
          { desc: StringValueSchema, value: { value: "edge-2" } },
        ]);
      },
    });
    const err = await getMembersError(address);
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.rawMessage).toBe("edge-2 is unreachable");
    expect(err?.findDetails(StringValueSchema)).toMatchObject([{ value: "edge-2" }]);
  });

  it("passes on a detail a ConnectError received from elsewhere (type name and bytes) in grpc-status-details-bin", async () => {
    const { address } = await serve(Realtime, {
      getMembers() {
        const err = new ConnectError("from upstream", Code.FailedPrecondition);
        err.details = [
          {
            type: StringValueSchema.typeName,
            value: toBinary(StringValueSchema, create(StringValueSchema, { value: "up" })),
          },
        ];
        throw err;
      },
    });
    const err = await getMembersError(address);
    expect(err?.code).toBe(Code.FailedPrecondition);
    expect(err?.findDetails(StringValueSchema)).toMatchObject([{ value: "up" }]);
  });

  it("sends a RealtimeError as its gRPC code and message", async () => {
    const { client } = await serve(Realtime, {
      async send() {
        throw new RealtimeError(RealtimeCode.ResourceExhausted, "payload: 70000 bytes is over the limit of 65536");
      },
    });
    const out = await unary(client, realtime.send!, { channel: "room", event: "e" });
    expect(out.error!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(out.error!.details).toBe("payload: 70000 bytes is over the limit of 65536");
  });

  it("sends anything else as INTERNAL without its message, shows it to the interceptor, and keeps serving", async () => {
    const intercepted: unknown[] = [];
    let calls = 0;
    const { client } = await serve(
      Realtime,
      {
        broadcast() {
          calls++;
          if (calls === 1) throw new TypeError("secret detail");
          return { messageId: "m2", edges: 2 };
        },
      },
      {
        async interceptor(_call, next) {
          try {
            await next();
          } catch (err) {
            intercepted.push(err);
            throw err;
          }
        },
      },
    );
    const first = await unary(client, realtime.broadcast!, { event: "e" });
    expect(first.error!.code).toBe(grpc.status.INTERNAL);
    expect(first.error!.details).toBe(INTERNAL_ERROR_MESSAGE);
    expect(intercepted).toEqual([new TypeError("secret detail")]);
    const second = await unary(client, realtime.broadcast!, { event: "e" });
    expect(second.response).toMatchObject({ messageId: "m2", edges: 2 });
  });

  it("answers a response that cannot be serialized with INTERNAL (grpc-js) and keeps serving", async () => {
    const { client } = await serve(Realtime, {
      send: (req) => ({ messageId: "m", edges: req.event === "bad" ? -1 : 1 }), // edges is a uint32
    });
    const bad = await unary(client, realtime.send!, { channel: "room", event: "bad" });
    expect(bad.error!.code).toBe(grpc.status.INTERNAL);
    expect(bad.error!.details).toBe("Error serializing response");
    expect((await unary(client, realtime.send!, { channel: "room", event: "ok" })).response).toMatchObject({
      edges: 1,
    });
  });

  it("lets the interceptor reject a call before the handler runs", async () => {
    let handled = false;
    const { client } = await serve(
      Realtime,
      {
        getMembers() {
          handled = true;
          return {};
        },
      },
      {
        async interceptor(call, next) {
          if (call.requestHeader.get("authorization") === null) {
            throw new ConnectError("missing authorization", Code.Unauthenticated);
          }
          await next();
        },
      },
    );
    const out = await unary(client, realtime.getMembers!, { channel: "room" });
    expect(out.error!.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(handled).toBe(false);
  });

  it("aborts ctx.signal with DeadlineExceeded when the deadline passes", async () => {
    // Long enough that the handler has surely started when it passes, on a
    // loaded machine too (with 100 ms the call could end before grpc-js ran
    // the handler, which then never saw an abort).
    const DEADLINE_MS = 1000;
    let reason: unknown;
    const { client, address } = await serve(Realtime, {
      getMembers(_req, ctx) {
        return new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => {
            reason = ctx.signal.reason;
            reject(ctx.signal.reason);
          }),
        );
      },
    });
    // A grpc-js client gives up at its own deadline and cancels the stream;
    // on a loaded machine that cancel can arrive well before the server's
    // deadline (which starts when the server reads the headers), so the
    // reason is DeadlineExceeded or, rarely, Canceled.
    const out = await unary(client, realtime.getMembers!, { channel: "room" }, { deadline: DEADLINE_MS });
    expect(out.error!.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await vi.waitFor(() => expect(reason).toBeDefined(), { timeout: 10_000 });
    expect([Code.DeadlineExceeded, Code.Canceled]).toContain(ConnectError.from(reason).code);

    // A raw HTTP/2 request with grpc-timeout that never cancels: the server's
    // deadline alone ends the call.
    reason = undefined;
    const session = http2.connect(`http://${address}`);
    cleanups.push(() => void session.close());
    const stream = session.request({
      ":method": "POST",
      ":path": "/realtime.v1.Realtime/GetMembers",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${DEADLINE_MS}m`,
    });
    const body = toBinary(GetMembersRequestSchema, create(GetMembersRequestSchema, { channel: "room" }));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    stream.end(frame);
    stream.resume();
    const status = await new Promise<unknown>((resolve) => {
      stream.on("response", (headers) => headers["grpc-status"] !== undefined && resolve(headers["grpc-status"]));
      stream.on("trailers", (trailers) => resolve(trailers["grpc-status"]));
    });
    expect(Number(status)).toBe(grpc.status.DEADLINE_EXCEEDED);
    await vi.waitFor(() => expect(reason).toBeDefined(), { timeout: 10_000 });
    expect(ConnectError.from(reason).code).toBe(Code.DeadlineExceeded);
  });

  it("aborts ctx.signal with Canceled when the client cancels", async () => {
    let reason: unknown;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const { client } = await serve(Realtime, {
      getMembers(_req, ctx) {
        started();
        return new Promise((_, reject) =>
          ctx.signal.addEventListener("abort", () => {
            reason = ctx.signal.reason;
            reject(ctx.signal.reason);
          }),
        );
      },
    });
    const out = await unary(client, realtime.getMembers!, { channel: "room" }, {}, (call) => {
      void running.then(() => call.cancel());
    });
    expect(out.error!.code).toBe(grpc.status.CANCELLED);
    await vi.waitFor(() => expect(reason).toBeDefined());
    expect(ConnectError.from(reason).code).toBe(Code.Canceled);
  });

  it("answers UNIMPLEMENTED for a method missing from the impl", async () => {
    const { client } = await serve(Realtime, {});
    const out = await unary(client, realtime.send!, { channel: "room", event: "e" });
    expect(out.error!.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("answers a request that is not protobuf with INVALID_ARGUMENT, never reaching the handler, and survives", async () => {
    let handled = 0;
    const { client } = await serve(Realtime, {
      getMembers() {
        handled++;
        return {};
      },
    });
    // Field 1 (channel), length 127, but only one byte follows.
    const broken = { ...realtime.getMembers!, requestSerialize: () => Buffer.from([0x0a, 0x7f, 0x61]) };
    const out = await unary(client, broken, {});
    expect(out.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(out.error!.details).toMatch(/^the request is not a valid realtime\.v1\.GetMembersRequest message: /);
    // Invalid UTF-8 in a string field.
    const badUtf8 = { ...realtime.getMembers!, requestSerialize: () => Buffer.from([0x0a, 0x01, 0xff]) };
    const utf8 = await unary(client, badUtf8, {});
    expect(utf8.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(handled).toBe(0);
    expect((await unary(client, realtime.getMembers!, { channel: "room" })).error).toBeUndefined();
  });
});

describe("requestDecoders", () => {
  it("decodes requests of the named type with the given decoder, others with protobuf-es; a throwing decoder is INVALID_ARGUMENT", async () => {
    const seen: string[] = [];
    const { client } = await serve(
      Realtime,
      {
        getMembers(req) {
          seen.push(req.channel);
          return {};
        },
        listChannels(req) {
          seen.push(`list:${req.prefix}`);
          return {};
        },
      },
      {
        requestDecoders: {
          "realtime.v1.GetMembersRequest": (bytes) => {
            if (bytes.length === 0) throw new Error("empty on purpose");
            return { ...fromBinary(Realtime.method.getMembers.input, bytes), channel: "from-the-decoder" };
          },
        },
      },
    );
    expect((await unary(client, realtime.getMembers!, { channel: "room" })).error).toBeUndefined();
    expect((await unary(client, realtime.listChannels!, { prefix: "p" })).error).toBeUndefined();
    expect(seen).toEqual(["from-the-decoder", "list:p"]);
    const failed = await unary(client, realtime.getMembers!, {});
    expect(failed.error!.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(failed.error!.details).toBe(
      "the request is not a valid realtime.v1.GetMembersRequest message: empty on purpose",
    );
    expect(seen).toHaveLength(2);
  });
});

describe("streaming calls", () => {
  it("server streaming: sends every message, then header-before-first-message and trailers", async () => {
    const { client } = await serve(Echo, {
      async *serverStream(req, ctx) {
        ctx.responseHeader.set("x-stream", "yes");
        for (let i = 0; i < 3; i++) yield { value: `${req.value}-${i}` };
        ctx.responseTrailer.set("x-done", "3");
      },
    });
    const call = client.makeServerStreamRequest(
      echo.serverStream!.path,
      echo.serverStream!.requestSerialize,
      echo.serverStream!.responseDeserialize,
      { value: "hi" },
    );
    const header = new Promise<grpc.Metadata>((resolve) => call.on("metadata", resolve));
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    const values: string[] = [];
    for await (const message of call) values.push((message as { value: string }).value);
    expect(values).toEqual(["hi-0", "hi-1", "hi-2"]);
    expect((await header).get("x-stream")).toEqual(["yes"]);
    const s = await status;
    expect(s.code).toBe(grpc.status.OK);
    expect(s.metadata.get("x-done")).toEqual(["3"]);
  });

  it("server streaming: waits for the client (backpressure) and stops iterating when it cancels", async () => {
    let produced = 0;
    let finished = false;
    let aborted = false;
    const chunk = "x".repeat(STREAM_MESSAGE_BYTES);
    const { client } = await serve(Echo, {
      async *serverStream(_req, ctx) {
        ctx.signal.addEventListener("abort", () => (aborted = true));
        try {
          for (;;) {
            produced++;
            yield { value: chunk };
          }
        } finally {
          finished = true;
        }
      },
    });
    const call = client.makeServerStreamRequest(
      echo.serverStream!.path,
      echo.serverStream!.requestSerialize,
      echo.serverStream!.responseDeserialize,
      { value: "" },
    );
    call.on("error", () => {}); // CANCELLED, below
    await new Promise((resolve) => call.once("data", resolve));
    call.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const producedWhilePaused = produced;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(produced).toBe(producedWhilePaused); // not growing: blocked on 'drain'
    expect(produced).toBeLessThan(MAX_PRODUCED_AHEAD);
    call.cancel();
    await vi.waitFor(() => expect(finished).toBe(true));
    expect(aborted).toBe(true);
    expect(produced).toBe(producedWhilePaused);
  });

  it("server streaming: an error after some messages becomes the status", async () => {
    const { client } = await serve(Echo, {
      async *serverStream() {
        yield { value: "one" };
        throw new RealtimeError(RealtimeCode.Unavailable, "edge-2 is unreachable");
      },
    });
    const call = client.makeServerStreamRequest(
      echo.serverStream!.path,
      echo.serverStream!.requestSerialize,
      echo.serverStream!.responseDeserialize,
      { value: "" },
    );
    const values: string[] = [];
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      call.on("data", (m: { value: string }) => values.push(m.value));
      call.on("error", resolve);
    });
    expect(values).toEqual(["one"]);
    expect(error.code).toBe(grpc.status.UNAVAILABLE);
    expect(error.details).toBe("edge-2 is unreachable");
  });

  it("client streaming: the handler reads every request as an AsyncIterable", async () => {
    const { client } = await serve(Echo, {
      async clientStream(requests) {
        const values: string[] = [];
        for await (const r of requests) values.push(r.value);
        return { value: values.join(",") };
      },
    });
    const response = await new Promise<{ value: string }>((resolve, reject) => {
      const call = client.makeClientStreamRequest(
        echo.clientStream!.path,
        echo.clientStream!.requestSerialize,
        echo.clientStream!.responseDeserialize as (b: Buffer) => { value: string },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
      for (const value of ["a", "b", "c"]) call.write({ value });
      call.end();
    });
    expect(response.value).toBe("a,b,c");
  });

  it("bidi: answers each request as it arrives, and may stop reading while still writing", async () => {
    const { client } = await serve(Echo, {
      async *bidi(requests) {
        for await (const r of requests) {
          if (r.value === "stop") break;
          yield { value: r.value.toUpperCase() };
        }
        yield { value: "bye" };
      },
    });
    const call = client.makeBidiStreamRequest(
      echo.bidi!.path,
      echo.bidi!.requestSerialize,
      echo.bidi!.responseDeserialize,
    );
    const values: string[] = [];
    const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    const ended = new Promise<void>((resolve) => call.on("end", resolve));
    call.on("data", (m: { value: string }) => values.push(m.value));
    call.write({ value: "a" });
    call.write({ value: "b" });
    call.write({ value: "stop" });
    call.end();
    await ended;
    expect(values).toEqual(["A", "B", "bye"]);
    expect((await status).code).toBe(grpc.status.OK);
  });

  it("shutdownSignal ends long streams with UNAVAILABLE so the server can shut down", async () => {
    const shutdown = new AbortController();
    const { client } = await serve(
      Echo,
      {
        async *serverStream(_req, ctx) {
          yield { value: "first" };
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
        },
      },
      { shutdownSignal: shutdown.signal },
    );
    const call = client.makeServerStreamRequest(
      echo.serverStream!.path,
      echo.serverStream!.requestSerialize,
      echo.serverStream!.responseDeserialize,
      { value: "" },
    );
    await new Promise((resolve) => call.once("data", resolve));
    const error = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    shutdown.abort();
    expect((await error).code).toBe(grpc.status.UNAVAILABLE);
  });
});
