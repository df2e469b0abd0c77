/**
 * Adapter for Switchboard, written against its described interface before
 * the service ran end to end. Every assumption is a named constant or a
 * small function below, so that fixing the adapter against the real thing
 * means editing this block, not the harness:
 *
 *  1. Processes: `node dist/src/cli.js api` and `... edge` (compiled), cwd the
 *     repository root. Each prints one JSON line on stdout when ready:
 *       {"ready":"api","grpc":"127.0.0.1:PORT","link":"127.0.0.1:PORT"}
 *       {"ready":"edge","ws":"ws://127.0.0.1:PORT"}
 *     Other stdout lines (logs) are ignored.
 *  2. Environment: REALTIME_GRPC_PORT=0 and REALTIME_LINK_PORT=0 for the API;
 *     REALTIME_LINK_URL=<the "link" field as printed> and REALTIME_WS_PORT=0
 *     for each edge (see linkUrl()). EXTRA_ENV is added to both.
 *  3. Clients: a WebSocket to the printed "ws" URL with subprotocol
 *     realtime.v1.json (default) or realtime.v1.proto
 *     (BENCH_SWITCHBOARD_ENCODING=proto). Join is
 *     {"id":n,"join":{"channel":c}}, answered by {"reply":{"id":n}} (with
 *     "error" on failure). Events arrive as
 *     {"event":{"channel":c,"event":EVENT_NAME,"json":{t,k,p},"id":"..."}};
 *     or, several at once (the client asks with ?events=batch; an edge with
 *     REALTIME_WRITE_BATCH sends them), {"events":{"events":[...]}};
 *     the "connected" frame, system events (channel:join, ...) and
 *     presence frames (?presence=compact, as the SDK asks) are ignored. Every
 *     join still tells the members already in the channel, so filling one
 *     channel of N members lists N²/2 changes, coalesced per presence
 *     window: a cost of the product, and it shows in the setup time.
 *  4. Publisher: grpc-js to the printed "grpc" address, insecure. Publishes
 *     and broadcasts go on one /realtime.v1.Realtime/Publish stream
 *     ({send: {channel, event: EVENT_NAME, json: payload}} or {broadcast:
 *     {event, json}}, settled by cumulative acks) unless
 *     BENCH_SWITCHBOARD_PUBLISH=batch (SendBatch per tick) or =unary (one
 *     Send each); /GetMembers {channel} is unary. Messages from
 *     gen/realtime/v1/realtime_pb.ts.
 *  5. Edges: BENCH_SWITCHBOARD_EDGES (default 1) edge processes linked to one
 *     API; clients are spread over them; CPU and RSS are summed over all.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import type { Event } from "../../gen/realtime/client/v1/client_pb.js";
import type { PublishRequest, PublishResponse } from "../../gen/realtime/v1/realtime_pb.js";
import { Acks, openWebSocket } from "./ws.js";
import type { BenchPayload, ClientConnection, Publisher, SystemAdapter } from "./system.js";

/** The compiled CLI, as deployed (`npm run bench` builds it first). */
const CLI = "dist/src/cli.js";
const API_ARGS = [CLI, "api"];
const EDGE_ARGS = [CLI, "edge"];
/** Extra environment for both processes (e.g. a log level), none by default. */
const EXTRA_ENV: Record<string, string> = {};
/** The application event name the publisher sends and clients count. */
const EVENT_NAME = "bench";
/** Client encoding: "json" (text frames) or "proto" (binary frames). */
const ENCODING = process.env.BENCH_SWITCHBOARD_ENCODING === "proto" ? "proto" : "json";
const SUBPROTOCOL = ENCODING === "proto" ? "realtime.v1.proto" : "realtime.v1.json";
const EDGES = Math.max(1, Number(process.env.BENCH_SWITCHBOARD_EDGES ?? 1) || 1);
/**
 * How the publisher calls the API: "stream" (default) writes every publish
 * and broadcast on one Publish stream, each resolved by the cumulative ack
 * that covers it; "batch" sends the publishes due in one tick as one
 * SendBatch call; "unary" makes one Send call each.
 */
