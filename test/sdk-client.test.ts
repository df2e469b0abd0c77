/**
 * RealtimeClient against a scripted fake edge: a real `ws` server on port 0
 * that speaks the client protocol with just enough behaviour to test what
 * only the SDK decides (queueing, timeouts, reconnects, restore, dispatch).
 * test/sdk.test.ts tests the SDK against the real edge.
 */
import { create, fromBinary, fromJsonString, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import type { AddressInfo } from "node:net";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame } from "../gen/realtime/client/v1/client_pb.js";
import {
  CloseCode,
  DEFAULT_ENCODING,
  ErrorCode,
  RealtimeClient,
  type RealtimeClientError,
  type RealtimeClientOptions,
  type ResyncEvent,
} from "../src/client/index.js";
import { fromValue } from "../src/client/codec.js";
import { protoEncoding } from "../src/client/proto.js";
import { connected, rejection, sdkEncoding, waitFor } from "./helpers/sdk.js";

type ServerFrameInit = MessageInitShape<typeof ServerFrameSchema>;

class FakeConn {
  readonly channels = new Set<string>();
  constructor(
    readonly ws: WebSocket,
    readonly id: string,
    readonly query: URLSearchParams,
  ) {}
  get json(): boolean {
    return this.ws.protocol === "realtime.v1.json";
  }
  send(init: ServerFrameInit): void {
    const frame = create(ServerFrameSchema, init);
    if (this.json) this.ws.send(toJsonString(ServerFrameSchema, frame));
    else this.ws.send(toBinary(ServerFrameSchema, frame));
  }
  ok(id: number, messageId = ""): void {
    this.send({ frame: { case: "reply", value: { id, messageId } } });
  }
}

interface FakeOptions {
  /** Whether to send `connected` on accept. Default true. */
  connected?: boolean;
  /** Handles a frame; return true when handled, else the default runs. */
  handle?: (conn: FakeConn, frame: ClientFrame) => boolean | void;
}

class FakeEdge {
  readonly conns: FakeConn[] = [];
  readonly frames: { conn: FakeConn; frame: ClientFrame; text: boolean }[] = [];
  private seq = 0;

  private constructor(
    readonly wss: WebSocketServer,
    readonly port: number,
    readonly options: FakeOptions,
  ) {
    wss.on("connection", (ws, req) => this.accept(ws, new URL(req.url ?? "/", "http://x").searchParams));
  }

