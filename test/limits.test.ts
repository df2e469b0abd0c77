/**
 * The client-facing limits of an edge, each set low through its env
 * variable and then exceeded: frame size (close 1009), payload size,
 * connections per edge (HTTP 503 before the upgrade), channels per
 * connection, profile size, and the per-connection command rate with its
 * error budget (RESOURCE_EXHAUSTED replies, then close 4503). Real API and
 * edge processes on port 0.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../gen/realtime/client/v1/client_pb.js";
import { maxFrameBytes } from "../src/core/limits.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { upgrade } from "./helpers/trust.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const PAYLOAD = 1024;
const FRAME = maxFrameBytes({ maxPayloadBytes: PAYLOAD, maxProfileBytes: 64, maxChannelsPerConnection: 2 });
let cluster: Cluster;
const clients: TestClient[] = [];
/** edge 0: at most 2 connections; edge 1: the other limits, low. */
const FEW = 0;
const LOW = 1;

async function connect(edge: number, enc: "json" | "proto" = "json"): Promise<TestClient> {
  const c = await TestClient.connect(cluster.ws[edge]!, enc);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  cluster = await startCluster(0, { REALTIME_MAX_PAYLOAD_BYTES: String(PAYLOAD) });
  await cluster.addEdge({ REALTIME_MAX_CONNECTIONS: "2" });
  await cluster.addEdge({
    REALTIME_MAX_CHANNELS_PER_CONNECTION: "2",
    REALTIME_MAX_PROFILE_BYTES: "64",
    REALTIME_RATE_LIMIT_PER_SECOND: "5",
    REALTIME_RATE_LIMIT_BURST: "5",
    REALTIME_ERROR_BUDGET: "3",
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await cluster?.stop();
  await stopAll();
});

describe("frame and payload size", () => {
  for (const enc of ["json", "proto"] as const) {
    it(`closes a connection that sends a frame over the limit with 1009 (${enc})`, async () => {
      const c = await connect(LOW, enc);
      c.ws.send(enc === "json" ? "x".repeat(FRAME + 1) : Buffer.alloc(FRAME + 1));
      await c.closed;
      expect(c.closeCode).toBe(1009);
    });
  }

  it("answers a frame within the limit but a payload over it with RESOURCE_EXHAUSTED, and stays open", async () => {
    const c = await connect(LOW, "proto");
    await c.ok({ command: { case: "join", value: { channel: "size" } } });
    const reply = await c.request({
      command: {
        case: "send",
        value: { channel: "size", event: "e", payload: { case: "binary", value: new Uint8Array(PAYLOAD + 1) } },
      },
    });
    expect(reply.error).toMatchObject({
      code: ErrorCode.RESOURCE_EXHAUSTED,
      message: expect.stringMatching(/limit is 1024 bytes/),
    });
    expect((await c.request({ command: { case: "ping", value: {} } })).error).toBeUndefined();
  });
});

describe("connections per edge", () => {
  it("refuses the connection over the limit with HTTP 503 before the upgrade; a freed slot is reusable", async () => {
    const a = await connect(FEW);
    await connect(FEW);
    const refused = await upgrade(cluster.ws[FEW]!);
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/REALTIME_MAX_CONNECTIONS/);
    await a.close();
    await sleep(200);
    const again = await upgrade(cluster.ws[FEW]!);
    expect(again.status).toBe(101);
    again.ws!.close();
  });
});

describe("channels per connection and profile size", () => {
  it("refuses the channel over the limit with RESOURCE_EXHAUSTED", async () => {
    const c = await connect(LOW);
    await c.ok({ command: { case: "join", value: { channel: "c1" } } });
    await c.ok({ command: { case: "join", value: { channel: "c2" } } });
    const third = await c.request({ command: { case: "join", value: { channel: "c3" } } });
    expect(third.error).toMatchObject({
      code: ErrorCode.RESOURCE_EXHAUSTED,
      message: expect.stringMatching(/2 channels/),
    });
    await c.ok({ command: { case: "leave", value: { channel: "c1" } } });
    await c.ok({ command: { case: "join", value: { channel: "c3" } } });
  });

  it("refuses a profile over the limit with RESOURCE_EXHAUSTED", async () => {
    const c = await connect(LOW);
    const big = await c.request({
      command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "x".repeat(100) } } } },
    });
    expect(big.error).toMatchObject({
      code: ErrorCode.RESOURCE_EXHAUSTED,
      message: expect.stringMatching(/limit is 64 bytes/),
    });
    await c.ok({
      command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "small" } } } },
    });
  });
});

describe("command rate and error budget", () => {
  it("lets a client within the rate through", async () => {
    const c = await connect(LOW);
    for (let round = 0; round < 2; round++) {
      const replies = await Promise.all(
        Array.from({ length: 5 }, () => c.request({ command: { case: "ping", value: {} } })),
      );
      expect(replies.every((r) => r.error === undefined)).toBe(true);
      await sleep(1_100);
    }
    expect(c.closeCode).toBeUndefined();
  });

  it("answers a flood past the burst with RESOURCE_EXHAUSTED, then closes it with 4503; others are unaffected", async () => {
    const flood = await connect(LOW);
    const bystander = await connect(LOW);
    const replies = Array.from({ length: 30 }, () =>
      flood.request({ command: { case: "ping", value: {} } }).catch(() => undefined),
    );
    await flood.closed;
    expect(flood.closeCode).toBe(4503);
    // Requests 1-5 fit the burst; the rest are refused at once (their error
    // replies may overtake the replies of 1-5, which run in order), and the
    // 4th refusal spends the budget of 3: the connection is closed.
    const got = flood.frames.flatMap((f) => (f.frame.case === "reply" ? [f.frame.value] : []));
    const limited = got.filter((r) => r.id > 5);
    expect(got.filter((r) => r.id <= 5).every((r) => r.error === undefined)).toBe(true);
    expect(limited.length).toBe(4);
    for (const r of limited)
      expect(r.error).toMatchObject({
        code: ErrorCode.RESOURCE_EXHAUSTED,
        message: expect.stringMatching(/rate limit/),
      });
    void replies;
    expect((await bystander.request({ command: { case: "ping", value: {} } })).error).toBeUndefined();
  });

  it("spends the error budget on repeated bad commands too (malformed frames, denials)", async () => {
    const c = await connect(LOW);
    for (let i = 0; i < 6 && c.closeCode === undefined; i++) {
      c.ws.send("{not json");
      await sleep(50);
    }
    await c.closed;
    expect(c.closeCode).toBe(4503);
  });
});
