/**
 * The Publish stream end to end: a real API process and two edges, a
 * grpc-js client from gen/ writing many events on one call, WebSocket
 * clients of both encodings receiving them; plus publishStream's read-ahead
 * bound, driven directly.
 */
import { create, fromJson, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { PublishRequestSchema, type PublishRequest, type PublishResponse } from "../gen/realtime/v1/realtime_pb.js";
import { publishStream } from "../src/api/publish.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";
import { useCluster } from "./helpers/fixture.js";
import { publishAll } from "./helpers/grpc-client.js";
import { sleep } from "./helpers/ws-client.js";

const f = useCluster(2, { REALTIME_MAX_PAYLOAD_BYTES: "4096" });
const noEdges = useCluster(0);
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const send = (channel: string, event: string, value: unknown): MessageInitShape<typeof PublishRequestSchema> => ({
  event: { case: "send", value: { channel, event, payload: json(value) } },
});

describe("Publish", () => {
  it("delivers every event of the stream in order, to both edges and both encodings, and acknowledges all of them", async () => {
    const a = await f.client(0, "json");
    const b = await f.client(1, "proto");
    for (const c of [a, b]) await c.ok({ command: { case: "join", value: { channel: "stream" } } });
    const N = 2_000;
    const requests = Array.from({ length: N }, (_, i) => send("stream", "tick", { i }));
    const { responses, status } = await publishAll(f.api.publish(), requests);

    expect(status.code).toBe(grpc.status.OK);
    const handled = responses.map((r) => Number(r.handled));
    expect(handled.at(-1)).toBe(N);
    // Cumulative and strictly growing; acks merge (fewer responses than requests).
    for (let i = 1; i < handled.length; i++) expect(handled[i]).toBeGreaterThan(handled[i - 1]!);
    expect(responses.length).toBeLessThan(N);
    expect(responses.flatMap((r) => r.errors)).toEqual([]);

    await a.event("tick", "stream");
    for (const c of [a, b]) {
      for (let tries = 0; c.events("tick").length < N && tries < 100; tries++) await sleep(50);
      const got = c.events("tick").map((e) => (toJson(ValueSchema, e.payload.value as never) as { i: number }).i);
      expect(got).toEqual(Array.from({ length: N }, (_, i) => i));
      // Each event has its own id.
      expect(new Set(c.events("tick").map((e) => e.id)).size).toBe(N);
    }
  });

  it("reports a failing request with its index and code, and goes on with the rest", async () => {
    const c = await f.client(0, "json");
    await c.ok({ command: { case: "join", value: { channel: "mixed" } } });
    const requests: MessageInitShape<typeof PublishRequestSchema>[] = [
      send("mixed", "m", 0),
      send("bad channel!", "m", 1), // 1: invalid channel name
      send("mixed", "channel:join", 2), // 2: reserved event name
      { event: { case: "send", value: { channel: "mixed", event: "m" } } }, // 3: no payload
      {}, // 4: neither send nor broadcast
      {
        event: {
          case: "send",
          value: { channel: "mixed", event: "m", payload: { case: "binary", value: new Uint8Array(5000) } },
        },
      }, // 5: over 4 KiB
      send("mixed", "m", 6),
      { event: { case: "broadcast", value: { event: "m", payload: json(7) } } },
    ];
    const { responses, status } = await publishAll(f.api.publish(), requests);
    expect(status.code).toBe(grpc.status.OK);
    expect(Number(responses.at(-1)!.handled)).toBe(requests.length);
    const errors = responses
      .flatMap((r) => r.errors)
      .map((e) => ({ index: Number(e.index), code: e.code, message: e.message }));
    expect(errors.map((e) => [e.index, e.code])).toEqual([
      [1, Code.InvalidArgument],
      [2, Code.InvalidArgument],
      [3, Code.InvalidArgument],
      [4, Code.InvalidArgument],
      [5, Code.ResourceExhausted],
    ]);
    expect(errors[0]!.message).toMatch(/channel/);
    expect(errors[2]!.message).toMatch(/payload/);
    expect(errors[3]!.message).toMatch(/send.*broadcast/);
    expect(errors[4]!.message).toMatch(/4096/);

    // The good ones arrived, in order: 0, 6, then the broadcast 7.
    await c.event("m");
    for (let tries = 0; c.events("m").length < 3 && tries < 100; tries++) await sleep(20);
    await sleep(100);
    expect(c.events("m").map((e) => toJson(ValueSchema, e.payload.value as never))).toEqual([0, 6, 7]);
  });

  it("answers an empty stream with one response of handled 0, and OK", async () => {
    const { responses, status } = await publishAll(f.api.publish(), []);
    expect(status.code).toBe(grpc.status.OK);
    expect(responses.map((r) => Number(r.handled))).toEqual([0]);
  });

  it("fails the whole stream with RESOURCE_EXHAUSTED for a request larger than the request limit", async () => {
    const huge = {
      event: {
        case: "send" as const,
        value: {
          channel: "x",
          event: "m",
          payload: { case: "binary" as const, value: new Uint8Array(2 * 1024 * 1024) },
        },
      },
    };
    const { status } = await publishAll(f.api.publish(), [send("x", "m", 1), huge]);
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it("reports UNAVAILABLE per event while no edge is connected, and keeps the stream", async () => {
    const { responses, status } = await publishAll(noEdges.api.publish(), [
      send("c", "m", 1),
      { event: { case: "broadcast", value: { event: "m", payload: json(2) } } },
    ]);
    expect(status.code).toBe(grpc.status.OK);
    const errors = responses.flatMap((r) => r.errors);
    expect(errors.map((e) => [Number(e.index), e.code])).toEqual([
      [0, Code.Unavailable],
      [1, Code.Unavailable],
    ]);
    expect(errors[0]!.message).not.toBe("");
  });
});

describe("publishStream", () => {
  it("stops reading requests once maxUnacknowledged are ahead of the responses written, and resumes after one", async () => {
    let pulled = 0;
    async function* requests(): AsyncGenerator<PublishRequest> {
      for (let i = 0; i < 1_000; i++) {
        pulled++;
        yield create(PublishRequestSchema, send("c", "e", i));
      }
    }
    const stream = publishStream(requests(), async () => 1, 10, new AbortController().signal);
    const first = await stream.next();
    expect(Number((first.value as PublishResponse).handled)).toBeGreaterThan(0);
    // The consumer does not ask for the next response: the reader stalls at the bound.
    await sleep(50);
    const stalled = pulled;
    expect(stalled).toBeLessThanOrEqual(Number((first.value as PublishResponse).handled) + 10 + 1);
    await sleep(50);
    expect(pulled).toBe(stalled);
    // Draining the responses lets it read everything.
    let last = first.value as PublishResponse;
    for await (const r of { [Symbol.asyncIterator]: () => stream }) last = r;
    expect(pulled).toBe(1_000);
    expect(Number(last.handled)).toBe(1_000);
  });

  it("keeps `handled` a prefix when publishes settle out of order, and lists errors in index order", async () => {
    async function* requests(): AsyncGenerator<PublishRequest> {
      for (let i = 0; i < 6; i++) yield create(PublishRequestSchema, send("c", "e", i));
    }
    // Request i settles after (6 - i) * 5 ms: the last first. Odd ones fail.
    const publishOne = (e: { value: { payload: { value?: unknown } } }) => {
      const i = Number(toJson(ValueSchema, e.value.payload.value as never) as number);
      return new Promise((resolve, reject) =>
        setTimeout(
          () => (i % 2 ? reject(new RealtimeError(Code.Unavailable, `no edge for ${i}`)) : resolve(1)),
          (6 - i) * 5,
        ),
      );
    };
    const responses: PublishResponse[] = [];
    for await (const r of publishStream(requests(), publishOne as never, 100, new AbortController().signal))
      responses.push(r);
    // Nothing is acknowledged until request 0 settles, which is last: one response.
    expect(responses.map((r) => Number(r.handled))).toEqual([6]);
    expect(responses[0]!.errors.map((e) => [Number(e.index), e.code, e.message])).toEqual([
      [1, Code.Unavailable, "no edge for 1"],
      [3, Code.Unavailable, "no edge for 3"],
      [5, Code.Unavailable, "no edge for 5"],
    ]);
  });

  it("throws the abort reason when the signal aborts mid-stream", async () => {
    const ac = new AbortController();
    async function* requests(): AsyncGenerator<PublishRequest> {
      yield create(PublishRequestSchema, send("c", "e", 0));
      await new Promise(() => {}); // the publisher goes quiet
    }
    const stream = publishStream(requests(), async () => 1, 100, ac.signal);
    expect(Number(((await stream.next()).value as PublishResponse).handled)).toBe(1);
    const next = stream.next();
    ac.abort(new RealtimeError(Code.Unavailable, "shutting down"));
    await expect(next).rejects.toThrow("shutting down");
  });
});