  static async start(port = 0, options: FakeOptions = {}): Promise<FakeEdge> {
    const wss = new WebSocketServer({
      port,
      host: "127.0.0.1",
      handleProtocols: (offered) =>
        offered.has("realtime.v1.proto")
          ? "realtime.v1.proto"
          : offered.has("realtime.v1.json")
            ? "realtime.v1.json"
            : false,
    });
    await new Promise<void>((resolve, reject) => {
      wss.once("listening", resolve);
      wss.once("error", reject);
    });
    const edge = new FakeEdge(wss, (wss.address() as AddressInfo).port, options);
    fakes.push(edge);
    return edge;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Frames received, as command cases. */
  commands(): string[] {
    return this.frames.map((f) => f.frame.command.case ?? "?");
  }

  closeAll(code: number, reason = ""): void {
    for (const c of this.conns) c.ws.close(code, reason);
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private accept(ws: WebSocket, query: URLSearchParams): void {
    const conn = new FakeConn(ws, `conn-${++this.seq}`, query);
    this.conns.push(conn);
    if (this.options.connected !== false) conn.send({ frame: { case: "connected", value: { id: conn.id } } });
    ws.on("message", (data, isBinary) => {
      const bytes = data as Buffer;
      const frame = isBinary
        ? fromBinary(ClientFrameSchema, bytes)
        : fromJsonString(ClientFrameSchema, bytes.toString("utf8"));
      this.frames.push({ conn, frame, text: !isBinary });
      if (this.options.handle?.(conn, frame) === true) return;
      this.defaultHandle(conn, frame);
    });
  }

  private defaultHandle(conn: FakeConn, frame: ClientFrame): void {
    const { id, command } = frame;
    switch (command.case) {
      case "join":
        conn.channels.add(command.value.channel);
        return conn.ok(id);
      case "leave":
        conn.channels.delete(command.value.channel);
        return conn.ok(id);
      case "updateProfile":
        return conn.ok(id);
      case "send": {
        if (!conn.channels.has(command.value.channel)) {
          return conn.send({ frame: { case: "reply", value: { id, error: { code: 9, message: "join first" } } } });
        }
        const eventId = `ev-${id}`;
        conn.ok(id, eventId);
        if (command.value.echo !== false) {
          const payload = command.value.payload;
          conn.send({
            frame: {
              case: "event",
              value: { channel: command.value.channel, event: command.value.event, id: eventId, payload },
            },
          });
        }
        return;
      }
      case "getMembers":
        return conn.send({
          frame: {
            case: "reply",
            value: {
              id,
              members: this.conns.filter((c) => c.channels.has(command.value.channel)).map((c) => ({ id: c.id })),
            },
          },
        });
      default:
        return conn.ok(id);
    }
  }
}

const fakes: FakeEdge[] = [];
const clients: RealtimeClient[] = [];

function client(options: Partial<RealtimeClientOptions> & { url: string }): RealtimeClient {
  const rt = new RealtimeClient({
    WebSocket,
    encoding: protoEncoding, // unless a test says otherwise
    reconnect: { initialDelayMs: 10, maxDelayMs: 40 },
    ...options,
  });
  clients.push(rt);
  return rt;
}

afterEach(async () => {
  for (const rt of clients.splice(0)) rt.close();
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
});

describe("RealtimeClient options", () => {
  it("refuses bad options at construction, naming the option", () => {
    expect(() => new RealtimeClient({ url: "not a url", WebSocket })).toThrow(/url/);
    expect(() => new RealtimeClient({ url: "http://x", WebSocket })).toThrow(/ws:\/\//);
    expect(() => new RealtimeClient({ url: "ws://x", WebSocket, encoding: "xml" as "json" })).toThrow(/encoding/);
    // The binary encoding is imported (it brings protobuf-es); its name alone says where from.
    expect(() => new RealtimeClient({ url: "ws://x", WebSocket, encoding: "proto" as "json" })).toThrow(
      /import \{ protoEncoding \} from "@switchboard\/client\/proto"/,
    );
    expect(() => new RealtimeClient({ url: "ws://x", WebSocket, requestTimeoutMs: -1 })).toThrow(/requestTimeoutMs/);
    expect(
      () => new RealtimeClient({ url: "ws://x", WebSocket, reconnect: { initialDelayMs: 100, maxDelayMs: 1 } }),
    ).toThrow(/maxDelayMs/);
  });

  it("calls made before open() reject at once with UNAVAILABLE", async () => {
    const rt = client({ url: "ws://127.0.0.1:1", autoOpen: false });
    const err = await rejection(rt.join("a"));
    expect(err.code).toBe(ErrorCode.Unavailable);
    expect(err.codeName).toBe("UNAVAILABLE");
    expect(rt.getState()).toBe("idle");
  });
});

it("speaks JSON unless told otherwise (DEFAULT_ENCODING), which needs no protobuf-es", async () => {
  const fake = await FakeEdge.start();
  const rt = new RealtimeClient({ url: fake.url, WebSocket, reconnect: false });
  clients.push(rt);
  await connected(rt);
  expect(DEFAULT_ENCODING).toBe("json");
  expect(fake.conns[0].ws.protocol).toBe("realtime.v1.json");
  await rt.join("room");
  expect(fake.frames[0].text).toBe(true);
});

describe.each(["proto", "json"] as const)("RealtimeClient over %s", (encoding) => {
  it("connects, learns its id, and sends frames in its encoding with echo in the URL", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, encoding: sdkEncoding(encoding), echo: false });
    const seen: unknown[] = [];
    rt.onConnect((info) => seen.push(info));
    await connected(rt);
    expect(seen).toEqual([{ id: "conn-1", reconnected: false }]);
    expect(rt.getSocketId()).toBe("conn-1");
    expect(fake.conns[0].ws.protocol).toBe(`realtime.v1.${encoding}`);
    expect(fake.conns[0].query.get("echo")).toBe("false");
    await rt.join("room", true);
    expect(fake.frames[0].text).toBe(encoding === "json");
    expect(fake.frames[0].frame.command).toMatchObject({ case: "join", value: { channel: "room", echo: true } });
  });

  it("round-trips JSON and binary payloads; bytes arrive as Uint8Array", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, encoding: sdkEncoding(encoding) });
    const got: unknown[] = [];
    rt.on("msg", (e) => got.push(e));
    await rt.join("room");
    const json = { a: [1, 2.5, "x", null, { b: true }], u: undefined, d: new Date(0) };
    const sent = await rt.send("room", "msg", json);
    expect(sent).toEqual({ id: expect.stringMatching(/^ev-/) });
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await rt.send("room", "msg", bytes);
    await waitFor(() => got.length === 2, "two events");
    expect(got[0]).toEqual({ channel: "room", message: JSON.parse(JSON.stringify(json)), id: sent.id });
    const binary = got[1] as { message: unknown };
    expect(binary.message).toBeInstanceOf(Uint8Array);
    expect(Array.from(binary.message as Uint8Array)).toEqual(Array.from(bytes));
  });
});

