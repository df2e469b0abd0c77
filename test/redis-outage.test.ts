/**
 * Redis goes away and comes back (empty: it keeps nothing on disk). While it
 * is down, Send, Broadcast and GetMembers fail with UNAVAILABLE, never OK,
 * and the edges keep their clients; a client command answered UNAVAILABLE
 * changed nothing, and a client that closes meanwhile is announced once
 * Redis is back; then every node reconnects, re-subscribes and
 * re-registers its members by itself, and delivery resumes, with no
 * process restarted. Real processes and a redis-server
 * that this test starts, kills and starts again on a free port.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RealtimeTestClient } from "./helpers/grpc-client.js";
import {
  eventually,
  NO_REDIS_SERVER,
  startOwnTopology,
  type OwnRedis,
  type OwnTopology,
  type Topology,
} from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const UNAVAILABLE = 14;
let own: OwnTopology;
let redis: OwnRedis;
let topology: Topology;
let apis: RealtimeTestClient[];

beforeAll(async () => {
  if (NO_REDIS_SERVER) return;
  own = await startOwnTopology("outage", 2, 2, { REALTIME_REDIS_EDGE_TTL_MS: "3000" });
  ({ redis, topology, apis } = own);
}, 90_000);

afterAll(async () => {
  await own?.stop();
}, 60_000);

const client = (edge: number) => own.client(edge);

const payload = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });
const profile = (v: unknown) => ({ data: fromJson(ValueSchema, v as never) });
const told = (c: TestClient, name: string, channel: string) => c.told(name, channel);
const ids = (members: { id: string }[]) => members.map((m) => m.id).sort();
const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 0,
    (err: { code?: number }) => err.code ?? -1,
  );

describe.skipIf(NO_REDIS_SERVER)("Redis stopped and restarted", () => {
  it("UNAVAILABLE while it is down, clients kept; delivery and presence resume after, no process restarted", async () => {
    const a = await client(0);
    const b = await client(1);
    const gone = await client(1);
    await b.ok({ command: { case: "updateProfile", value: profile({ name: "bob" }) } });
    for (const c of [a, b, gone]) await c.ok({ command: { case: "join", value: { channel: "room" } } });
    await eventually(() => told(a, "channel:join", "room").includes(gone.id), 5_000, "a told of gone's join");
    expect(ids((await apis[0]!.getMembers({ channel: "room" })).members)).toEqual(ids([a, b, gone]));
    const pids = [...topology.apis, ...topology.edges].map((p) => p.child.pid);

    await redis.kill();

    // Every call fails, on both API nodes: never OK for a publication that went nowhere.
    await eventually(
      async () =>
        (await codeOf(apis[0]!.send({ channel: "room", event: "lost", payload: payload(1) }))) === UNAVAILABLE,
      5_000,
      "Send UNAVAILABLE",
    );
    for (const api of apis) {
      expect(await codeOf(api.send({ channel: "room", event: "lost", payload: payload(1) }))).toBe(UNAVAILABLE);
      expect(await codeOf(api.broadcast({ event: "lost", payload: payload(1) }))).toBe(UNAVAILABLE);
      expect(await codeOf(api.getMembers({ channel: "room" }))).toBe(UNAVAILABLE);
    }
    // Clients' commands fail too, and their connections stay.
    const send = await a.request({
      command: { case: "send", value: { channel: "room", event: "lost", payload: payload(2) } },
    });
    expect(send.error?.code).toBe(UNAVAILABLE);
    const join = await a.request({ command: { case: "join", value: { channel: "elsewhere" } } });
    expect(join.error?.code).toBe(UNAVAILABLE);
    // b's leave and profile change are answered UNAVAILABLE: nothing changed.
    const leave = await b.request({ command: { case: "leave", value: { channel: "room" } } });
    expect(leave.error?.code).toBe(UNAVAILABLE);
    const update = await b.request({ command: { case: "updateProfile", value: profile({ name: "robert" }) } });
    expect(update.error?.code).toBe(UNAVAILABLE);
    // gone closes meanwhile: a must be told once Redis is back.
    await gone.close();
    await sleep(200);

    await redis.start();

    // Delivery resumes by itself: each node reconnected and re-subscribed.
    await eventually(
      async () => {
        const res = await apis[1]!.send({ channel: "room", event: "back", payload: payload(3) });
        if (res.edges < 1) return false;
        await a.event("back", "room", 500);
        return true;
      },
      15_000,
      "a Send through the other API node reaches the client again",
    );
    // Presence was re-registered (Redis came back empty): a and b are there,
    // b with the profile it kept; gone is not, and a was told it left.
    await eventually(
      async () => {
        for (const api of apis) {
          if (JSON.stringify(ids((await api.getMembers({ channel: "room" })).members)) !== JSON.stringify(ids([a, b])))
            return false;
        }
        return true;
      },
      10_000,
      "GetMembers on both API nodes shows a and b, and not the connection that closed",
    );
    const bob = (await apis[1]!.getMembers({ channel: "room" })).members.find((m) => m.id === b.id)!;
    expect(toJson(ValueSchema, bob.data!)).toEqual({ name: "bob" });
    await eventually(() => told(a, "channel:leave", "room").includes(gone.id), 5_000, "a told that gone left");
    await sleep(500);
    expect(told(a, "channel:leave", "room")).toEqual([gone.id]);
    expect(told(a, "channel:update", "room")).toEqual([]);
    const res = await apis[0]!.broadcast({ event: "everyone", payload: payload(4) });
    expect(res.edges).toBe(2);
    for (const c of [a, b]) await c.event("everyone");
    await a.ok({ command: { case: "join", value: { channel: "elsewhere" } } });

    for (const c of [a, b]) expect(c.closeCode).toBeUndefined();
    // b is still in the channel (once its edge re-subscribed, which a's
    // edge may have done first); its leave, retried, works.
    await eventually(
      async () => {
        await apis[0]!.send({ channel: "room", event: "for-b", payload: payload(5) });
        return b.events("for-b").length > 0;
      },
      10_000,
      "b receives what is sent to the channel",
    );
    await b.ok({ command: { case: "leave", value: { channel: "room" } } });
    await eventually(() => told(a, "channel:leave", "room").includes(b.id), 5_000, "a told that b left");
    for (const p of [...topology.apis, ...topology.edges]) expect(p.child.exitCode).toBeNull();
    expect([...topology.apis, ...topology.edges].map((p) => p.child.pid)).toEqual(pids);
    expect(a.events("lost")).toEqual([]);
  }, 60_000);
});

describe.skipIf(NO_REDIS_SERVER)("Redis paused longer than the edge TTL (SIGSTOP), then resumed", () => {
  it("calls fail with UNAVAILABLE meanwhile; after it, no mass leave of live edges, and a leave answered UNAVAILABLE changed nothing", async () => {
    const a = await client(0);
    const b = await client(1);
    for (const c of [a, b]) await c.ok({ command: { case: "join", value: { channel: "stall" } } });
    await a.next(
      (f) =>
        f.frame.case === "event" &&
        f.frame.value.event === "channel:join" &&
        f.frame.value.payload.case === "member" &&
        f.frame.value.payload.value.id === b.id,
    );
    const joinsBefore = a.events("channel:join").length;

    redis.pause();
    try {
      // The command times out (REDIS_COMMAND_TIMEOUT_MS): UNAVAILABLE, not OK.
      expect(await codeOf(apis[0]!.send({ channel: "stall", event: "lost", payload: payload(1) }))).toBe(UNAVAILABLE);
      // b leaves meanwhile: its removal times out (UNAVAILABLE), and Redis
      // runs it on resume; the edge writes b back, since nothing changed.
      const leave = await b.request({ command: { case: "leave", value: { channel: "stall" } } });
      expect(leave.error?.code).toBe(UNAVAILABLE);
      // Longer than the TTL (3 s) in all.
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      redis.resume();
    }

    await eventually(
      async () => {
        for (const api of apis) {
          if (JSON.stringify(ids((await api.getMembers({ channel: "stall" })).members)) !== JSON.stringify(ids([a, b])))
            return false;
        }
        return true;
      },
      10_000,
      "GetMembers shows a and b after the stall",
    );
    await apis[1]!.send({ channel: "stall", event: "after", payload: payload(2) });
    await a.event("after", "stall");
    // Two TTLs: sweeps have run; a live edge was not swept (no leave of a,
    // no re-join), and no leave of b reached a: it did not leave.
    await new Promise((r) => setTimeout(r, 6_000));
    const leaves = told(a, "channel:leave", "stall");
    if (leaves.length !== 0) console.log(topology.edges.map((e) => e.stderr()).join("\n=====\n"));
    expect(leaves).toEqual([]);
    expect(a.events("channel:join").length).toBe(joinsBefore);
    expect(ids((await apis[0]!.getMembers({ channel: "stall" })).members)).toEqual(ids([a, b]));
    await b.event("after", "stall");
  }, 60_000);
});
