/**
 * The backend in control (realtime.v1 Send to a user, exclude_connection_id,
 * Disconnect, Subscribe, Unsubscribe, Info, GetConnections), end to end with real
 * processes: the embedded mode (one API, two edges over the link) and the
 * Redis mode (two API nodes, two edges), over gRPC and Connect, with the
 * bad inputs and an edge that does not answer.
 */
import * as grpc from "@grpc/grpc-js";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ConnectionEncoding, NodeRole } from "../gen/realtime/v1/realtime_pb.js";
import { MAX_CONNECTIONS_LISTED } from "../src/core/limits.js";
import { CloseCode, RealtimeClient, type SubscribedInfo, type DisconnectInfo } from "../src/client/index.js";
import { stopAll } from "./helpers/cluster.js";
import { twoModes, type Setup } from "./helpers/modes.js";
import { eventually } from "./helpers/redis-topology.js";
import { waitFor } from "./helpers/sdk.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const SECRET = "server-control-test-secret-0123456789";

function token(sub: string, channels: string[] = []): Promise<string> {
  return new SignJWT({ channels })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + 3_600)
    .sign(new TextEncoder().encode(SECRET));
}

/** The gRPC status of a failed call. */
async function status(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error("the call succeeded");
}

const MODES = twoModes("server-control", { REALTIME_JWT_SECRET: SECRET, REALTIME_ALLOW_ANONYMOUS: "true" });