describe("RealtimeClient calls", () => {
  it("queues calls made while connecting and sends them in call order once connected", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    const p1 = rt.join("a");
    const p2 = rt.join("b");
    const p3 = rt.send("a", "e", 1);
    await Promise.all([p1, p2, p3]);
    expect(fake.commands()).toEqual(["join", "join", "send"]);
  });

  it("rejects with the edge's code on an error reply", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    const err = await rejection(rt.send("not-joined", "e", {}));
    expect(err.code).toBe(ErrorCode.FailedPrecondition);
    expect(err.codeName).toBe("FAILED_PRECONDITION");
    expect(err.message).toBe("join first");
  });

  it("rejects non-JSON messages locally with INVALID_ARGUMENT", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    await rt.join("a");
    expect((await rejection(rt.send("a", "e", undefined))).code).toBe(ErrorCode.InvalidArgument);
    expect((await rejection(rt.send("a", "e", { n: 1n }))).code).toBe(ErrorCode.InvalidArgument);
    expect(fake.commands()).toEqual(["join"]);
  });

  it("maps getMembers, with data null for members without a profile", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    await rt.join("a");
    expect(await rt.getMembers("a")).toEqual([{ id: "conn-1", data: null, userId: "" }]);
  });

  it("getMembers reads every page: the first with no page fields (an older edge reads it), then by token", async () => {
    const all = Array.from({ length: 7 }, (_, i) => ({ id: `m${i}` }));
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "getMembers") return false;
        const { pageSize, pageToken } = frame.command.value;
        const start = pageToken === "" ? 0 : Number(pageToken);
        const end = Math.min(all.length, start + (pageSize || 3));
        conn.send({
          frame: {
            case: "reply",
            value: { id: frame.id, members: all.slice(start, end), nextPageToken: end < all.length ? String(end) : "" },
          },
        });
        return true;
      },
    });
    const rt = client({ url: fake.url, encoding: "json" });
    expect((await rt.getMembers("a")).map((m) => m.id)).toEqual(all.map((m) => m.id));
    const asked = fake.frames.flatMap((f) => (f.frame.command.case === "getMembers" ? [f.frame.command.value] : []));
    // Defaults are not on the wire (proto3): the first request carries no page fields.
    expect(asked.map((g) => [g.pageSize, g.pageToken])).toEqual([
      [0, ""],
      [1000, "3"],
    ]);
    const page = await rt.getMembersPage("a", { pageSize: 2, pageToken: "4" });
    expect(page).toEqual({
      members: [
        { id: "m4", data: null, userId: "" },
        { id: "m5", data: null, userId: "" },
      ],
      nextPageToken: "6",
    });
  });

  it("getMembers fails with INTERNAL instead of looping when the edge repeats a page token", async () => {
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "getMembers") return false;
        conn.send({ frame: { case: "reply", value: { id: frame.id, members: [{ id: "x" }], nextPageToken: "same" } } });
        return true;
      },
    });
    const rt = client({ url: fake.url });
    expect((await rejection(rt.getMembers("a"))).code).toBe(ErrorCode.Internal);
  });

  it("times out with DEADLINE_EXCEEDED when no reply comes, and ignores the late reply", async () => {
    let held: { conn: FakeConn; id: number } | undefined;
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "ping" && frame.command.case !== "join") return false;
        held = { conn, id: frame.id };
        return true;
      },
    });
    const rt = client({ url: fake.url, requestTimeoutMs: 100 });
    const err = await rejection(rt.join("a"));
    expect(err.code).toBe(ErrorCode.DeadlineExceeded);
    held!.conn.ok(held!.id);
    await rt.leave("a"); // the connection still works
  });

  it("counts the timeout from the call, queueing included", async () => {
    const fake = await FakeEdge.start(0, { connected: false });
    const rt = client({ url: fake.url, requestTimeoutMs: 80 });
    const err = await rejection(rt.join("a"));
    expect(err.code).toBe(ErrorCode.DeadlineExceeded);
  });

  it("bounds the queue: RESOURCE_EXHAUSTED past maxQueuedRequests, UNAVAILABLE when it is 0", async () => {
    const fake = await FakeEdge.start(0, { connected: false });
    const rt = client({ url: fake.url, maxQueuedRequests: 2 });
    const p1 = rt.join("a");
    const p2 = rt.join("b");
    expect((await rejection(rt.join("c"))).code).toBe(ErrorCode.ResourceExhausted);
    rt.close();
    expect((await rejection(p1)).code).toBe(ErrorCode.Canceled);
    expect((await rejection(p2)).code).toBe(ErrorCode.Canceled);

    const rt0 = client({ url: fake.url, maxQueuedRequests: 0 });
    expect((await rejection(rt0.join("a"))).code).toBe(ErrorCode.Unavailable);
  });

  it("rejects calls in flight with UNAVAILABLE when the connection drops, and does not re-send them", async () => {
    const fake = await FakeEdge.start(0, { handle: (_conn, frame) => frame.command.case === "send" });
    const rt = client({ url: fake.url });
    await rt.join("a");
    const p = rt.send("a", "e", 1);
    await waitFor(() => fake.commands().includes("send"), "the send");
    fake.closeAll(CloseCode.Shutdown, "bye");
    const err = await rejection(p);
    expect(err.code).toBe(ErrorCode.Unavailable);
    expect(err.message).toContain("4000");
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    expect(fake.commands().filter((c) => c === "send")).toHaveLength(1);
  });
});

