/**
 * realtime.v1.Hooks end to end: a Hooks server of the test's own (grpc-js,
 * from gen/) that real edges call. OnConnect authenticates by cookie (an
 * identity, a refusal, a hook that is too slow or answers nothing), OnJoin
 * vetoes joins and server-side Subscribes under a prefix, OnClientSend
 * refuses and rewrites; each failure fails closed on one edge and open on
 * the other; the metrics count every call. Embedded mode, and the Redis
 * mode for a Subscribe through a second API node.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Hooks,
  type OnClientSendRequest,
  type OnConnectRequest,
  type OnJoinRequest,
} from "../gen/realtime/v1/hooks_pb.js";
import { ErrorCode } from "../gen/realtime/client/v1/client_pb.js";
import { serviceDefinition } from "../src/api/grpc/adapter.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { scrape, httpOf } from "./helpers/prom.js";
import { deletePrefix, NO_REDIS, startTopology, testRedisUrl, uniquePrefix } from "./helpers/redis-topology.js";
import { upgrade } from "./helpers/trust.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const HOOK_TIMEOUT_MS = 300;

/** Every call the hooks server got, by hook. */
const calls = { connect: [] as OnConnectRequest[], join: [] as OnJoinRequest[], send: [] as OnClientSendRequest[] };

const cookieOf = (req: OnConnectRequest) => /session=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];