const PUBLISH_MODE = (["unary", "batch"] as const).find((m) => m === process.env.BENCH_SWITCHBOARD_PUBLISH) ?? "stream";
const PUBLISH_MODE_DESCRIPTION = {
  stream: "one Publish stream (a message per event, cumulative acks)",
  batch: "SendBatch (the publishes due in one tick per call)",
  unary: "Send (one call each)",
}[PUBLISH_MODE];
/** Startup can include tsx compiling the service on first run. */
const READY_TIMEOUT_MS = 60_000;
/** gRPC deadline of every call. */
const CALL_DEADLINE_MS = 30_000;
/** GetMembers of 10,000 members must fit. */
const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

const SERVICE = "/realtime.v1.Realtime";

/** The edge's REALTIME_LINK_URL, from the API's printed "link" address. */
function linkUrl(printed: string): string {
  return printed;
}

/** t and k of a google.protobuf.Value holding a bench payload object. */
function benchFields(v: Value | undefined): { t: number; k: number } | undefined {
  if (v?.kind.case !== "structValue") return undefined;
  const f = v.kind.value.fields;
  const t = f.t?.kind.case === "numberValue" ? f.t.kind.value : NaN;
  const k = f.k?.kind.case === "numberValue" ? f.k.kind.value : NaN;
  return { t, k };
}

interface JsonEvent {
  event?: string;
  json?: BenchPayload;
}

interface JsonServerFrame {
  reply?: { id?: number; error?: { code?: string; message?: string } };
  event?: JsonEvent;
  events?: { events?: JsonEvent[] };
}

/**
 * The client's URL: it reads events frames (events=batch, as the SDK asks),
 * which an edge sends only with REALTIME_WRITE_BATCH; otherwise a no-op.
 */
function clientUrl(url: string): string {
  const u = new URL(url);
  u.searchParams.set("events", "batch");
  // As the SDK connects: a channel's system events come coalesced (presence frames), which the clients ignore.
  u.searchParams.set("presence", "compact");
  return u.toString();
}

async function connectJson(
  url: string,
  onDelivery: (t: number, k: number) => void,
  onClose: (reason: string) => void,
): Promise<ClientConnection> {
  const ws = await openWebSocket(clientUrl(url), SUBPROTOCOL);
  const acks = new Acks();
  let closing = false;
  const onEvent = (ev: JsonEvent) => {
    if (ev.event === EVENT_NAME && ev.json) onDelivery(ev.json.t, ev.json.k);
  };
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as JsonServerFrame;
    if (m.event) onEvent(m.event);
    else if (m.events) for (const ev of m.events.events ?? []) onEvent(ev);
    else if (m.reply?.id) {
      const e = m.reply.error;
      acks.settle(m.reply.id, e ? `${e.code}: ${e.message}` : undefined);
    }
  });
  ws.on("close", (code, reason) => {
    acks.failAll(`closed (${code} ${reason})`);
    if (!closing) onClose(`closed by edge (${code} ${reason})`);
  });
  return {
    join(channel) {
      const { id, done } = acks.add();
      ws.send(JSON.stringify({ id, join: { channel } }));
      return done;
    },
    close() {
      closing = true;
      ws.terminate();
    },
  };
}