describe("RealtimeClient dispatch", () => {
  it("delivers system events as {channel, message: {id, data}} to onJoin/onLeave/onUpdate and onAny", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, encoding: "json" });
    await connected(rt);
    const seen: string[] = [];
    rt.onJoin((e) => seen.push(`join ${e.channel} ${e.message.id} ${JSON.stringify(e.message.data)}`));
    rt.onLeave((e) => seen.push(`leave ${e.channel} ${e.message.id} ${JSON.stringify(e.message.data)}`));
    rt.onUpdate((e) => seen.push(`update ${e.channel} ${e.message.id} ${JSON.stringify(e.message.data)}`));
    rt.onAny((event) => seen.push(`any ${event}`));
    const conn = fake.conns[0];
    const member = (event: string, data?: unknown) =>
      conn.send({
        frame: {
          case: "event",
          value: {
            channel: "c",
            event,
            payload: {
              case: "member",
              value: {
                id: "m1",
                data:
                  data === undefined ? undefined : ({ kind: { case: "stringValue", value: String(data) } } as never),
              },
            },
          },
        },
      });
    member("channel:join");
    member("channel:update", "bob");
    member("channel:leave", "bob");
    await waitFor(() => seen.length === 6, "six dispatches");
    expect(seen).toEqual([
      "join c m1 null",
      "any channel:join",
      'update c m1 "bob"',
      "any channel:update",
      'leave c m1 "bob"',
      "any channel:leave",
    ]);
  });

  it("once, off and unsubscribe functions stop delivery", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    await rt.join("a");
    const seen: string[] = [];
    rt.once("e", () => seen.push("once"));
    const cb = () => seen.push("off");
    rt.on("e", cb);
    const unsubscribe = rt.on("e", () => seen.push("unsub"));
    rt.on("e", () => seen.push("stays"));
    await rt.send("a", "e", 1);
    await waitFor(() => seen.length === 4, "first event");
    rt.off("e", cb);
    unsubscribe();
    await rt.send("a", "e", 2);
    await waitFor(() => seen.length === 5, "second event");
    expect(seen).toEqual(["once", "off", "unsub", "stays", "stays"]);
  });

  it("a throwing listener is reported via onError and does not stop dispatch", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    const errors: RealtimeClientError[] = [];
    rt.onError((e) => errors.push(e));
    rt.onError(() => {
      throw new Error("a broken onError listener is dropped");
    });
    const seen: unknown[] = [];
    rt.on("e", () => {
      throw new Error("boom");
    });
    rt.on("e", (e) => seen.push(e.message));
    rt.onConnect(() => {
      throw new Error("connect boom");
    });
    await rt.join("a");
    await rt.send("a", "e", "hi");
    await waitFor(() => seen.length === 1, "the event");
    expect(seen).toEqual(["hi"]);
    expect(errors.map((e) => e.message)).toEqual([
      `a listener of "connect" threw: connect boom`,
      `a listener of "e" threw: boom`,
    ]);
    expect(errors[1].cause).toBeInstanceOf(Error);
  });

  it("reports a frame that does not decode via onError and carries on", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, encoding: "json" });
    await connected(rt);
    const errors: RealtimeClientError[] = [];
    rt.onError((e) => errors.push(e));
    fake.conns[0].ws.send("{not json");
    await waitFor(() => errors.length === 1, "the error");
    expect(errors[0].code).toBe(ErrorCode.Internal);
    await rt.join("a");
  });
});