/** The backend's hooks: sessions by cookie, "vip:" for alice only, "mod:" moderated. */
async function startHooksServer(): Promise<{ address: string; close(): Promise<void> }> {
  const server = new grpc.Server();
  const unary =
    <Req, Res>(fn: (req: Req) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) =>
      fn(call.request).then(
        (res) => cb(null, res),
        (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }),
      );
  server.addService(serviceDefinition(Hooks), {
    onConnect: unary(async (req: OnConnectRequest) => {
      calls.connect.push(req);
      const session = cookieOf(req);
      if (session === "slow") await sleep(HOOK_TIMEOUT_MS * 3);
      if (session === "garbage" || session === "slow") return {};
      if (session === "alice-secret")
        return {
          result: {
            case: "accept",
            value: {
              userId: "alice",
              profile: fromJson(ValueSchema, { name: "Alice" }),
              channels: ["lobby"],
              grants: ["private:alice*"],
            },
          },
        };
      if (session === "bob-secret") return { result: { case: "accept", value: { userId: "bob" } } };
      if (session === "fail") throw new Error("the session store is down");
      return { result: { case: "refuse", value: { reason: `unknown session ${JSON.stringify(session ?? "")}` } } };
    }),
    onJoin: unary(async (req: OnJoinRequest) => {
      calls.join.push(req);
      if (req.channel === "vip:slow") await sleep(HOOK_TIMEOUT_MS * 3);
      if (req.channel === "vip:garbage" || req.channel === "vip:slow") return {};
      return req.userId === "alice"
        ? { result: { case: "allow", value: {} } }
        : { result: { case: "deny", value: { reason: "vip: is for alice" } } };
    }),
    onClientSend: unary(async (req: OnClientSendRequest) => {
      calls.send.push(req);
      if (req.event === "bad") return { result: { case: "deny", value: { reason: "no bad words" } } };
      if (req.event === "shout" && req.payload.case === "json") {
        const text = String(req.payload.value.kind.value ?? "").toUpperCase();
        return {
          result: {
            case: "rewrite",
            value: { event: "said", payload: { case: "json", value: fromJson(ValueSchema, text) } },
          },
        };
      }
      if (req.event === "garbage") return { result: { case: "rewrite", value: { event: "channel:join" } } };
      return { result: { case: "allow", value: {} } };
    }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

const hookEnv = (address: string, failOpen: boolean) => ({
  REALTIME_HOOKS_URL: address,
  REALTIME_HOOKS_CONNECT: "true",
  REALTIME_HOOKS_JOIN_PREFIXES: "vip:",
  REALTIME_HOOKS_SEND_PREFIXES: "mod:",
  REALTIME_HOOKS_TIMEOUT_MS: String(HOOK_TIMEOUT_MS),
  REALTIME_HOOKS_FAIL_OPEN: String(failOpen),
});

let hooks: Awaited<ReturnType<typeof startHooksServer>>;
beforeAll(async () => {
  hooks = await startHooksServer();
});
afterAll(async () => {
  await hooks?.close();
  await stopAll();
});

describe("embedded: edge 0 fails closed, edge 1 fails open", () => {
  let cluster: Cluster;
  let api: RealtimeTestClient;
  const opened: TestClient[] = [];
  const connect = async (edge: number, session?: string) => {
    const c = await TestClient.connect(
      cluster.ws[edge]!,
      "json",
      "",
      session === undefined ? undefined : { cookie: `theme=dark; session=${session}` },
    );
    opened.push(c);
    return c;
  };

  beforeAll(async () => {
    cluster = await startCluster(0);
    await cluster.addEdge(hookEnv(hooks.address, false));
    await cluster.addEdge(hookEnv(hooks.address, true));
    api = realtimeClient(cluster.grpc);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(opened.map((c) => c.close()));
    api?.close();
    await cluster?.stop();
  });

  it("OnConnect gives the user, profile, grants and first channels from a cookie", async () => {
    const alice = await connect(0, "alice-secret");
    const req = calls.connect.at(-1)!;
    expect(req.headers.cookie).toBe("theme=dark; session=alice-secret");
    expect(req.url).toBe("/");
    expect(req.edgeId).toBe(alice.id.slice(0, alice.id.lastIndexOf(".")));
    const sub = await alice.next((f) => f.frame.case === "subscribed");
    expect((sub.frame.value as { channel: string }).channel).toBe("lobby");
    const members = await api.getMembers({ channel: "lobby" });
    expect(members.members.map((m) => [m.id, m.userId, m.data?.kind.value])).toEqual([
      [alice.id, "alice", expect.objectContaining({ fields: expect.anything() })],
    ]);
    // The grant works as a token's would.
    await alice.ok({ command: { case: "join", value: { channel: "private:alice-notes" } } });
    const denied = await alice.request({ command: { case: "join", value: { channel: "private:bob-notes" } } });
    expect(denied.error?.message).toMatch(/does not grant it/);
  });

  it("OnConnect's refusal is HTTP 403 with its reason; a failed hook is 503 (closed) or anonymous (open)", async () => {
    const url0 = cluster.ws[0]!;
    const url1 = cluster.ws[1]!;
    const refused = await upgrade(url0, { headers: { cookie: "session=mallory" } });
    expect([refused.status, refused.body]).toEqual([
      403,
      expect.stringContaining('refused by the backend\'s OnConnect hook: unknown session "mallory"'),
    ]);
    for (const session of ["slow", "garbage", "fail"]) {
      const closed = await upgrade(url0, { headers: { cookie: `session=${session}` } });
      expect([session, closed.status]).toEqual([session, 503]);
      expect(closed.body).toMatch(/the backend's connect hook (failed|gave an invalid answer)/);
      const open = await upgrade(url1, { headers: { cookie: `session=${session}` } });
      expect([session, open.status]).toEqual([session, 101]);
      open.ws!.close();
    }
    // Open: let in as anonymous.
    const anon = await connect(1, "garbage");
    await anon.ok({ command: { case: "join", value: { channel: "pub" } } });
    expect((await api.getMembers({ channel: "pub" })).members.find((m) => m.id === anon.id)?.userId).toBe("");
  });

  it("OnJoin vetoes joins under its prefix, for client joins and server-side Subscribes, and is not asked elsewhere", async () => {
    const alice = await connect(0, "alice-secret");
    const bob = await connect(0, "bob-secret");
    const asked = calls.join.length;
    await bob.ok({ command: { case: "join", value: { channel: "plain" } } });
    expect(calls.join.length).toBe(asked);
    await alice.ok({ command: { case: "join", value: { channel: "vip:lounge" } } });
    const denied = await bob.request({ command: { case: "join", value: { channel: "vip:lounge" } } });
    expect(denied.error).toMatchObject({ message: "refused by the backend's OnJoin hook: vip: is for alice" });
    expect(calls.join.slice(asked).map((r) => [r.userId, r.channel, r.serverSide])).toEqual([
      ["alice", "vip:lounge", false],
      ["bob", "vip:lounge", false],
    ]);
    const st = await api
      .subscribe({ target: { target: { case: "connectionId", value: bob.id } }, channel: "vip:lounge" })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(st?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(calls.join.at(-1)).toMatchObject({ userId: "bob", serverSide: true });
    const ok = await api.subscribe({
      target: { target: { case: "connectionId", value: alice.id } },
      channel: "vip:bar",
    });
    expect(ok.joined).toBe(1);
    expect((await api.getMembers({ channel: "vip:lounge" })).members.map((m) => m.id)).toEqual([alice.id]);
  });

  it("a join hook that is too slow or answers nothing: UNAVAILABLE when closed, allowed when open", async () => {
    const closedEdge = await connect(0, "bob-secret");
    const openEdge = await connect(1, "bob-secret");
    for (const channel of ["vip:slow", "vip:garbage"]) {
      const r = await closedEdge.request({ command: { case: "join", value: { channel } } });
      expect([channel, r.error?.code]).toEqual([channel, ErrorCode.UNAVAILABLE]);
      expect(r.error?.message).toMatch(/join hook (failed|gave an invalid answer).*try again shortly/);
      await openEdge.ok({ command: { case: "join", value: { channel } } });
    }
  });

  it("OnClientSend refuses or rewrites a send before anyone gets it; sends elsewhere are not asked", async () => {
    const sender = await connect(0, "bob-secret");
    const reader = await connect(1, "alice-secret");
    for (const c of [sender, reader]) await c.ok({ command: { case: "join", value: { channel: "mod:chat" } } });
    const bad = await sender.request({
      command: {
        case: "send",
        value: { channel: "mod:chat", event: "bad", payload: { case: "json", value: fromJson(ValueSchema, "x") } },
      },
    });
    expect(bad.error?.message).toBe("refused by the backend's OnClientSend hook: no bad words");
    await sender.ok({
      command: {
        case: "send",
        value: {
          channel: "mod:chat",
          event: "shout",
          payload: { case: "json", value: fromJson(ValueSchema, "hello") },
        },
      },
    });
    const said = await reader.event("said", "mod:chat");
    expect(said.payload).toMatchObject({ case: "json", value: { kind: { case: "stringValue", value: "HELLO" } } });
    const garbage = await sender.request({
      command: {
        case: "send",
        value: { channel: "mod:chat", event: "garbage", payload: { case: "binary", value: new Uint8Array() } },
      },
    });
    expect(garbage.error?.message).toMatch(/send hook gave an invalid answer/);
    expect(reader.events("bad")).toEqual([]);
    expect(reader.events("shout")).toEqual([]);
    expect(reader.events("garbage")).toEqual([]);
    const asked = calls.send.length;
    await sender.ok({ command: { case: "join", value: { channel: "free" } } });
    await sender.ok({
      command: {
        case: "send",
        value: { channel: "free", event: "bad", payload: { case: "binary", value: new Uint8Array() } },
      },
    });
    expect(calls.send.length).toBe(asked);
  });

  it("counts every call by hook and outcome", async () => {
    const m = await scrape(`${httpOf(cluster.ws[0]!)}/metrics`);
    const count = (hook: string, outcome: string) => m.get("switchboard_hook_calls_total", { hook, outcome }) ?? 0;
    expect(count("connect", "allow")).toBeGreaterThanOrEqual(1);
    expect(count("connect", "deny")).toBeGreaterThanOrEqual(1);
    expect(count("connect", "error")).toBeGreaterThanOrEqual(2); // slow, fail
    expect(count("connect", "invalid")).toBeGreaterThanOrEqual(1);
    expect(count("join", "deny")).toBeGreaterThanOrEqual(1);
    expect(count("send", "rewrite")).toBe(1);
    expect(count("send", "invalid")).toBe(1);
  });
});

describe.skipIf(NO_REDIS)("Redis: a Subscribe through the other API node asks the join hook", () => {
  it("allows alice, denies bob", async () => {
    const prefix = uniquePrefix("hooks");
    const t = await startTopology(2, 1, {
      REALTIME_REDIS_URL: testRedisUrl(),
      REALTIME_REDIS_PREFIX: prefix,
      ...hookEnv(hooks.address, false),
    });
    const api = realtimeClient(t.grpc[1]!);
    const alice = await TestClient.connect(t.ws[0]!, "proto", "", { cookie: "session=alice-secret" });
    const bob = await TestClient.connect(t.ws[0]!, "proto", "", { cookie: "session=bob-secret" });
    try {
      const ok = await api.subscribe({ target: { target: { case: "userId", value: "alice" } }, channel: "vip:redis" });
      expect(ok.joined).toBe(1);
      const denied = await api
        .subscribe({ target: { target: { case: "userId", value: "bob" } }, channel: "vip:redis" })
        .then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
      expect([denied?.code, denied?.details]).toEqual([
        grpc.status.PERMISSION_DENIED,
        expect.stringContaining("vip: is for alice"),
      ]);
      expect((await api.getMembers({ channel: "vip:redis" })).members.map((m) => m.userId)).toEqual(["alice"]);
    } finally {
      await Promise.all([alice.close(), bob.close()]);
      api.close();
      await t.stop();
      await deletePrefix(prefix);
    }
  }, 60_000);
});
