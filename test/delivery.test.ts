/**
 * Send, Broadcast and GetMembers across two edges, end to end: a real API
 * process, two real edge processes, a grpc-js client from gen/, and raw
 * WebSocket clients of both encodings.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { useCluster } from "./helpers/fixture.js";
import { sleep, type TestClient } from "./helpers/ws-client.js";

const f = useCluster(2);
const json = (v: unknown) => fromJson(ValueSchema, v as never);

describe("Send", () => {
  it("reaches exactly the channel's members on every edge, in both encodings", async () => {
    const a = await f.client(0, "json");
    const b = await f.client(1, "proto");
    const other = await f.client(0, "json"); // joins another channel
    const idle = await f.client(1, "proto"); // joins nothing
    await a.ok({ command: { case: "join", value: { channel: "room-1" } } });
    await b.ok({ command: { case: "join", value: { channel: "room-1" } } });
    await other.ok({ command: { case: "join", value: { channel: "room-2" } } });

    const res = await f.api.send({
      channel: "room-1",
      event: "greet",
      payload: { case: "json", value: json({ text: "hi", n: 1 }) },
    });
    expect(res.edges).toBe(2);
    expect(res.messageId).not.toBe("");
    for (const c of [a, b]) {
      const e = await c.event("greet", "room-1");
      expect(e.id).toBe(res.messageId);
      expect(e.payload.case).toBe("json");
      expect(toJson(ValueSchema, e.payload.value as never)).toEqual({ text: "hi", n: 1 });
    }
    // Give strays time to arrive, then check no one else got it.
    await f.api.send({ channel: "room-2", event: "marker", payload: { case: "json", value: json(null) } });
    await other.event("marker");
    await sleep(100);
    expect(other.events("greet")).toHaveLength(0);
    expect(idle.events("greet")).toHaveLength(0);
  });

  it("round-trips JSON and binary payloads exactly through both encodings", async () => {
    const j = await f.client(0, "json");
    const p = await f.client(1, "proto");
    await j.ok({ command: { case: "join", value: { channel: "payloads" } } });
    await p.ok({ command: { case: "join", value: { channel: "payloads" } } });
    const doc = {
      s: "ünïcødé ✓ \u0000",
      n: -1.5e300,
      b: true,
      z: null,
      a: [1, "two", { three: [] }],
      o: { nested: { deep: "x" } },
    };
    const bytes = new Uint8Array(256).map((_, i) => i);
    await f.api.send({ channel: "payloads", event: "doc", payload: { case: "json", value: json(doc) } });
    await f.api.send({ channel: "payloads", event: "bin", payload: { case: "binary", value: bytes } });
    await f.api.send({ channel: "payloads", event: "empty", payload: { case: "binary", value: new Uint8Array() } });
    for (const c of [j, p]) {
      const d = await c.event("doc");
      expect(toJson(ValueSchema, d.payload.value as never)).toEqual(doc);
      const b = await c.event("bin");
      expect(b.payload.case).toBe("binary");
      expect(Array.from(b.payload.value as Uint8Array)).toEqual(Array.from(bytes));
      const e = await c.event("empty");
      expect(e.payload.case).toBe("binary");
      expect((e.payload.value as Uint8Array).length).toBe(0);
    }
    // The JSON encoding carries JSON inline and binary as base64 (protobuf's JSON mapping).
    const raw = await new Promise<string>((resolve) => {
      j.ws.once("message", (d) => resolve(d.toString()));
      void f.api.send({
        channel: "payloads",
        event: "raw",
        payload: { case: "binary", value: new Uint8Array([0xde, 0xad]) },
      });
    });
    expect(JSON.parse(raw)).toMatchObject({ event: { channel: "payloads", event: "raw", binary: "3q0=" } });
  });

  it("is answered with 0 edges when the channel has no members", async () => {
    const res = await f.api.send({ channel: "nobody-here", event: "e", payload: { case: "json", value: json(1) } });
    expect(res.edges).toBe(0);
  });
});

describe("SendBatch", () => {
  it("delivers every event of the batch, in batch order, each with its own id", async () => {
    const a = await f.client(0, "proto");
    const b = await f.client(1, "json");
    await a.ok({ command: { case: "join", value: { channel: "batch-1" } } });
    await b.ok({ command: { case: "join", value: { channel: "batch-2" } } });
    const requests = Array.from({ length: 200 }, (_, i) => ({
      channel: i % 2 === 0 ? "batch-1" : "batch-2",
      event: "n",
      payload: { case: "json" as const, value: json(i) },
    }));
    const res = await f.api.sendBatch({ requests });
    expect(res.responses).toHaveLength(200);
    expect(new Set(res.responses.map((r) => r.messageId)).size).toBe(200);
    expect(res.responses.map((r) => r.edges)).toEqual(requests.map(() => 1));
    await a.next((f) => f.frame.case === "event" && f.frame.value.id === res.responses[198]!.messageId);
    await b.next((f) => f.frame.case === "event" && f.frame.value.id === res.responses[199]!.messageId);
    const seen = (c: TestClient) => c.events("n").map((e) => toJson(ValueSchema, e.payload.value as never));
    expect(seen(a)).toEqual(requests.flatMap((_, i) => (i % 2 === 0 ? [i] : [])));
    expect(seen(b)).toEqual(requests.flatMap((_, i) => (i % 2 === 1 ? [i] : [])));
    expect(a.events("n").map((e) => e.id)).toEqual(res.responses.filter((_, i) => i % 2 === 0).map((r) => r.messageId));
  });
});

describe("Broadcast", () => {
  it("reaches every connected client on every edge, channel empty", async () => {
    // Three more clients that joined nothing, on both edges and in both encodings.
    for (const [edge, enc] of [
      [0, "json"],
      [1, "proto"],
      [1, "json"],
    ] as const)
      await f.client(edge, enc);
    const res = await f.api.broadcast({
      event: "announce",
      payload: { case: "binary", value: new Uint8Array([1, 2, 3]) },
    });
    expect(res.edges).toBe(2);
    for (const c of f.clients) {
      const e = await c.event("announce");
      expect(e.channel).toBe("");
      expect(Array.from(e.payload.value as Uint8Array)).toEqual([1, 2, 3]);
    }
  });
});

describe("GetMembers", () => {
  it("merges members of both edges with their profiles, and follows updates and disconnects", async () => {
    const a = await f.client(0, "json");
    const b = await f.client(1, "proto");
    await a.ok({ command: { case: "updateProfile", value: { data: json({ name: "ann" }) } } });
    await a.ok({ command: { case: "join", value: { channel: "lobby" } } });
    await b.ok({ command: { case: "join", value: { channel: "lobby" } } });

    const members = async () =>
      (await f.api.getMembers({ channel: "lobby" })).members
        .map((m) => ({ id: m.id, data: m.data ? toJson(ValueSchema, m.data) : null }))
        .sort((x, y) => x.id.localeCompare(y.id));
    const sorted = (list: { id: string; data: unknown }[]) => list.sort((x, y) => x.id.localeCompare(y.id));
    expect(await members()).toEqual(
      sorted([
        { id: a.id, data: { name: "ann" } },
        { id: b.id, data: null },
      ]),
    );

    await b.ok({ command: { case: "updateProfile", value: { data: json({ name: "bob", tags: ["x"] }) } } });
    expect(await members()).toEqual(
      sorted([
        { id: a.id, data: { name: "ann" } },
        { id: b.id, data: { name: "bob", tags: ["x"] } },
      ]),
    );

    await a.close();
    // The edge publishes the leave after the socket closes; poll briefly.
    for (let i = 0; i < 50 && (await members()).length !== 1; i++) await sleep(20);
    expect(await members()).toEqual([{ id: b.id, data: { name: "bob", tags: ["x"] } }]);
    // The same list over the client protocol.
    const reply = await b.ok({ command: { case: "getMembers", value: { channel: "lobby" } } });
    expect(reply.members.map((m) => m.id)).toEqual([b.id]);
  });

  it("returns an empty list for a channel without members", async () => {
    expect((await f.api.getMembers({ channel: "empty" })).members).toEqual([]);
  });
});