describe("RealtimeClient reconnects", () => {
  it("after a reconnectable close: restores profile then channels (echo false), then queued calls, then onConnect", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    const connects: unknown[] = [];
    const disconnects: unknown[] = [];
    const attempts: number[] = [];
    rt.onConnect((i) => connects.push(i));
    rt.onDisconnect((i) => disconnects.push(i));
    rt.onReconnectAttempt((i) => attempts.push(i.attempt));
    await rt.updateProfile({ name: "ann" });
    await rt.join("a");
    await rt.join("b");
    await rt.join("gone");
    await rt.leave("gone");
    const before = fake.frames.length;

    // A call made while disconnected (from the onDisconnect listener, so
    // surely before the reconnect) waits for the restore.
    const queued = new Promise<unknown>((resolve) => {
      const off = rt.onDisconnect(() => {
        off();
        resolve(rt.send("a", "e", "after"));
      });
    });
    fake.closeAll(CloseCode.Shutdown, "restart");
    await queued;
    expect(connects).toEqual([
      { id: "conn-1", reconnected: false },
      { id: "conn-2", reconnected: true },
    ]);
    expect(disconnects).toEqual([{ code: CloseCode.Shutdown, reason: "restart", willReconnect: true }]);
    expect(attempts).toEqual([1]);
    const after = fake.frames.slice(before);
    expect(after.every((f) => f.conn.id === "conn-2")).toBe(true);
    expect(after.map((f) => f.frame.command)).toMatchObject([
      { case: "updateProfile", value: { echo: false } },
      { case: "join", value: { channel: "a", echo: false } },
      { case: "join", value: { channel: "b", echo: false } },
      { case: "send", value: { channel: "a" } },
    ]);
    const profile = after[0].frame.command.value as { data: Parameters<typeof fromValue>[0] };
    expect(fromValue(profile.data)).toEqual({ name: "ann" });
    expect(rt.getSocketId()).toBe("conn-2");
  });

  it("keeps trying while the edge is down, with onReconnectAttempt numbering, and comes back on the same port", async () => {
    const fake = await FakeEdge.start();
    const port = fake.port;
    const rt = client({ url: fake.url });
    await rt.join("a");
    const attempts: number[] = [];
    rt.onReconnectAttempt((i) => attempts.push(i.attempt));
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    await waitFor(() => attempts.length >= 3, "three failed attempts");
    expect(attempts.slice(0, 3)).toEqual([1, 2, 3]);
    const again = await FakeEdge.start(port);
    await waitFor(() => rt.isConnected(), "the reconnect");
    expect(again.frames[0].frame.command).toMatchObject({ case: "join", value: { channel: "a", echo: false } });
  });

  it("forgets a channel whose re-join the edge refuses, and reports it", async () => {
    let refuse = false;
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (!refuse || frame.command.case !== "join" || frame.command.value.channel !== "bad") return false;
        conn.send({ frame: { case: "reply", value: { id: frame.id, error: { code: 7, message: "no" } } } });
        return true;
      },
    });
    const rt = client({ url: fake.url });
    const errors: RealtimeClientError[] = [];
    rt.onError((e) => errors.push(e));
    await rt.join("good");
    await rt.join("bad");
    refuse = true;
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "reconnect 1");
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      [ErrorCode.PermissionDenied, 're-joining channel "bad" after a reconnect failed: no'],
    ]);
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 3 && rt.isConnected(), "reconnect 2");
    const joins = fake.frames
      .filter((f) => f.conn.id === "conn-3")
      .map((f) => (f.frame.command.value as { channel: string }).channel);
    expect(joins).toEqual(["good"]);
  });

  it("stops for good on a close code that forbids reconnecting, rejecting queued calls", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url });
    await connected(rt);
    const disconnects: unknown[] = [];
    rt.onDisconnect((i) => disconnects.push(i));
    fake.closeAll(CloseCode.PolicyViolation, "error budget spent");
    await waitFor(() => rt.getState() === "closed", "closed");
    expect(disconnects).toEqual([
      { code: CloseCode.PolicyViolation, reason: "error budget spent", willReconnect: false },
    ]);
    const err = await rejection(rt.join("a"));
    expect(err.code).toBe(ErrorCode.Unavailable);
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.conns).toHaveLength(1);
    // open() starts again.
    rt.open();
    await connected(rt);
    expect(fake.conns).toHaveLength(2);
  });

  it("gives up after maxAttempts with a final onDisconnect", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, reconnect: { initialDelayMs: 5, maxDelayMs: 10, maxAttempts: 2 } });
    await connected(rt);
    const disconnects: { willReconnect: boolean }[] = [];
    const attempts: number[] = [];
    rt.onDisconnect((i) => disconnects.push(i));
    rt.onReconnectAttempt((i) => attempts.push(i.attempt));
    await fake.stop();
    fakes.splice(fakes.indexOf(fake), 1);
    await waitFor(() => rt.getState() === "closed", "giving up");
    expect(attempts).toEqual([1, 2]);
    expect(disconnects.map((d) => d.willReconnect)).toEqual([true, false]);
  });

  it("treats a missing connected frame as a drop (connectTimeoutMs)", async () => {
    const fake = await FakeEdge.start(0, { connected: false });
    const rt = client({ url: fake.url, connectTimeoutMs: 50 });
    await waitFor(() => fake.conns.length >= 2, "a second attempt");
    expect(rt.isConnected()).toBe(false);
  });

  it("close() rejects what waits with CANCELED, stops reconnecting, and forgets the session", async () => {
    const fake = await FakeEdge.start(0, { handle: (_c, f) => f.command.case === "send" });
    const rt = client({ url: fake.url });
    await rt.join("a");
    await rt.updateProfile({ x: 1 });
    const disconnects: unknown[] = [];
    rt.onDisconnect((i) => disconnects.push(i));
    const p = rt.send("a", "e", 1);
    await waitFor(() => fake.commands().includes("send"), "the send");
    rt.close();
    expect((await rejection(p)).code).toBe(ErrorCode.Canceled);
    expect(disconnects).toEqual([{ code: 1000, reason: "client closed", willReconnect: false }]);
    await waitFor(() => fake.conns[0].ws.readyState === WebSocket.CLOSED, "the socket to close");
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.conns).toHaveLength(1);
    // A new session: nothing restored.
    rt.open();
    await connected(rt);
    expect(fake.frames.filter((f) => f.conn.id === "conn-2")).toHaveLength(0);
  });

  it("close() while reconnecting cancels the pending attempt", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: fake.url, reconnect: { initialDelayMs: 200, maxDelayMs: 200 } });
    await connected(rt);
    const attempts: number[] = [];
    rt.onReconnectAttempt((i) => attempts.push(i.attempt));
    const dropped = new Promise<void>((resolve) => {
      const off = rt.onDisconnect((i) => {
        off();
        expect(i.willReconnect).toBe(true);
        expect(rt.getState()).toBe("connecting");
        rt.close(); // before the attempt's timer fires
        resolve();
      });
    });
    fake.closeAll(CloseCode.Shutdown);
    await dropped;
    expect(rt.getState()).toBe("closed");
    await new Promise((r) => setTimeout(r, 300));
    expect(attempts).toEqual([]);
    expect(fake.conns).toHaveLength(1);
  });
});

