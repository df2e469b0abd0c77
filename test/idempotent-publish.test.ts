/**
 * Idempotent publish end to end, embedded mode: a real API process and two
 * edges, grpc-js clients from gen/ and a Connect client, WebSocket clients
 * counting what they receive. A retry with the same idempotency key is
 * answered with the first result and delivered once; per API key; within
 * the window (REALTIME_IDEMPOTENCY_WINDOW_MS, short here).
 *
 * "Delivered once" is checked by sending an unkeyed marker event after the
 * retries and waiting for it: events of one publisher to one channel arrive
 * in order, so once the marker is in, a second copy would be too.
 */
import { fromJson, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { beforeAll, describe, expect, it } from "vitest";
import { Realtime, type SendRequestSchema } from "../gen/realtime/v1/realtime_pb.js";
import { useCluster } from "./helpers/fixture.js";
import { publishAll } from "./helpers/grpc-client.js";
import { TestClient } from "./helpers/ws-client.js";

const KEY_A = "tenant-a-key-0123456789abcdef";
const KEY_B = "tenant-b-key-0123456789abcdef";
const WINDOW_MS = 2_000;

const f = useCluster(2, {
  REALTIME_API_KEYS: `${KEY_A}, ${KEY_B}`,
  REALTIME_IDEMPOTENCY_WINDOW_MS: String(WINDOW_MS),
});
const noEdges = useCluster(0, { REALTIME_API_KEYS: KEY_A });

const bearer = (key: string) => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${key}`);
  return m;
};
const A = () => bearer(KEY_A);
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const sendInit = (
  channel: string,
  event: string,
  value: unknown,
  idempotencyKey = "",
): MessageInitShape<typeof SendRequestSchema> => ({ channel, event, payload: json(value), idempotencyKey });

let connect: Client<typeof Realtime>;
beforeAll(() => {
  connect = createClient(
    Realtime,
    createConnectTransport({
      baseUrl: `http://${f.cluster.http}`,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("authorization", `Bearer ${KEY_A}`);
          return next(req);
        },
      ],
    }),
  );
});

/** Members of `channel` on both edges, one per encoding. */
async function members(channel: string): Promise<TestClient[]> {
  const cs = [await f.client(0, "json"), await f.client(1, "proto")];
  for (const c of cs) await c.ok({ command: { case: "join", value: { channel } } });
  return cs;
}

/** Sends an unkeyed marker and waits for it on every client: whatever was sent before has arrived. */
async function settled(channel: string, clients: TestClient[], metadata = A()): Promise<void> {
  await f.api.send(sendInit(channel, "marker", {}), metadata);
  for (const c of clients) await c.event("marker", channel);
}

const count = (c: TestClient, name: string, channel: string) =>
  c.events(name).filter((e) => e.channel === channel).length;

function grpcCode(err: unknown): number | undefined {
  return (err as grpc.ServiceError).code;
}

