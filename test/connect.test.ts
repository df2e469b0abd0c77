/**
 * The API's HTTP port serves realtime.v1.Realtime over Connect (JSON and
 * binary) and gRPC-Web with the same implementation, errors and limits as
 * the gRPC port; CORS grants only the configured origins. ListChannels,
 * WatchChannel and GetMembers pages work on every protocol.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Realtime, type WatchChannelResponse } from "../gen/realtime/v1/realtime_pb.js";
import { BAD_REQUESTS } from "./helpers/bad-requests.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { FakeEdge } from "./helpers/fake-edge.js";
import { TestClient } from "./helpers/ws-client.js";

const ALLOWED_ORIGIN = "http://dash.example:5173";
let cluster: Cluster;
let clients: Record<string, Client<typeof Realtime>>;
let fake: FakeEdge | undefined;
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

beforeAll(async () => {
  cluster = await startCluster(1, {
    REALTIME_MAX_PAYLOAD_BYTES: "4096",
    REALTIME_MAX_BATCH_BYTES: "8192",
    REALTIME_CORS_ORIGINS: ALLOWED_ORIGIN,
  });
  const http = `http://${cluster.http}`;
  const transports: Record<string, Transport> = {
    grpc: createGrpcTransport({ baseUrl: `http://${cluster.grpc}` }),
    "connect+json": createConnectTransport({ baseUrl: http, httpVersion: "1.1" }),
    "connect+proto": createConnectTransport({ baseUrl: http, httpVersion: "1.1", useBinaryFormat: true }),
    "grpc-web": createGrpcWebTransport({ baseUrl: http, httpVersion: "1.1" }),
  };
  clients = Object.fromEntries(Object.entries(transports).map(([k, t]) => [k, createClient(Realtime, t)]));
});

afterAll(async () => {
  fake?.close();
  await cluster?.stop();
  await stopAll();
});

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected the call to fail");
}

const PROTOCOLS = ["grpc", "connect+json", "connect+proto", "grpc-web"] as const;

describe("bad input: the same code and message on every protocol", () => {
  for (const bad of BAD_REQUESTS) {
    it(`${bad.name}: ${Code[bad.code]}`, async () => {
      for (const protocol of PROTOCOLS) {
        const call = clients[protocol]![bad.method] as (req: unknown) => Promise<unknown>;
        const err = await failure(call(bad.request));
        expect({ protocol, code: Code[err.code], message: err.rawMessage }).toMatchObject({
          protocol,
          code: Code[bad.code],
        });
        expect(err.rawMessage).toMatch(bad.message);
      }
    });
  }

  it("the messages the service writes are identical, word for word, over gRPC and Connect", async () => {
    for (const bad of BAD_REQUESTS.filter((b) => !/read limit/.test(b.name))) {
      const call = (p: string) => (clients[p]![bad.method] as (req: unknown) => Promise<unknown>)(bad.request);
      const messages = await Promise.all(PROTOCOLS.map(async (p) => (await failure(call(p))).rawMessage));
      expect(new Set(messages).size, `${bad.name}: ${JSON.stringify(messages)}`).toBe(1);
    }
  });
});

describe("HTTP details", () => {
  const rpc = (method: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`http://${cluster.http}/realtime.v1.Realtime/${method}`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json", ...headers },
    });

  it("plain curl GetMembers works (the README's example)", async () => {
    const { stdout } = await promisify(execFile)("curl", [
      "-sS",
      "-H",
      "content-type: application/json",
      "-d",
      '{"channel":"c"}',
      `http://${cluster.http}/realtime.v1.Realtime/GetMembers`,
    ]);
    expect(JSON.parse(stdout)).toEqual({});
  });

  it("an oversized request body is RESOURCE_EXHAUSTED (HTTP 429), not read to the end", async () => {
    const res = await rpc("Send", JSON.stringify({ channel: "c", event: "e", json: "x".repeat(200_000) }));
    expect(res.status).toBe(429);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toMatch(/larger than configured readMaxBytes/);
  });

  it("after a request refused as too large, the next call on the same keep-alive connection answers at once", async () => {
    // connect-node leaves the refused body unread; without draining it and
    // closing the connection, the next call hung until the keep-alive timeout.
    for (let i = 0; i < 10; i++) {
      await Promise.all(
        (["connect+json", "connect+proto", "grpc-web"] as const).map(async (protocol) => {
          const c = clients[protocol]!;
          const big = await failure(
            c.send({ channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(64 * 1024) } }),
          );
          expect(big.code).toBe(Code.ResourceExhausted);
          const t0 = performance.now();
          await c.send({ channel: "c", event: "e", payload: json(i) }, { timeoutMs: 3000 });
          expect(performance.now() - t0).toBeLessThan(1000);
        }),
      );
    }
  });

  it("a binary payload that fits the gRPC port also fits in Connect JSON, where base64 makes it a third larger", async () => {
    // 3900 bytes: under the 4096-byte event limit; 5200 characters of base64.
    const binary = Buffer.alloc(3900, 7).toString("base64");
    const res = await rpc("Send", JSON.stringify({ channel: "c", event: "e", binary }));
    expect(res.status).toBe(200);
  });

  it("a wrong content type gets 415 and says which ones to use", async () => {
    const res = await rpc("GetMembers", '{"channel":"c"}', { "content-type": "text/plain" });
    expect(res.status).toBe(415);
    expect(((await res.json()) as { message: string }).message).toMatch(/use application\/json or application\/proto/);
  });

  it("an unknown method or path is 404, with a body that says where the RPCs are", async () => {
    const res = await rpc("Nope", "{}");
    expect(res.status).toBe(404);
    expect(await res.text()).toMatch(/RPCs are POST \/realtime\.v1\.Realtime\/<Method>/);
    expect((await fetch(`http://${cluster.http}/nope`)).status).toBe(404);
  });

  it("CORS: an allowed origin's preflight is granted with the Connect and gRPC-Web headers", async () => {
    const res = await fetch(`http://${cluster.http}/realtime.v1.Realtime/Send`, {
      method: "OPTIONS",
      headers: {
        origin: ALLOWED_ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version",
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED_ORIGIN);
    const allowed = res.headers.get("access-control-allow-headers")!.toLowerCase();
    for (const h of [
      "content-type",
      "connect-protocol-version",
      "connect-timeout-ms",
      "x-grpc-web",
      "grpc-timeout",
      "authorization",
    ])
      expect(allowed).toContain(h);
    expect(res.headers.get("access-control-allow-methods")).toContain("POST");
  });

  it("CORS: an allowed origin's call exposes grpc-status and friends", async () => {
    const res = await rpc("GetMembers", '{"channel":"c"}', { origin: ALLOWED_ORIGIN });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe(ALLOWED_ORIGIN);
    expect(res.headers.get("access-control-expose-headers")!.toLowerCase()).toContain("grpc-status");
  });

  it("CORS: the page's own origin is allowed without configuration", async () => {
    const res = await rpc("GetMembers", '{"channel":"c"}', { origin: `http://${cluster.http}` });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe(`http://${cluster.http}`);
  });

  it("CORS: a disallowed origin gets no grant, and its call never runs", async () => {
    const pre = await fetch(`http://${cluster.http}/realtime.v1.Realtime/Send`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "POST" },
    });
    expect(pre.status).toBe(403);
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    const watcher = await TestClient.connect(cluster.ws[0]!, "json");
    await watcher.ok({ command: { case: "join", value: { channel: "csrf" } } });
    const res = await rpc("Send", JSON.stringify({ channel: "csrf", event: "e", json: 1 }), {
      origin: "http://evil.example",
    });
    expect(res.status).toBe(403);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    await clients["connect+json"]!.send({ channel: "csrf", event: "after", payload: json(1) });
    await watcher.event("after");
    expect(watcher.events("e")).toEqual([]);
    await watcher.close();
  });
});

describe("ListChannels", () => {
  it("pages channels by name with their counts, filtered by prefix, on every protocol", async () => {
    const a = await TestClient.connect(cluster.ws[0]!, "json");
    const b = await TestClient.connect(cluster.ws[0]!, "proto");
    const names = Array.from({ length: 25 }, (_, i) => `room-${String(i).padStart(2, "0")}`);
    for (const channel of names) await a.ok({ command: { case: "join", value: { channel } } });
    await b.ok({ command: { case: "join", value: { channel: "room-03" } } });
    await b.ok({ command: { case: "join", value: { channel: "other" } } });
    for (const protocol of PROTOCOLS) {
      const seen: { name: string; members: number }[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const res = await clients[protocol]!.listChannels({ prefix: "room-", pageSize: 10, pageToken });
        seen.push(...res.channels.map((c) => ({ name: c.name, members: c.members })));
        pageToken = res.nextPageToken;
        pages++;
      } while (pageToken !== "");
      expect(pages, protocol).toBe(3);
      expect(seen.map((c) => c.name)).toEqual(names);
      expect(seen.find((c) => c.name === "room-03")!.members).toBe(2);
      expect(seen.filter((c) => c.members === 1).length).toBe(24);
    }
    const err = await failure(
      clients.grpc!.listChannels({
        prefix: "other",
        pageToken: (await clients.grpc!.listChannels({ prefix: "room-", pageSize: 1 })).nextPageToken,
      }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/repeat the prefix/);
    await a.close();
    await b.close();
  });
});

describe("GetMembers pages", () => {
  it("without page_size lists everyone at once (existing callers); with it, pages by id that add up to everyone", async () => {
    const members = await Promise.all([0, 1, 2, 3, 4].map(() => TestClient.connect(cluster.ws[0]!, "json")));
    for (const m of members) await m.ok({ command: { case: "join", value: { channel: "paged" } } });
    const all = await clients["connect+json"]!.getMembers({ channel: "paged" });
    expect(all.members.length).toBe(5);
    expect(all.nextPageToken).toBe("");
    for (const protocol of PROTOCOLS) {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const res = await clients[protocol]!.getMembers({ channel: "paged", pageSize: 2, pageToken });
        expect(res.members.length).toBeLessThanOrEqual(2);
        ids.push(...res.members.map((m) => m.id));
        pageToken = res.nextPageToken;
      } while (pageToken !== "");
      expect(ids).toEqual(members.map((m) => m.id).sort());
    }
    await Promise.all(members.map((m) => m.close()));
  });

  it("answers for a channel of 10,000 members in well under a second, whole and in pages; ListChannels pages 100,000 channels", async () => {
    fake = await FakeEdge.connect(cluster.api.ready.link!, "fake-edge-big");
    await fake.addMembers(["big"], 10_000, "m");
    await fake.addMembers(
      Array.from({ length: 100_000 }, (_, i) => `many/${i}`),
      1,
      "x",
    );
    for (const protocol of ["grpc", "connect+proto", "connect+json"] as const) {
      const t0 = performance.now();
      const res = await clients[protocol]!.getMembers({ channel: "big" });
      const whole = performance.now() - t0;
      expect(res.members.length).toBe(10_000);
      const t1 = performance.now();
      const page = await clients[protocol]!.getMembers({ channel: "big", pageSize: 1000 });
      const paged = performance.now() - t1;
      expect(page.members.length).toBe(1000);
      const t2 = performance.now();
      const channels = await clients[protocol]!.listChannels({ prefix: "many/", pageSize: 1000 });
      const listed = performance.now() - t2;
      expect(channels.channels.length).toBe(1000);
      console.log(
        `${protocol}: GetMembers 10,000 in ${whole.toFixed(0)} ms, a page of 1000 in ${paged.toFixed(0)} ms; ListChannels of 100,000 channels, a page of 1000 in ${listed.toFixed(0)} ms`,
      );
      expect(whole).toBeLessThan(1000);
      expect(paged).toBeLessThan(1000);
      expect(listed).toBeLessThan(1000);
    }
    // A walk over all 100,000 in pages of 1000 lists each once, in order.
    const names: string[] = [];
    let pageToken = "";
    const t0 = performance.now();
    do {
      const res = await clients["connect+proto"]!.listChannels({ prefix: "many/", pageSize: 1000, pageToken });
      names.push(...res.channels.map((c) => c.name));
      pageToken = res.nextPageToken;
    } while (pageToken !== "");
    console.log(`ListChannels: walked 100,000 channels in 100 pages in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(names.length).toBe(100_000);
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(100_000);
  });
});

describe("WatchChannel", () => {
  async function collect(protocol: string, channel: string, until: (r: WatchChannelResponse[]) => boolean) {
    const abort = new AbortController();
    const got: WatchChannelResponse[] = [];
    let wake = () => {};
    const done = (async () => {
      try {
        for await (const r of clients[protocol]!.watchChannel({ channel }, { signal: abort.signal })) {
          got.push(r);
          wake();
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    const wait = async (pred: (r: WatchChannelResponse[]) => boolean) => {
      const deadline = Date.now() + 5000;
      while (!pred(got)) {
        if (Date.now() > deadline)
          throw new Error(`${protocol}: waited 5 s; got ${got.map((r) => r.update.case).join(",")}`);
        await new Promise<void>((r) => ((wake = r), setTimeout(r, 50)));
      }
    };
    await wait(until);
    return { got, wait, stop: async () => (abort.abort(), await done) };
  }

  for (const protocol of PROTOCOLS) {
    it(`${protocol}: the members, then join, profile update, message and leave, until cancelled`, async () => {
      const channel = `watch-${protocol.replace("+", "-")}`;
      const first = await TestClient.connect(cluster.ws[0]!, "json");
      await first.ok({ command: { case: "updateProfile", value: { data: fromJson(ValueSchema, { name: "first" }) } } });
      await first.ok({ command: { case: "join", value: { channel } } });
      const w = await collect(protocol, channel, (r) => r.length >= 1);
      expect(w.got[0]!.update.case).toBe("members");
      const snapshot = w.got[0]!.update.value as { members: { id: string; data?: unknown }[]; complete: boolean };
      expect(snapshot.complete).toBe(true);
      expect(snapshot.members.map((m) => m.id)).toEqual([first.id]);

      const second = await TestClient.connect(cluster.ws[0]!, "proto");
      await second.ok({ command: { case: "join", value: { channel } } });
      await second.ok({
        command: { case: "updateProfile", value: { data: fromJson(ValueSchema, { name: "second" }) } },
      });
      await clients.grpc!.send({ channel, event: "from-backend", payload: json({ n: 1 }) });
      await second.ok({
        command: {
          case: "send",
          value: { channel, event: "from-client", payload: { case: "binary", value: new Uint8Array([1, 2, 3]) } },
        },
      });
      await second.ok({ command: { case: "leave", value: { channel } } });
      await w.wait((r) => r.some((x) => x.update.case === "leave"));
      const events = w.got.slice(1).map((r) => {
        const v = r.update.value as { id?: string; event?: string; origin?: string; data?: unknown };
        return r.update.case === "message"
          ? `message:${v.event}:${v.origin === "" ? "backend" : v.origin === second.id ? "second" : v.origin}`
          : `${r.update.case}:${v.id === second.id ? "second" : v.id}`;
      });
      expect(events).toEqual([
        "join:second",
        "profileUpdate:second",
        "message:from-backend:backend",
        "message:from-client:second",
        "leave:second",
      ]);
      const update = w.got.find((r) => r.update.case === "profileUpdate")!.update.value as { data: unknown };
      expect(toJson(ValueSchema, update.data as never)).toEqual({ name: "second" });
      const bin = w.got.find((r) => r.update.case === "message" && r.update.value.event === "from-client")!.update
        .value as { payload: { case: string; value: Uint8Array } };
      expect(bin.payload.case).toBe("binary");
      expect([...bin.payload.value]).toEqual([1, 2, 3]);
      expect(w.got.every((r, i) => (i === 0 ? r.id === "" : r.id !== ""))).toBe(true);
      await w.stop();
      await first.close();
      await second.close();
    });
  }

  it("a snapshot of 10,000 members arrives in parts of 500 before any event", async () => {
    const w = await collect("connect+proto", "big", (r) =>
      r.some((x) => x.update.case === "members" && x.update.value.complete),
    );
    const parts = w.got.filter((r) => r.update.case === "members");
    expect(parts.length).toBe(20);
    expect(parts.reduce((n, r) => n + (r.update.value as { members: unknown[] }).members.length, 0)).toBe(10_000);
    await w.stop();
  });

  it("rejects a bad channel with INVALID_ARGUMENT on every protocol", async () => {
    for (const protocol of PROTOCOLS) {
      const err = await failure(
        (async () => {
          for await (const _ of clients[protocol]!.watchChannel({ channel: "a b" })) void _;
        })(),
      );
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/character outside/);
    }
  });
});