describe("RealtimeClient tokens", () => {
  it("sends a string token as the token query parameter, and refreshToken's token on reconnect", async () => {
    const fake = await FakeEdge.start();
    const rt = client({ url: `${fake.url}/?x=1`, token: "t1" });
    await connected(rt);
    expect(fake.conns[0].query.get("token")).toBe("t1");
    expect(fake.conns[0].query.get("x")).toBe("1");
    await rt.refreshToken("t2");
    expect(fake.frames[0].frame.command).toMatchObject({ case: "refresh", value: { token: "t2" } });
    fake.closeAll(CloseCode.TokenExpired);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    expect(fake.conns[1].query.get("token")).toBe("t2");
  });

  it("calls a token function before every attempt; a failing one counts as a failed attempt", async () => {
    const fake = await FakeEdge.start();
    let n = 0;
    const rt = client({
      url: fake.url,
      token: async () => {
        n++;
        if (n === 2) throw new Error("auth server down");
        return `tok-${n}`;
      },
    });
    const errors: RealtimeClientError[] = [];
    rt.onError((e) => errors.push(e));
    await connected(rt);
    expect(fake.conns[0].query.get("token")).toBe("tok-1");
    fake.closeAll(CloseCode.TokenExpired);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    expect(fake.conns[1].query.get("token")).toBe("tok-3");
    expect(errors.map((e) => [e.codeName, e.message])).toEqual([
      ["UNAUTHENTICATED", "the token function failed: auth server down"],
    ]);
  });

  it("refuses a token in the url and an empty token", () => {
    expect(() => new RealtimeClient({ url: "ws://x/?token=a", WebSocket })).toThrow(/token/);
    expect(() => new RealtimeClient({ url: "ws://x", WebSocket, token: "" })).toThrow(/token/);
  });
});