for (const mode of MODES) {
  describe.skipIf(mode.skip)(mode.name, () => {
    let s: Setup;
    const opened: TestClient[] = [];
    const connect = async (edge: number, user?: string, channels?: string[]) => {
      const q = user === undefined ? "" : `/?token=${await token(user, channels)}`;
      const c = await TestClient.connect(s.ws[edge]!, edge === 0 ? "json" : "proto", q);
      opened.push(c);
      return c;
    };

    beforeAll(async () => {
      s = await mode.start();
    }, 60_000);

    afterAll(async () => {
      await Promise.all(opened.map((c) => c.close()));
      await s?.stop();
      await stopAll();
    }, 30_000);

    it("Send with user_id reaches every connection of that user, on both edges, and no one else", async () => {
      const a0 = await connect(0, "send-alice");
      const a1 = await connect(1, "send-alice");
      const b = await connect(1, "send-bob");
      const res = await s.apis[0]!.send({
        userId: "send-alice",
        event: "note",
        payload: { case: "json", value: { kind: { case: "stringValue", value: "hi" } } },
      });
      expect(res.edges).toBe(2);
      for (const c of [a0, a1]) {
        const ev = await c.event("note");
        expect(ev.channel).toBe("");
        expect(ev.id).toBe(res.messageId);
      }
      // Through the other API node too; bob got neither.
      const res2 = await s.apis[1]!.send({
        userId: "send-bob",
        event: "note2",
        payload: { case: "binary", value: new Uint8Array([7]) },
      });
      expect(res2.edges).toBe(1);
      const note2 = (await b.event("note2")).payload;
      expect([note2.case, [...(note2.value as Uint8Array)]]).toEqual(["binary", [7]]);
      expect(b.events("note")).toEqual([]);
      expect(a0.events("note2")).toEqual([]);
      // Nobody of that name: handed to no edge.
      expect(
        (
          await s.apis[0]!.send({
            userId: "send-nobody",
            event: "note",
            payload: { case: "binary", value: new Uint8Array() },
          })
        ).edges,
      ).toBe(0);
      // After the user's last connection here closed, its edge no longer takes its events.
      await a1.close();
      await eventually(
        async () =>
          (
            await s.apis[0]!.send({
              userId: "send-alice",
              event: "n3",
              payload: { case: "binary", value: new Uint8Array() },
            })
          ).edges === 1,
        10_000,
        "the closed connection's edge drops the user's channel",
      );
    });

    it("a Send to a user keeps its idempotency key to that user, and rides SendBatch", async () => {
      const k = await connect(0, "idem-kim");
      const send = (userId: string) =>
        s.apis[0]!.send({
          userId,
          event: "once",
          payload: { case: "binary", value: new Uint8Array([1]) },
          idempotencyKey: "idem-user-key",
        });
      const first = await send("idem-kim");
      expect(first.duplicate).toBe(false);
      const retry = await s.apis[1]!.send({
        userId: "idem-kim",
        event: "once",
        payload: { case: "binary", value: new Uint8Array([1]) },
        idempotencyKey: "idem-user-key",
      });
      expect({ duplicate: retry.duplicate, id: retry.messageId }).toEqual({ duplicate: true, id: first.messageId });
      const other = await status(send("idem-lee"));
      expect(other.code).toBe(grpc.status.FAILED_PRECONDITION);
      const batch = await s.apis[1]!.sendBatch({
        requests: [
          { userId: "idem-kim", event: "b1", payload: { case: "binary", value: new Uint8Array() } },
          { channel: "idem-none", event: "b2", payload: { case: "binary", value: new Uint8Array() } },
        ],
      });
      expect(batch.responses.map((r) => r.edges)).toEqual([1, 0]);
      await k.event("b1");
      expect(k.events("once").length).toBe(1);
    });

    it("exclude_connection_id leaves one connection out of a Send and of a Broadcast", async () => {
      const x = await connect(0);
      const y = await connect(1);
      for (const c of [x, y]) await c.ok({ command: { case: "join", value: { channel: "excl" } } });
      await s.apis[1]!.send({
        channel: "excl",
        event: "relayed",
        payload: { case: "binary", value: new Uint8Array([1]) },
        excludeConnectionId: x.id,
      });
      await s.apis[0]!.broadcast({
        event: "relayed-all",
        payload: { case: "binary", value: new Uint8Array([2]) },
        excludeConnectionId: y.id,
      });
      await s.apis[0]!.send({ channel: "excl", event: "after", payload: { case: "binary", value: new Uint8Array() } });
      // Each got what came after what it was left out of: the exclusion was not a loss of order.
      await y.event("relayed", "excl");
      await x.event("relayed-all");
      await Promise.all([x.event("after", "excl"), y.event("after", "excl")]);
      expect(x.events("relayed")).toEqual([]);
      expect(y.events("relayed-all")).toEqual([]);
    });

    it("Subscribe and Unsubscribe move a user's connections, with the other members told", async () => {
      const watcher = await connect(0);
      await watcher.ok({ command: { case: "join", value: { channel: "room" } } });
      const c0 = await connect(0, "sub-carol");
      const c1 = await connect(1, "sub-carol");
      const res = await s.apis[1]!.subscribe({
        target: { target: { case: "userId", value: "sub-carol" } },
        channel: "room",
      });
      expect({ connections: res.connections, joined: res.joined }).toEqual({ connections: 2, joined: 2 });
      for (const c of [c0, c1]) {
        const f = await c.next((f) => f.frame.case === "subscribed");
        expect((f.frame.value as { channel: string }).channel).toBe("room");
      }
      await waitFor(
        () => watcher.told("channel:join", "room").filter((id) => id === c0.id || id === c1.id).length === 2,
      );
      const members = await s.apis[0]!.getMembers({ channel: "room" });
      expect(members.members.map((m) => m.id).sort()).toEqual([watcher.id, c0.id, c1.id].sort());
      expect(members.users).toEqual([]);
      // Grouped by user, for multi-device presence: carol's two connections under one entry.
      const grouped = await s.apis[1]!.getMembers({ channel: "room", groupByUser: true, pageSize: 100 });
      expect(grouped.users.map((u) => [u.userId, u.connections.map((c) => c.id).sort()]).sort()).toEqual(
        [
          ["", [watcher.id]],
          ["sub-carol", [c0.id, c1.id].sort()],
        ].sort(),
      );
      // They are members: a Send to the channel reaches them.
      await s.apis[0]!.send({ channel: "room", event: "hello", payload: { case: "binary", value: new Uint8Array() } });
      await Promise.all([c0.event("hello", "room"), c1.event("hello", "room")]);
      // Again: found, but nobody joined now.
      const again = await s.apis[0]!.subscribe({
        target: { target: { case: "userId", value: "sub-carol" } },
        channel: "room",
      });
      expect({ connections: again.connections, joined: again.joined }).toEqual({ connections: 2, joined: 0 });

      const left = await s.apis[0]!.unsubscribe({
        target: { target: { case: "connectionId", value: c1.id } },
        channel: "room",
      });
      expect({ connections: left.connections, left: left.left }).toEqual({ connections: 1, left: 1 });
      const f = await c1.next((f) => f.frame.case === "unsubscribed");
      expect((f.frame.value as { channel: string }).channel).toBe("room");
      await waitFor(() => watcher.told("channel:leave", "room").includes(c1.id));
      expect((await s.apis[1]!.getMembers({ channel: "room" })).members.map((m) => m.id).sort()).toEqual(
        [watcher.id, c0.id].sort(),
      );
      // Over Connect too (JSON on the HTTP port): the same answers.
      const connectCall = async (method: string, body: unknown) => {
        const res = await fetch(`http://${s.http[1]}/realtime.v1.Realtime/${method}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json()) as unknown };
      };
      expect(await connectCall("Subscribe", { target: { connectionId: c1.id }, channel: "room2" })).toEqual({
        status: 200,
        body: { connections: 1, joined: 1 },
      });
      await c1.next((f) => f.frame.case === "subscribed" && f.frame.value.channel === "room2");
      expect(await connectCall("Unsubscribe", { target: { connectionId: c1.id }, channel: "room2" })).toEqual({
        status: 200,
        body: { connections: 1, left: 1 },
      });
      expect(await connectCall("Unsubscribe", { target: {}, channel: "room2" })).toMatchObject({
        status: 400,
        body: { code: "invalid_argument", message: expect.stringContaining("target is required") },
      });
      const none = await s.apis[0]!.unsubscribe({
        target: { target: { case: "connectionId", value: c1.id } },
        channel: "room",
      });
      expect({ connections: none.connections, left: none.left }).toEqual({ connections: 1, left: 0 });
    });

    it("Subscribe has a client join's permissions: a private channel needs the token's grant", async () => {
      const granted = await connect(1, "priv-dave", ["private:ops"]);
      const plain = await connect(0, "priv-erin");
      const ok = await s.apis[0]!.subscribe({
        target: { target: { case: "connectionId", value: granted.id } },
        channel: "private:ops",
      });
      expect(ok.joined).toBe(1);
      const refused = await status(
        s.apis[0]!.subscribe({ target: { target: { case: "connectionId", value: plain.id } }, channel: "private:ops" }),
      );
      expect(refused.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(refused.details).toMatch(/private.*does not grant it.*done for 0 of the 1 connections/);
      expect(plain.frames.some((f) => f.frame.case === "subscribed")).toBe(false);
    });

    it("Disconnect closes with 4505 (do not reconnect) or 4005 (reconnect), and the reason", async () => {
      const f0 = await connect(0, "disc-frank");
      const f1 = await connect(1, "disc-frank");
      const g = await connect(1, "disc-gina");
      const res = await s.apis[1]!.disconnect({
        target: { target: { case: "userId", value: "disc-frank" } },
        reason: "logged out",
      });
      expect(res.connections).toBe(2);
      await Promise.all([f0.closed, f1.closed]);
      for (const c of [f0, f1])
        expect([c.closeCode, c.closeReason]).toEqual([CloseCode.DisconnectedFinal, "logged out"]);
      const again = await s.apis[0]!.disconnect({
        target: { target: { case: "connectionId", value: g.id } },
        reconnect: true,
      });
      expect(again.connections).toBe(1);
      await g.closed;
      expect([g.closeCode, g.closeReason]).toEqual([CloseCode.Disconnected, "disconnected by the backend"]);
      // Gone: the same calls find nothing now.
      for (const target of [
        { case: "userId" as const, value: "disc-frank" },
        { case: "connectionId" as const, value: g.id },
      ]) {
        const st = await status(s.apis[0]!.disconnect({ target: { target } }));
        expect(st.code).toBe(grpc.status.NOT_FOUND);
        expect(st.details).toMatch(/no open connection matches/);
      }
    });

    it("refuses bad input with INVALID_ARGUMENT or NOT_FOUND and a message that says what to fix", async () => {
      const api = s.apis[0]!;
      const cases: [() => Promise<unknown>, number, RegExp][] = [
        [() => api.disconnect({}), grpc.status.INVALID_ARGUMENT, /target is required/],
        [
          () => api.subscribe({ target: { target: { case: "connectionId", value: "nodot" } }, channel: "x" }),
          grpc.status.INVALID_ARGUMENT,
          /is not a connection id/,
        ],
        [
          () => api.subscribe({ target: { target: { case: "userId", value: "u" } }, channel: "bad channel" }),
          grpc.status.INVALID_ARGUMENT,
          /has a character outside/,
        ],
        [
          () => api.unsubscribe({ target: { target: { case: "userId", value: "x".repeat(257) } }, channel: "x" }),
          grpc.status.INVALID_ARGUMENT,
          /1 to 256 characters/,
        ],
        [
          () => api.disconnect({ target: { target: { case: "userId", value: "u" } }, reason: "é".repeat(61) }),
          grpc.status.INVALID_ARGUMENT,
          /122 bytes.*at most 120/,
        ],
        [
          () => api.disconnect({ target: { target: { case: "connectionId", value: "unknownedge.1" } } }),
          grpc.status.NOT_FOUND,
          /no open connection matches connection "unknownedge.1"/,
        ],
        [
          () => api.subscribe({ target: { target: { case: "userId", value: "nobody-here" } }, channel: "x" }),
          grpc.status.NOT_FOUND,
          /user "nobody-here"/,
        ],
        [
          () =>
            api.send({ channel: "c", userId: "u", event: "e", payload: { case: "binary", value: new Uint8Array() } }),
          grpc.status.INVALID_ARGUMENT,
          /not both/,
        ],
        [
          () => api.send({ event: "e", payload: { case: "binary", value: new Uint8Array() } }),
          grpc.status.INVALID_ARGUMENT,
          /channel is required \(or user_id/,
        ],
        [
          () =>
            api.send({
              channel: "c",
              event: "e",
              payload: { case: "binary", value: new Uint8Array() },
              excludeConnectionId: "x",
            }),
          grpc.status.INVALID_ARGUMENT,
          /exclude_connection_id "x" is not a connection id/,
        ],
      ];
      for (const [call, code, message] of cases) {
        const st = await status(call());
        expect({ code: st.code, details: st.details }).toEqual({ code, details: expect.stringMatching(message) });
      }
    });

    it("Info lists every API node and edge with its counts; over Connect as over gRPC", async () => {
      const c = await connect(1, "info-hank");
      await c.ok({ command: { case: "join", value: { channel: "info-room" } } });
      const info = await s.apis[0]!.info();
      const apiNodes = info.nodes.filter((n) => n.role === NodeRole.API);
      const edgeNodes = info.nodes.filter((n) => n.role === NodeRole.EDGE);
      expect(apiNodes.length).toBe(new Set(s.http).size);
      const other = await connect(0);
      expect(edgeNodes.map((n) => n.id).sort()).toEqual(
        [c.id, other.id].map((id) => id.slice(0, id.lastIndexOf("."))).sort(),
      );
      expect(info.unanswered).toBe(0);
      const edge1 = edgeNodes.find((n) => c.id.startsWith(`${n.id}.`))!;
      expect(edge1.connections).toBeGreaterThanOrEqual(1);
      expect(edge1.channels).toBeGreaterThanOrEqual(1);
      for (const n of info.nodes) {
        expect(n.version).toMatch(/^\d+\.\d+\.\d+/);
        expect(Number(n.startedUnixMs)).toBeGreaterThan(Date.now() - 10 * 60_000);
      }
      // Connect, JSON, on the other API node: the same nodes.
      const res = await fetch(`http://${s.http[1]}/realtime.v1.Realtime/Info`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { nodes: { id: string; role: string }[] };
      expect(body.nodes.map((n) => n.id).sort()).toEqual(info.nodes.map((n) => n.id).sort());
      expect(body.nodes.filter((n) => n.role === "NODE_ROLE_EDGE").length).toBe(2);
      // Disconnect over Connect, with its NOT_FOUND as Connect's not_found.
      const nf = await fetch(`http://${s.http[0]}/realtime.v1.Realtime/Disconnect`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ target: { userId: "info-nobody" } }),
      });
      expect(nf.status).toBe(404);
      expect(((await nf.json()) as { code: string }).code).toBe("not_found");
      const ok = await fetch(`http://${s.http[0]}/realtime.v1.Realtime/Disconnect`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ target: { connectionId: c.id }, reconnect: true }),
      });
      expect(await ok.json()).toEqual({ connections: 1 });
      await c.closed;
      expect(c.closeCode).toBe(CloseCode.Disconnected);
    });

    it("GetConnections describes a user's connections on both edges: edge, channels, since when, encoding, profile", async () => {
      const before = Date.now();
      const o0 = await connect(0, "conn-olga");
      const o1 = await connect(1, "conn-olga");
      const after = Date.now();
      await o0.ok({
        command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "Olga" } } } },
      });
      for (const channel of ["conn-b", "conn-a"]) await o0.ok({ command: { case: "join", value: { channel } } });
      await o1.ok({ command: { case: "join", value: { channel: "conn-b" } } });
      const edgeOf = (id: string) => id.slice(0, id.lastIndexOf("."));
      expect(edgeOf(o0.id)).not.toBe(edgeOf(o1.id));

      const res = await s.apis[1]!.getConnections({ target: { target: { case: "userId", value: "conn-olga" } } });
      expect({ matched: res.matched, truncated: res.truncated }).toEqual({ matched: 2, truncated: false });
      // Oldest first: o0 connected before o1.
      expect(
        res.connections.map((c) => ({
          id: c.id,
          userId: c.userId,
          edgeId: c.edgeId,
          channels: c.channels,
          channelCount: c.channelCount,
          encoding: c.encoding,
          profile: c.profile?.kind,
        })),
      ).toEqual([
        {
          id: o0.id,
          userId: "conn-olga",
          edgeId: edgeOf(o0.id),
          channels: ["conn-a", "conn-b"],
          channelCount: 2,
          encoding: ConnectionEncoding.JSON,
          profile: { case: "stringValue", value: "Olga" },
        },
        {
          id: o1.id,
          userId: "conn-olga",
          edgeId: edgeOf(o1.id),
          channels: ["conn-b"],
          channelCount: 1,
          encoding: ConnectionEncoding.PROTO,
          profile: undefined,
        },
      ]);
      // Connected at: between the moments before and after the clients connected (one clock: one machine).
      for (const c of res.connections) {
        const at = timestampMs(c.connectedAt!);
        expect(at).toBeGreaterThanOrEqual(before);
        expect(at).toBeLessThanOrEqual(after);
      }
      expect(timestampMs(res.connections[0]!.connectedAt!)).toBeLessThanOrEqual(
        timestampMs(res.connections[1]!.connectedAt!),
      );

      // One connection by its id, through the other API node; an anonymous one has no user.
      const one = await s.apis[0]!.getConnections({ target: { target: { case: "connectionId", value: o1.id } } });
      expect([one.matched, one.connections.map((c) => [c.id, c.edgeId, c.channels])]).toEqual([
        1,
        [[o1.id, edgeOf(o1.id), ["conn-b"]]],
      ]);
      const anon = await connect(1);
      const a = await s.apis[0]!.getConnections({ target: { target: { case: "connectionId", value: anon.id } } });
      expect([a.connections[0]!.userId, a.connections[0]!.channels, a.connections[0]!.channelCount]).toEqual([
        "",
        [],
        0,
      ]);

      // Over Connect (JSON): the same connection, with connected_at as an RFC 3339 time.
      const connectCall = async (body: unknown) => {
        const r = await fetch(`http://${s.http[0]}/realtime.v1.Realtime/GetConnections`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> };
      };
      const viaConnect = await connectCall({ target: { connectionId: o0.id } });
      expect(viaConnect).toMatchObject({
        status: 200,
        body: {
          connections: [
            {
              id: o0.id,
              userId: "conn-olga",
              edgeId: edgeOf(o0.id),
              channels: ["conn-a", "conn-b"],
              channelCount: 2,
              encoding: "CONNECTION_ENCODING_JSON",
              profile: "Olga",
            },
          ],
          matched: 1,
        },
      });
      const connectedAt = (viaConnect.body.connections as { connectedAt: string }[])[0]!.connectedAt;
      expect(connectedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      expect(Date.parse(connectedAt)).toBe(timestampMs(res.connections[0]!.connectedAt!));
      expect(await connectCall({ target: { userId: "conn-nobody" } })).toMatchObject({
        status: 404,
        body: { code: "not_found", message: expect.stringContaining('no open connection matches user "conn-nobody"') },
      });
      expect(await connectCall({})).toMatchObject({
        status: 400,
        body: { code: "invalid_argument", message: expect.stringContaining("target is required") },
      });

      // Bad input, and what matches nothing (an unknown edge, a closed connection).
      await o1.close();
      const cases: [object, number, RegExp][] = [
        [{}, grpc.status.INVALID_ARGUMENT, /target is required/],
        [{ target: { case: "connectionId", value: "nodot" } }, grpc.status.INVALID_ARGUMENT, /is not a connection id/],
        [{ target: { case: "userId", value: "x".repeat(257) } }, grpc.status.INVALID_ARGUMENT, /1 to 256 characters/],
        [{ target: { case: "userId", value: "" } }, grpc.status.INVALID_ARGUMENT, /1 to 256 characters/],
        [
          { target: { case: "connectionId", value: "unknownedge.1" } },
          grpc.status.NOT_FOUND,
          /no open connection matches connection "unknownedge.1"/,
        ],
        [{ target: { case: "connectionId", value: o1.id } }, grpc.status.NOT_FOUND, /no open connection matches/],
      ];
      for (const [target, code, message] of cases) {
        const st = await status(s.apis[1]!.getConnections({ target: target as never }));
        expect({ code: st.code, details: st.details }).toEqual({ code, details: expect.stringMatching(message) });
      }
      // The user's other connection is still there, alone now.
      await eventually(
        async () =>
          (await s.apis[1]!.getConnections({ target: { target: { case: "userId", value: "conn-olga" } } })).matched ===
          1,
        10_000,
        "the closed connection is gone from GetConnections",
      );
    });

    it(`GetConnections lists at most ${MAX_CONNECTIONS_LISTED} connections, the oldest, and says how many matched`, async () => {
      const n = MAX_CONNECTIONS_LISTED + 2;
      const many: TestClient[] = [];
      for (let i = 0; i < n; i++) many.push(await connect(i % 2, "conn-many"));
      const res = await s.apis[0]!.getConnections({ target: { target: { case: "userId", value: "conn-many" } } });
      expect({ matched: res.matched, truncated: res.truncated, listed: res.connections.length }).toEqual({
        matched: n,
        truncated: true,
        listed: MAX_CONNECTIONS_LISTED,
      });
      // The oldest, in order: the two left out are among the last to connect (milliseconds may tie).
      const ms = res.connections.map((c) => timestampMs(c.connectedAt!));
      expect(ms).toEqual([...ms].sort((x, y) => x - y));
      const listed = new Set(res.connections.map((c) => c.id));
      const left = many.filter((c) => !listed.has(c.id));
      expect(left.length).toBe(2);
      const lastListed = Math.max(...ms);
      for (const c of left) {
        const own = await s.apis[1]!.getConnections({ target: { target: { case: "connectionId", value: c.id } } });
        expect(timestampMs(own.connections[0]!.connectedAt!)).toBeGreaterThanOrEqual(lastListed);
      }
      await Promise.all(many.map((c) => c.close()));
    });

    it("an edge that does not answer makes the call UNAVAILABLE at the deadline, saying it may have acted", async () => {
      const i0 = await connect(0, "stall-ivan");
      await connect(1, "stall-ivan");
      const stalled = s.edges[1]!;
      stalled.child.kill("SIGSTOP");
      try {
        const started = Date.now();
        const st = await status(
          s.apis[0]!.subscribe({ target: { target: { case: "userId", value: "stall-ivan" } }, channel: "stall" }),
        );
        expect(st.code).toBe(grpc.status.UNAVAILABLE);
        expect(st.details).toMatch(/1 edge\(s\) holding user "stall-ivan" did not answer in time.*done for 1 of 1/);
        expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
        // The edge that answered did it.
        await i0.next((f) => f.frame.case === "subscribed");
        const info = await s.apis[0]!.info();
        expect(info.unanswered).toBe(1);
        // GetConnections gives no partial list: UNAVAILABLE, not the one connection that answered.
        const details = await status(
          s.apis[1]!.getConnections({ target: { target: { case: "userId", value: "stall-ivan" } } }),
        );
        expect(details.code).toBe(grpc.status.UNAVAILABLE);
        expect(details.details).toMatch(/1 edge\(s\) holding user "stall-ivan" did not answer in time.*incomplete/);
        expect(info.nodes.filter((n) => n.role === NodeRole.EDGE).length).toBe(1);
      } finally {
        stalled.child.kill("SIGCONT");
      }
      // Back: it answers again.
      await eventually(async () => (await s.apis[0]!.info()).unanswered === 0, 10_000, "the edge answers again");
    });

    it("the SDK emits subscribed and unsubscribed, re-joins a subscribed channel after a reconnect, and stops on 4505", async () => {
      const rt = new RealtimeClient({
        url: s.ws[0]!,
        WebSocket,
        token: () => token("sdk-judy"),
        reconnect: { initialDelayMs: 50, maxDelayMs: 250 },
      });
      try {
        const subscribed: SubscribedInfo[] = [];
        const unsubscribed: string[] = [];
        const disconnects: DisconnectInfo[] = [];
        const hellos: unknown[] = [];
        rt.onSubscribed((i) => subscribed.push(i));
        rt.onUnsubscribed((i) => unsubscribed.push(i.channel));
        rt.onDisconnect((i) => disconnects.push(i));
        rt.on("hello", (e) => hellos.push(e.message));
        const ids: string[] = [];
        rt.onConnect((i) => ids.push(i.id));
        await waitFor(() => ids.length === 1);
        await s.apis[1]!.subscribe({ target: { target: { case: "userId", value: "sdk-judy" } }, channel: "sdk-room" });
        await waitFor(() => subscribed.length === 1);
        expect(subscribed[0]!.channel).toBe("sdk-room");
        await s.apis[0]!.send({
          channel: "sdk-room",
          event: "hello",
          payload: { case: "json", value: { kind: { case: "numberValue", value: 1 } } },
        });
        await waitFor(() => hellos.length === 1);
        // Moved: it reconnects and joins the channel again by itself.
        await s.apis[0]!.disconnect({ target: { target: { case: "userId", value: "sdk-judy" } }, reconnect: true });
        await waitFor(() => ids.length === 2);
        expect(disconnects[0]).toMatchObject({ code: CloseCode.Disconnected, willReconnect: true });
        await eventually(
          async () => (await s.apis[0]!.getMembers({ channel: "sdk-room" })).members.some((m) => m.id === ids[1]),
          10_000,
          "re-joined after the reconnect",
        );
        await s.apis[0]!.unsubscribe({
          target: { target: { case: "userId", value: "sdk-judy" } },
          channel: "sdk-room",
        });
        await waitFor(() => unsubscribed.length === 1);
        // Not re-joined after the next reconnect; and 4505 stops it for good.
        await s.apis[0]!.disconnect({ target: { target: { case: "userId", value: "sdk-judy" } }, reconnect: true });
        await waitFor(() => ids.length === 3);
        await sleep(200);
        expect((await s.apis[0]!.getMembers({ channel: "sdk-room" })).members.map((m) => m.id)).not.toContain(ids[2]);
        await s.apis[0]!.disconnect({ target: { target: { case: "userId", value: "sdk-judy" } }, reason: "banned" });
        await waitFor(() => disconnects.some((d) => d.code === CloseCode.DisconnectedFinal));
        expect(disconnects.at(-1)).toMatchObject({
          code: CloseCode.DisconnectedFinal,
          reason: "banned",
          willReconnect: false,
        });
      } finally {
        rt.close();
      }
    });
  });
}