async function connectProto(
  url: string,
  onDelivery: (t: number, k: number) => void,
  onClose: (reason: string) => void,
): Promise<ClientConnection> {
  const { create, fromBinary, toBinary } = await import("@bufbuild/protobuf");
  const pb = await import("../../gen/realtime/client/v1/client_pb.js");
  const ws = await openWebSocket(clientUrl(url), SUBPROTOCOL);
  const acks = new Acks();
  let closing = false;
  ws.binaryType = "nodebuffer";
  const onEvent = (ev: Event) => {
    if (ev.event === EVENT_NAME && ev.payload.case === "json") {
      const f = benchFields(ev.payload.value);
      if (f) onDelivery(f.t, f.k);
    }
  };
  ws.on("message", (data: Buffer) => {
    const frame = fromBinary(pb.ServerFrameSchema, data).frame;
    if (frame.case === "event") onEvent(frame.value);
    else if (frame.case === "events") for (const ev of frame.value.events) onEvent(ev);
    else if (frame.case === "reply") {
      const e = frame.value.error;
      acks.settle(frame.value.id, e ? `${e.code}: ${e.message}` : undefined);
    }
  });
  ws.on("close", (code, reason) => {
    acks.failAll(`closed (${code} ${reason})`);
    if (!closing) onClose(`closed by edge (${code} ${reason})`);
  });
  return {
    join(channel) {
      const { id, done } = acks.add();
      const join = create(pb.JoinSchema, { channel });
      ws.send(
        toBinary(pb.ClientFrameSchema, create(pb.ClientFrameSchema, { id, command: { case: "join", value: join } })),
      );
      return done;
    },
    close() {
      closing = true;
      ws.terminate();
    },
  };
}

