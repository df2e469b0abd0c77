/**
 * channel:join, channel:leave and channel:update across edges, and the echo
 * flags (connection default and per call), end to end.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import type { Event, Member } from "../gen/realtime/client/v1/client_pb.js";
import { useCluster } from "./helpers/fixture.js";
import { sleep, type TestClient } from "./helpers/ws-client.js";

const f = useCluster(2);
const json = (v: unknown) => fromJson(ValueSchema, v as never);

/** Waits until c has seen the marker event on channel: everything sent before it has arrived. */
async function settle(channel: string, ...cs: TestClient[]) {
  const res = await f.api.send({ channel, event: "marker", payload: { case: "json", value: json(null) } });
  for (const c of cs) await c.next((f) => f.frame.case === "event" && f.frame.value.id === res.messageId);
}

describe("system events", () => {
  it("others on another edge see join, update and leave, each carrying {id, data}", async () => {
    const watcher = await f.client(1, "proto");
    await watcher.ok({ command: { case: "join", value: { channel: "ev" } } });
    const a = await f.client(0, "json");
    await a.ok({ command: { case: "updateProfile", value: { data: json({ name: "ann" }) } } });
    await a.ok({ command: { case: "join", value: { channel: "ev" } } });
    const about = (name: string, id: string) =>
      watcher.next(
        (f) =>
          f.frame.case === "event" &&
          f.frame.value.event === name &&
          (f.frame.value.payload.value as Member)?.id === id,
      );
    const join = (await about("channel:join", a.id)).frame.value as Event;
    expect(join.channel).toBe("ev");
    expect(join.payload.case).toBe("member");
    const m = join.payload.value as Member;
    expect(m.id).toBe(a.id);
    expect(toJson(ValueSchema, m.data!)).toEqual({ name: "ann" });

    await a.ok({ command: { case: "updateProfile", value: { data: json({ name: "ann", mood: "ok" }) } } });
    const upd = await watcher.event("channel:update", "ev");
    expect(toJson(ValueSchema, (upd.payload.value as Member).data!)).toEqual({ name: "ann", mood: "ok" });

    await a.ok({ command: { case: "leave", value: { channel: "ev" } } });
    const leave = await watcher.event("channel:leave", "ev");
    expect((leave.payload.value as Member).id).toBe(a.id);
  });

  it("a connection that closes leaves all its channels: channel:leave in each", async () => {
    const w1 = await f.client(0, "json");
    const w2 = await f.client(1, "json");
    await w1.ok({ command: { case: "join", value: { channel: "x1" } } });
    await w2.ok({ command: { case: "join", value: { channel: "x2" } } });
    const a = await f.client(1, "proto");
    await a.ok({ command: { case: "join", value: { channel: "x1" } } });
    await a.ok({ command: { case: "join", value: { channel: "x2" } } });
    await a.close();
    expect(((await w1.event("channel:leave", "x1")).payload.value as Member).id).toBe(a.id);
    expect(((await w2.event("channel:leave", "x2")).payload.value as Member).id).toBe(a.id);
  });

  it("updateProfile sends channel:update to every channel the connection is in", async () => {
    const a = await f.client(0, "json");
    await a.ok({ command: { case: "join", value: { channel: "u1" } } });
    await a.ok({ command: { case: "join", value: { channel: "u2" } } });
    await a.ok({ command: { case: "updateProfile", value: { data: json("v2") } } });
    expect((await a.event("channel:update", "u1")).channel).toBe("u1");
    expect((await a.event("channel:update", "u2")).channel).toBe("u2");
  });
});

describe("echo", () => {
  it("on by default: the sender receives its own join, update, message and leave", async () => {
    const a = await f.client(0, "proto");
    await a.ok({ command: { case: "join", value: { channel: "e1" } } });
    await a.ok({ command: { case: "updateProfile", value: { data: json(1) } } });
    await a.ok({
      command: { case: "send", value: { channel: "e1", event: "mine", payload: { case: "json", value: json("x") } } },
    });
    await a.ok({ command: { case: "leave", value: { channel: "e1" } } });
    await a.event("channel:leave", "e1");
    expect(a.events().map((e) => e.event)).toEqual(["channel:join", "channel:update", "mine", "channel:leave"]);
  });

  it("?echo=false makes it off for the connection; a per-call echo overrides either way", async () => {
    const a = await f.client(1, "json", "?echo=false");
    const b = await f.client(0, "json");
    await b.ok({ command: { case: "join", value: { channel: "e2" } } });
    await a.ok({ command: { case: "join", value: { channel: "e2" } } });
    await a.ok({
      command: { case: "send", value: { channel: "e2", event: "silent", payload: { case: "json", value: json(1) } } },
    });
    await a.ok({
      command: {
        case: "send",
        value: { channel: "e2", event: "loud", echo: true, payload: { case: "json", value: json(2) } },
      },
    });
    await a.ok({ command: { case: "updateProfile", value: { data: json("p") } } });
    await settle("e2", a, b);
    expect(a.events().map((e) => e.event)).toEqual(["loud", "marker"]);
    expect(b.events().map((e) => e.event)).toEqual([
      "channel:join",
      "channel:join",
      "silent",
      "loud",
      "channel:update",
      "marker",
    ]);

    // Per call off on a default-on connection.
    await b.ok({
      command: {
        case: "send",
        value: { channel: "e2", event: "quiet", echo: false, payload: { case: "json", value: json(3) } },
      },
    });
    await settle("e2", a, b);
    expect(b.events("quiet")).toHaveLength(0);
    expect(a.events("quiet")).toHaveLength(1);
    // And a leave with echo false: the leaver gets nothing, the other gets the leave.
    await b.ok({ command: { case: "leave", value: { channel: "e2", echo: false } } });
    await a.event("channel:leave", "e2");
    await sleep(50);
    expect(b.events("channel:leave")).toHaveLength(0);
  });
});