describe("idempotent publish (embedded mode)", () => {
  it("a Send retried with the same key is delivered once and answered with the first message_id, over gRPC and Connect", async () => {
    const cs = await members("idem-twice");
    const first = await f.api.send(sendInit("idem-twice", "order", { n: 1 }, "order-1"), A());
    expect(first).toMatchObject({ edges: 2, duplicate: false });
    const retry = await f.api.send(sendInit("idem-twice", "order", { n: 1 }, "order-1"), A());
    expect(retry).toMatchObject({ messageId: first.messageId, edges: 2, duplicate: true });
    // The same key over the other port is the same key.
    const viaConnect = await connect.send(sendInit("idem-twice", "order", { n: 1 }, "order-1"));
    expect(viaConnect).toMatchObject({ messageId: first.messageId, edges: 2, duplicate: true });
    await settled("idem-twice", cs);
    for (const c of cs) {
      expect(count(c, "order", "idem-twice")).toBe(1);
      expect(c.events("order")[0]!.id).toBe(first.messageId);
    }
  });

  it("concurrent retries are delivered once: one answer is the first, the others are duplicates of it", async () => {
    const cs = await members("idem-concurrent");
    const req = sendInit("idem-concurrent", "pay", { amount: 5 }, "pay-77");
    const answers = await Promise.all([
      ...Array.from({ length: 10 }, () => f.api.send(req, A())),
      ...Array.from({ length: 10 }, () => connect.send(req)),
    ]);
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
    expect(new Set(answers.map((a) => a.messageId)).size).toBe(1);
    await settled("idem-concurrent", cs);
    for (const c of cs) expect(count(c, "pay", "idem-concurrent")).toBe(1);
  });

  it("a retry after the window is a new event: delivered again, with a new message_id", async () => {
    const cs = await members("idem-window");
    const req = sendInit("idem-window", "tick", { t: 1 }, "tick-1");
    const first = await f.api.send(req, A());
    await new Promise((r) => setTimeout(r, WINDOW_MS + 200));
    const later = await f.api.send(req, A());
    expect(later.duplicate).toBe(false);
    expect(later.messageId).not.toBe(first.messageId);
    await settled("idem-window", cs);
    for (const c of cs) expect(count(c, "tick", "idem-window")).toBe(2);
  });

  it("scopes keys per API key: two tenants with the same key both deliver", async () => {
    const cs = await members("idem-tenants");
    const a = await f.api.send(sendInit("idem-tenants", "hello", { from: "a" }, "shared-key"), bearer(KEY_A));
    const b = await f.api.send(sendInit("idem-tenants", "hello", { from: "b" }, "shared-key"), bearer(KEY_B));
    expect(a.duplicate).toBe(false);
    expect(b.duplicate).toBe(false);
    expect(b.messageId).not.toBe(a.messageId);
    await settled("idem-tenants", cs);
    for (const c of cs) expect(count(c, "hello", "idem-tenants")).toBe(2);
  });

  it("the same key with a different request is FAILED_PRECONDITION and is not delivered", async () => {
    const cs = await members("idem-mismatch");
    await f.api.send(sendInit("idem-mismatch", "ev", { v: 1 }, "reused"), A());
    const err = await f.api.send(sendInit("idem-mismatch", "ev", { v: 2 }, "reused"), A()).catch((e: unknown) => e);
    expect(grpcCode(err)).toBe(grpc.status.FAILED_PRECONDITION);
    expect((err as Error).message).toMatch(/idempotency_key "reused" was used for a different request/);
    // A Broadcast is a different request too.
    const b = await f.api
      .broadcast({ event: "ev", payload: json({ v: 1 }), idempotencyKey: "reused" }, A())
      .catch((e: unknown) => e);
    expect(grpcCode(b)).toBe(grpc.status.FAILED_PRECONDITION);
    await settled("idem-mismatch", cs);
    for (const c of cs) expect(count(c, "ev", "idem-mismatch")).toBe(1);
  });

  it("a key longer than the limit is INVALID_ARGUMENT naming the limit, and nothing is delivered", async () => {
    const long = "k".repeat(129);
    const err = await f.api.send(sendInit("idem-long", "ev", {}, long), A()).catch((e: unknown) => e);
    expect(grpcCode(err)).toBe(grpc.status.INVALID_ARGUMENT);
    expect((err as Error).message).toMatch(/idempotency_key is 129 characters long; the limit is 128/);
    const viaConnect = await connect.send(sendInit("idem-long", "ev", {}, long)).catch((e: unknown) => e);
    expect(viaConnect).toBeInstanceOf(ConnectError);
    expect((viaConnect as ConnectError).code).toBe(Code.InvalidArgument);
    expect((viaConnect as ConnectError).rawMessage).toMatch(/the limit is 128/);
    const bad = await f.api.send(sendInit("idem-long", "ev", {}, "a key"), A()).catch((e: unknown) => e);
    expect(grpcCode(bad)).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("a Broadcast retried with the same key is delivered once", async () => {
    const cs = [await f.client(0, "proto"), await f.client(1, "json")];
    const req = { event: "announce-idem", payload: json({ v: 1 }), idempotencyKey: "bc-1" };
    const first = await f.api.broadcast(req, A());
    const retry = await f.api.broadcast(req, A());
    expect(retry).toMatchObject({ messageId: first.messageId, edges: first.edges, duplicate: true });
    await f.api.broadcast({ event: "announce-marker", payload: json({}) }, A());
    for (const c of cs) {
      await c.event("announce-marker");
      expect(c.events("announce-idem")).toHaveLength(1);
    }
  });

  it("a SendBatch retried is delivered once per event, each response a duplicate of the first", async () => {
    const cs = await members("idem-batch");
    const requests = [
      sendInit("idem-batch", "line", { i: 0 }, "batch-0"),
      sendInit("idem-batch", "line", { i: 1 }),
      sendInit("idem-batch", "line", { i: 2 }, "batch-2"),
      sendInit("idem-batch", "line", { i: 2 }, "batch-2"), // the same request twice in one batch: once
    ];
    const first = await f.api.sendBatch({ requests }, A());
    expect(first.responses.map((r) => r.duplicate)).toEqual([false, false, false, true]);
    expect(first.responses[3]!.messageId).toBe(first.responses[2]!.messageId);
    const retry = await f.api.sendBatch({ requests }, A());
    expect(retry.responses.map((r) => r.duplicate)).toEqual([true, false, true, true]);
    expect(retry.responses[0]!.messageId).toBe(first.responses[0]!.messageId);
    expect(retry.responses[2]!.messageId).toBe(first.responses[2]!.messageId);
    await settled("idem-batch", cs);
    for (const c of cs) {
      // Keyed events once each; the unkeyed one once per batch; in batch order.
      expect(c.events("line").map((e) => e.id)).toEqual([
        first.responses[0]!.messageId,
        first.responses[1]!.messageId,
        first.responses[2]!.messageId,
        retry.responses[1]!.messageId,
      ]);
    }
    // A key twice in one batch with different events: the whole batch is refused, nothing sent.
    const err = await f.api
      .sendBatch(
        { requests: [sendInit("idem-batch", "x", { v: 1 }, "dup"), sendInit("idem-batch", "x", { v: 2 }, "dup")] },
        A(),
      )
      .catch((e: unknown) => e);
    expect(grpcCode(err)).toBe(grpc.status.FAILED_PRECONDITION);
    expect((err as Error).message).toMatch(
      /requests\[1\]: idempotency_key "dup" is also the key of an earlier request/,
    );
    await settled("idem-batch", cs);
    for (const c of cs) expect(count(c, "x", "idem-batch")).toBe(0);
  });

  it("a Publish stream with a repeated key delivers once, in stream order, and acknowledges both indexes", async () => {
    const cs = await members("idem-stream");
    const keyed = (n: number, key: string) => ({
      event: { case: "send" as const, value: sendInit("idem-stream", "s", { n }, key) },
    });
    const plain = (n: number) => ({ event: { case: "send" as const, value: sendInit("idem-stream", "s", { n }) } });
    const { responses, status } = await publishAll(f.api.publish(A()), [
      keyed(1, "s-1"),
      plain(2),
      keyed(1, "s-1"), // a retry in the same stream
      plain(3),
      keyed(4, "s-4"),
    ]);
    expect(status.code).toBe(grpc.status.OK);
    expect(responses.at(-1)!.handled).toBe(5n);
    expect(responses.flatMap((r) => r.errors)).toEqual([]);
    // The retry on another stream (and a unary Send) is the same key too.
    const again = await publishAll(f.api.publish(A()), [keyed(4, "s-4")]);
    expect(again.responses.at(-1)!.handled).toBe(1n);
    expect(again.responses.flatMap((r) => r.errors)).toEqual([]);
    expect((await f.api.send(sendInit("idem-stream", "s", { n: 1 }, "s-1"), A())).duplicate).toBe(true);
    await settled("idem-stream", cs);
    for (const c of cs) {
      expect(c.events("s").map((e) => (toJson(ValueSchema, e.payload.value as Value) as { n: number }).n)).toEqual([
        1, 2, 3, 4,
      ]);
    }
    // A mismatched key is an error for its index alone.
    const bad = await publishAll(f.api.publish(A()), [keyed(9, "s-1"), plain(5)]);
    expect(bad.responses.flatMap((r) => r.errors).map((e) => [e.index, e.code])).toEqual([
      [0n, grpc.status.FAILED_PRECONDITION],
    ]);
  });
});

describe("idempotent publish: a failed first attempt (embedded mode)", () => {
  it("does not pin the key: after UNAVAILABLE (no edge), the retry is delivered", async () => {
    const req = sendInit("idem-fail", "ev", { v: 1 }, "after-outage");
    const err = await noEdges.api.send(req, A()).catch((e: unknown) => e);
    expect(grpcCode(err)).toBe(grpc.status.UNAVAILABLE);
    await noEdges.cluster.addEdge();
    const c = await noEdges.client(0, "json");
    await c.ok({ command: { case: "join", value: { channel: "idem-fail" } } });
    const retry = await noEdges.api.send(req, A());
    expect(retry).toMatchObject({ edges: 1, duplicate: false });
    expect((await c.event("ev", "idem-fail")).id).toBe(retry.messageId);
    expect((await noEdges.api.send(req, A())).duplicate).toBe(true);
  });
});