export const switchboardSystem: SystemAdapter = {
  name: "switchboard",
  description: `Switchboard: API process (gRPC) + ${EDGES} edge process(es), ${SUBPROTOCOL} clients, publisher over gRPC ${PUBLISH_MODE_DESCRIPTION}`,

  async start(ctx) {
    if (!existsSync(join(ctx.repoRoot, CLI))) {
      throw new Error(`Switchboard is not built: ${CLI} does not exist (run npm run build)`);
    }
    const api = await ctx.spawn({
      name: "switchboard-api",
      args: API_ARGS,
      cwd: ctx.repoRoot,
      env: { ...EXTRA_ENV, REALTIME_GRPC_PORT: "0", REALTIME_LINK_PORT: "0" },
      ready: (l) => l.ready === "api",
      readyTimeoutMs: READY_TIMEOUT_MS,
    });
    const link = String(api.readyLine!.link);
    const edges = [];
    for (let i = 0; i < EDGES; i++) {
      edges.push(
        await ctx.spawn({
          name: `switchboard-edge${EDGES > 1 ? i + 1 : ""}`,
          args: EDGE_ARGS,
          cwd: ctx.repoRoot,
          env: { ...EXTRA_ENV, REALTIME_LINK_URL: linkUrl(link), REALTIME_WS_PORT: "0" },
          ready: (l) => l.ready === "edge",
          readyTimeoutMs: READY_TIMEOUT_MS,
        }),
      );
    }
    return {
      clientUrls: edges.map((e) => String(e.readyLine!.ws)),
      publishUrl: String(api.readyLine!.grpc),
      processes: [api, ...edges],
    };
  },

  connect(url, onDelivery, onClose) {
    return ENCODING === "proto" ? connectProto(url, onDelivery, onClose) : connectJson(url, onDelivery, onClose);
  },

  async createPublisher(address): Promise<Publisher> {
    const grpc = await import("@grpc/grpc-js");
    const { create, fromBinary, fromJson, toBinary } = await import("@bufbuild/protobuf");
    const pb = await import("../../gen/realtime/v1/realtime_pb.js");
    const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_RECEIVE_BYTES,
    });
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + CALL_DEADLINE_MS, (err) => (err ? reject(err) : resolve())),
    );

    function unary<Res>(method: string, request: Uint8Array, decode: (b: Buffer) => Res): Promise<Res> {
      return new Promise<Res>((resolve, reject) => {
        client.makeUnaryRequest<Uint8Array, Res>(
          `${SERVICE}/${method}`,
          (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
          decode,
          request,
          { deadline: Date.now() + CALL_DEADLINE_MS },
          (err, res) => (err ? reject(err) : resolve(res!)),
        );
      });
    }

    // Batch mode: the publishes made in one tick leave as one SendBatch
    // call (what a real high-rate backend does), each resolved by its ack.
    let batch: { req: ReturnType<typeof sendRequest>; resolve: () => void; reject: (e: unknown) => void }[] = [];
    const sendRequest = (channel: string, payload: BenchPayload) =>
      fromJson(pb.SendRequestSchema, { channel, event: EVENT_NAME, json: { ...payload } });
    const flush = () => {
      const items = batch;
      batch = [];
      for (let i = 0; i < items.length; i += 1000) {
        const chunk = items.slice(i, i + 1000);
        const req = create(pb.SendBatchRequestSchema, { requests: chunk.map((c) => c.req) });
        unary("SendBatch", toBinary(pb.SendBatchRequestSchema, req), (b) => b).then(
          () => chunk.forEach((c) => c.resolve()),
          (err: unknown) => chunk.forEach((c) => c.reject(err)),
        );
      }
    };

    // Stream mode: one Publish call for the publisher's life; the i-th
    // request is settled by the first ack with handled > i (rejected if
    // that ack lists it among the errors).
    const pending: { resolve: () => void; reject: (e: unknown) => void }[] = [];
    let settledCount = 0;
    let stream: ClientDuplexStream<Uint8Array, PublishResponse> | undefined;
    let streamError: unknown;
    if (PUBLISH_MODE === "stream") {
      stream = client.makeBidiStreamRequest<Uint8Array, PublishResponse>(
        `${SERVICE}/Publish`,
        (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
        (b) => fromBinary(pb.PublishResponseSchema, b),
      );
      stream.on("data", (res: PublishResponse) => {
        const failed = new Map(res.errors.map((e) => [Number(e.index), e]));
        const upTo = Number(res.handled);
        for (; settledCount < upTo; settledCount++) {
          const p = pending.shift()!;
          const e = failed.get(settledCount);
          if (e) p.reject(new Error(`Publish request ${settledCount}: code ${e.code}: ${e.message}`));
          else p.resolve();
        }
      });
      stream.on("error", (err: unknown) => {
        streamError = err;
        for (const p of pending.splice(0)) p.reject(err);
      });
    }
    const viaStream = (req: PublishRequest) =>
      new Promise<void>((resolve, reject) => {
        if (streamError) return reject(streamError);
        pending.push({ resolve, reject });
        stream!.write(toBinary(pb.PublishRequestSchema, req));
      });

    return {
      async publish(channel, payload) {
        const req = sendRequest(channel, payload);
        if (PUBLISH_MODE === "stream") {
          await viaStream(create(pb.PublishRequestSchema, { event: { case: "send", value: req } }));
          return;
        }
        if (PUBLISH_MODE === "unary") {
          await unary("Send", toBinary(pb.SendRequestSchema, req), (b) => b);
          return;
        }
        await new Promise<void>((resolve, reject) => {
          if (batch.push({ req, resolve, reject }) === 1) process.nextTick(flush);
        });
      },
      async broadcast(payload) {
        const req = fromJson(pb.BroadcastRequestSchema, { event: EVENT_NAME, json: { ...payload } });
        if (PUBLISH_MODE === "stream") {
          await viaStream(create(pb.PublishRequestSchema, { event: { case: "broadcast", value: req } }));
          return;
        }
        await unary("Broadcast", toBinary(pb.BroadcastRequestSchema, req), (b) => b);
      },
      async members(channel) {
        const req = fromJson(pb.GetMembersRequestSchema, { channel });
        const res = await unary("GetMembers", toBinary(pb.GetMembersRequestSchema, req), (b) =>
          fromBinary(pb.GetMembersResponseSchema, b),
        );
        return res.members.length;
      },
      async close() {
        stream?.end();
        client.close();
      },
    };
  },
};
