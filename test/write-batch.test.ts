/**
 * REALTIME_WRITE_BATCH, end to end with real processes, in both encodings:
 * an edge with a write delay packs the events a connection gets within the
 * delay into events frames, for a client that asked (events=batch; the SDK
 * does), in order; a frame of another kind sent after them (a reply, the
 * close) follows them; a client that did not ask gets one event frame per
 * event from the same edge.
 */
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Event, ServerFrame } from "../gen/realtime/client/v1/client_pb.js";
import { RealtimeClient, type MessageEvent } from "../src/client/index.js";
import { useCluster } from "./helpers/fixture.js";
import { sdkEncoding, waitFor } from "./helpers/sdk.js";
import type { Enc, TestClient } from "./helpers/ws-client.js";

const DELAY_MS = 300;
const N = 30;

const f = useCluster([
  { REALTIME_WRITE_DELAY_MS: String(DELAY_MS), REALTIME_WRITE_BATCH: "true" },
  {}, // no delay: it sees events as soon as they reach the edges
]);

async function member(edge: number, enc: Enc, channel: string, query = ""): Promise<TestClient> {
  const c = await f.client(edge, enc, query);
  await c.ok({ command: { case: "join", value: { channel } } });
  return c;
}

/** Publishes N "tick" events 0..N-1 to channel in one SendBatch. */
async function ticks(channel: string): Promise<void> {
  await f.api.sendBatch({
    requests: Array.from({ length: N }, (_, n) => ({
      channel,
      event: "tick",
      payload: { case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } },
    })),
  });
}

/** The events a frame carries: one for an event frame, its list for an events frame. */
function eventsOf(frame: ServerFrame): Event[] {
  if (frame.frame.case === "event") return [frame.frame.value];
  if (frame.frame.case === "events") return frame.frame.value.events;
  return [];
}

const hasTicks = (f: ServerFrame) => eventsOf(f).some((e) => e.event === "tick");
const tickValue = (e: Event) => (e.payload.case === "json" ? e.payload.value.kind.value : undefined);
/** The tick values c received, in order, whatever frames carried them. */
const ticksOf = (c: TestClient) =>
  c.frames
    .flatMap(eventsOf)
    .filter((e) => e.event === "tick")
    .map(tickValue);
const inOrder = Array.from({ length: N }, (_, n) => n);

describe.each(["json", "proto"] as const)("REALTIME_WRITE_BATCH (%s)", (enc) => {
  it("packs the events of one SendBatch into at most 2 frames, in order, for a client that asked; one frame each for one that did not", async () => {
    const channel = `wb-batch-${enc}`;
    const batched = await member(0, enc, channel, "?events=batch");
    const plain = await member(0, enc, channel);
    await ticks(channel);
    await waitFor(() => ticksOf(batched).length === N && ticksOf(plain).length === N, `${N} events each`);
    expect(ticksOf(batched)).toEqual(inOrder);
    expect(ticksOf(plain)).toEqual(inOrder);
    const carriers = batched.frames.filter(hasTicks);
    expect(carriers.length).toBeLessThanOrEqual(2);
    expect(carriers.some((f) => f.frame.case === "events")).toBe(true);
    // The client that did not ask: never an events frame.
    expect(plain.frames.some((f) => f.frame.case === "events")).toBe(false);
    expect(plain.frames.filter(hasTicks).length).toBe(N);
  });

  it("a reply sent after held events follows them", async () => {
    const channel = `wb-reply-${enc}`;
    const batched = await member(0, enc, channel, "?events=batch");
    const watcher = await member(1, enc, channel); // on the edge without delay
    await ticks(channel);
    // The events have reached the edges; the batching edge holds them for its delay.
    await waitFor(() => ticksOf(watcher).length === N, "the events at the other edge");
    await batched.ok({ command: { case: "ping", value: {} } });
    expect(ticksOf(batched)).toEqual(inOrder);
    const reply = batched.frames.findIndex((f) => f.frame.case === "reply" && f.frame.value.id !== 1);
    const lastTicks = batched.frames.length - 1 - [...batched.frames].reverse().findIndex(hasTicks);
    expect(lastTicks).toBeLessThan(reply);
  });

  it("the close frame of a Disconnect follows the events held before it", async () => {
    const channel = `wb-close-${enc}`;
    const batched = await member(0, enc, channel, "?events=batch");
    await ticks(channel);
    await f.api.disconnect({ target: { target: { case: "connectionId", value: batched.id } }, reason: "bye" });
    await batched.closed;
    expect(batched.closeCode).toBe(4505);
    expect(ticksOf(batched)).toEqual(inOrder);
  });

  it("the SDK asks for events frames and emits one event per event, in order", async () => {
    const channel = `wb-sdk-${enc}`;
    let messages = 0;
    class CountingWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args);
        this.on("message", () => messages++);
      }
    }
    const rt = new RealtimeClient({ url: f.cluster.ws[0]!, WebSocket: CountingWebSocket, encoding: sdkEncoding(enc) });
    const seen: unknown[] = [];
    rt.on("tick", (e: MessageEvent) => seen.push(e.message));
    try {
      await rt.join(channel);
      const before = messages;
      await ticks(channel);
      await waitFor(() => seen.length === N, `${N} ticks`);
      expect(seen).toEqual(inOrder);
      expect(messages - before).toBeLessThanOrEqual(2);
    } finally {
      rt.close();
    }
  });
});