describe("RealtimeClient positions and recovery", () => {
  /** A fake edge whose join replies carry a position (offset 5 in epoch e1, unless told) and recovered = !!since. */
  async function positionedEdge(reply: (frame: ClientFrame) => { recovered?: boolean } = () => ({})) {
    return FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "join") return false;
        conn.channels.add(frame.command.value.channel);
        const since = frame.command.value.since;
        conn.send({
          frame: {
            case: "reply",
            value: {
              id: frame.id,
              position: { offset: 5n, epoch: "e1" },
              recovered: since !== undefined,
              ...reply(frame),
            },
          },
        });
        return true;
      },
    });
  }
  const event = (conn: FakeConn, channel: string, id: string, offset = 0n, epoch = "") =>
    conn.send({
      frame: {
        case: "event",
        value: {
          channel,
          event: "e",
          id,
          offset,
          epoch,
          payload: { case: "json", value: { kind: { case: "nullValue", value: 0 } } },
        },
      },
    });

  it("drops an event at or before the last position seen in its epoch, takes a new epoch, re-joins with the last position", async () => {
    const fake = await positionedEdge();
    const rt = client({ url: fake.url });
    const got: { id: string; position?: unknown }[] = [];
    rt.on("e", (e) => got.push({ id: e.id, position: e.position }));
    expect(await rt.join("c")).toEqual({ position: { offset: 5n, epoch: "e1" }, recovered: false });
    const conn = fake.conns[0]!;
    event(conn, "c", "five", 5n, "e1"); // the join reply's position: seen
    event(conn, "c", "six", 6n, "e1");
    event(conn, "c", "seven", 7n, "e1");
    event(conn, "c", "six again", 6n, "e1");
    event(conn, "c", "seven again", 7n, "e1");
    event(conn, "c", "unpositioned"); // a channel without history: always delivered
    event(conn, "", "broadcast");
    event(conn, "c", "new epoch", 1n, "e2");
    event(conn, "c", "last", 2n, "e2");
    await waitFor(() => got.some((e) => e.id === "last"), "the last event");
    expect(got).toEqual([
      { id: "six", position: { offset: 6n, epoch: "e1" } },
      { id: "seven", position: { offset: 7n, epoch: "e1" } },
      { id: "unpositioned", position: undefined },
      { id: "broadcast", position: undefined },
      { id: "new epoch", position: { offset: 1n, epoch: "e2" } },
      { id: "last", position: { offset: 2n, epoch: "e2" } },
    ]);
    const resyncs: unknown[] = [];
    rt.onResync((e) => resyncs.push(e));
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    const rejoin = fake.frames.find((f) => f.conn.id === "conn-2")!.frame.command;
    expect(rejoin).toMatchObject({
      case: "join",
      value: { channel: "c", echo: false, since: { offset: 2n, epoch: "e2" } },
    });
    expect(resyncs).toEqual([]);
  });

  it("emits channel:resync when a re-join is not recovered (not_recovered) and on a Resync frame (resync); onAny does not get it", async () => {
    const fake = await positionedEdge((f) =>
      f.command.case === "join" && f.command.value.channel === "lost" ? { recovered: false } : {},
    );
    const rt = client({ url: fake.url, encoding: "json" });
    const resyncs: ResyncEvent[] = [];
    const any: string[] = [];
    rt.on("channel:resync", (e) => resyncs.push(e));
    rt.onAny((name) => any.push(name));
    const once: ResyncEvent[] = [];
    rt.once("channel:resync", (e) => once.push(e));
    const off = () => resyncs.push({ channel: "off", reason: "resync", position: undefined });
    rt.on("channel:resync", off);
    rt.off("channel:resync", off);
    await rt.join("lost");
    await rt.join("kept");
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    expect(resyncs).toEqual([{ channel: "lost", reason: "not_recovered", position: { offset: 5n, epoch: "e1" } }]);
    fake.conns[1]!.send({
      frame: { case: "resync", value: { channel: "kept", position: { offset: 9n, epoch: "e1" } } },
    });
    await waitFor(() => resyncs.length === 2, "the Resync frame");
    expect(resyncs[1]).toEqual({ channel: "kept", reason: "resync", position: { offset: 9n, epoch: "e1" } });
    expect(once).toEqual([resyncs[0]]);
    expect(any).toEqual([]);
  });

  it("a re-join the edge cannot recover, told by a Resync frame and then the reply, is one channel:resync (not_recovered)", async () => {
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "join") return false;
        const { channel, since } = frame.command.value;
        if (since) conn.send({ frame: { case: "resync", value: { channel, position: since } } });
        conn.send({
          frame: {
            case: "reply",
            value: { id: frame.id, position: { offset: 5n, epoch: "e2" }, recovered: false },
          },
        });
        return true;
      },
    });
    const rt = client({ url: fake.url, encoding: "json" });
    const resyncs: ResyncEvent[] = [];
    rt.onResync((e) => resyncs.push(e));
    await rt.join("c");
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 2 && rt.isConnected(), "the reconnect");
    expect(resyncs).toEqual([{ channel: "c", reason: "not_recovered", position: { offset: 5n, epoch: "e2" } }]);
  });

  it("keeps a channel whose re-join the edge refuses for now (UNAVAILABLE) and joins it again on the same connection", async () => {
    let refusals = 2;
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "join") return false;
        const value =
          conn.id !== "conn-1" && refusals-- > 0
            ? { id: frame.id, error: { code: ErrorCode.Unavailable, message: "Redis is away" } }
            : { id: frame.id, position: { offset: 5n, epoch: "e1" }, recovered: conn.id !== "conn-1" };
        conn.send({ frame: { case: "reply", value } });
        return true;
      },
    });
    const rt = client({ url: fake.url, encoding: "json" });
    const errors: unknown[] = [];
    rt.onError((e) => errors.push(e));
    await rt.join("c");
    fake.closeAll(CloseCode.Shutdown);
    await waitFor(
      () => fake.frames.filter((f) => f.conn.id === "conn-2" && f.frame.command.case === "join").length === 3,
      "the third re-join",
    );
    expect(fake.conns).toHaveLength(2);
    expect(errors).toEqual([]);
    // Each try with the position it had: the third one recovers.
    const rejoins = fake.frames.filter((f) => f.conn.id === "conn-2").map((f) => f.frame.command);
    for (const r of rejoins) expect(r).toMatchObject({ case: "join", value: { since: { offset: 5n, epoch: "e1" } } });
  });

  it("re-joins without since when it saw no position, or with recover: false, and emits no channel:resync then", async () => {
    const fake = await FakeEdge.start(); // replies carry no position
    const noPosition = client({ url: fake.url });
    await noPosition.join("a");
    const positioned = await positionedEdge(() => ({ recovered: false }));
    const off = client({ url: positioned.url, recover: false });
    await off.join("b");
    const resyncs: unknown[] = [];
    for (const rt of [noPosition, off]) rt.onResync((e) => resyncs.push(e));
    fake.closeAll(CloseCode.Shutdown);
    positioned.closeAll(CloseCode.Shutdown);
    await waitFor(() => fake.conns.length === 2 && positioned.conns.length === 2, "both reconnect");
    await waitFor(() => noPosition.isConnected() && off.isConnected(), "both restored");
    for (const f of [fake, positioned]) {
      const rejoin = f.frames.find((x) => x.conn.id === "conn-2")!.frame.command;
      expect(rejoin.case).toBe("join");
      expect((rejoin.value as { since?: unknown }).since).toBeUndefined();
    }
    expect(resyncs).toEqual([]);
  });

  it("join takes {echo, since} or the old boolean echo; since goes on the wire as given (a string offset too)", async () => {
    const fake = await positionedEdge();
    const rt = client({ url: fake.url });
    await rt.join("a", true);
    expect(await rt.join("b", { echo: false, since: { offset: 3n, epoch: "e1" } })).toEqual({
      position: { offset: 5n, epoch: "e1" },
      recovered: true,
    });
    await rt.join("c", { since: { offset: "4" as unknown as bigint, epoch: "e1" } });
    expect(fake.frames.map((f) => f.frame.command.value)).toMatchObject([
      { channel: "a", echo: true },
      { channel: "b", echo: false, since: { offset: 3n, epoch: "e1" } },
      { channel: "c", since: { offset: 4n, epoch: "e1" } },
    ]);
  });

  it("getHistory sends its options and maps the events as listeners get them", async () => {
    const fake = await FakeEdge.start(0, {
      handle: (conn, frame) => {
        if (frame.command.case !== "getHistory") return false;
        conn.send({
          frame: {
            case: "reply",
            value: {
              id: frame.id,
              position: { offset: 8n, epoch: "e1" },
              complete: true,
              events: [
                {
                  channel: "h",
                  event: "channel:join",
                  payload: { case: "member", value: { id: "m" } },
                  id: "j",
                  offset: 7n,
                  epoch: "e1",
                },
                {
                  channel: "h",
                  event: "msg",
                  payload: { case: "binary", value: new Uint8Array([1]) },
                  id: "x",
                  offset: 8n,
                  epoch: "e1",
                },
              ],
            },
          },
        });
        return true;
      },
    });
    const rt = client({ url: fake.url, encoding: "json" });
    const page = await rt.getHistory("h", { since: { offset: 6n, epoch: "e1" }, limit: 2, reverse: false });
    expect(fake.frames[0]!.frame.command.value).toMatchObject({
      channel: "h",
      since: { offset: 6n, epoch: "e1" },
      limit: 2,
      reverse: false,
    });
    expect(page).toEqual({
      position: { offset: 8n, epoch: "e1" },
      complete: true,
      events: [
        {
          event: "channel:join",
          payload: {
            channel: "h",
            message: { id: "m", data: null, userId: "" },
            position: { offset: 7n, epoch: "e1" },
          },
        },
        {
          event: "msg",
          payload: { channel: "h", message: new Uint8Array([1]), id: "x", position: { offset: 8n, epoch: "e1" } },
        },
      ],
    });
  });
});
