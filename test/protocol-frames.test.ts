/**
 * docs/protocol.md's rules for client frames, held the same in both
 * encodings: proto3's unknown fields are ignored (and reach no recipient),
 * an unknown command is UNIMPLEMENTED without spending the error budget,
 * the id of a damaged frame is kept when it can be read, exactly one
 * command per frame, and only well-formed Unicode (a lone surrogate would
 * reach JSON and binary recipients as different text; the API's Connect
 * JSON refuses it too); and the event size limit counts what the publisher
 * sends, so that a client can compute it: the Event's channel, event name
 * and payload fields in protobuf binary, not the id the service assigns
 * (which grows with its counter), over gRPC, Connect and from clients in
 * both encodings. Real API and edge processes on port 0.
 */
import { create, fromJson, toBinary, toJson } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientFrameSchema, ErrorCode, EventSchema, type Reply } from "../gen/realtime/client/v1/client_pb.js";
import { DEFAULT_RECONNECT_INITIAL_DELAY_MS, DEFAULT_RECONNECT_MAX_DELAY_MS } from "../src/client/backoff.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_QUEUED_REQUESTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from "../src/client/options.js";
import { binaryEventFrame, jsonEventFrame } from "../src/wire/client-codec.js";
import { createPublication, MAX_EVENT_ID_BYTES } from "../src/core/publication.js";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "../src/core/limits.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { toPayload, toValue } from "../src/client/codec.js";
import { freePort, NO_REDIS_SERVER, OwnRedis, startTopology, uniquePrefix } from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";
import WebSocket from "ws";

let cluster: Cluster;
let api: RealtimeTestClient;
const clients: TestClient[] = [];

beforeAll(async () => {
  cluster = await startCluster(1, { REALTIME_ALLOW_CLIENT_BROADCAST: "true" });
  api = realtimeClient(cluster.grpc);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  api?.close();
  await cluster?.stop();
  await stopAll();
});

async function connect(enc: "json" | "proto"): Promise<TestClient> {
  const c = await TestClient.connect(cluster.ws[0]!, enc);
  clients.push(c);
  return c;
}

/** Sends raw bytes (binary) or text and resolves with the next reply. */
async function raw(c: TestClient, data: string | Uint8Array): Promise<Reply> {
  const count = c.frames.length;
  c.ws.send(data, { binary: typeof data !== "string" });
  const f = await c.next((f) => c.frames.indexOf(f) >= count && f.frame.case === "reply");
  return f.frame.value as Reply;
}

const bin = (init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) =>
  toBinary(ClientFrameSchema, create(ClientFrameSchema, init));
const cat = (...parts: (Uint8Array | number[])[]) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
const codeAndId = (r: Reply) => [r.id, r.error?.code ?? 0];

describe("unknown commands and fields (proto3: newer clients, older edges)", () => {
  it("an unknown command is UNIMPLEMENTED with its id, in both encodings", async () => {
    const j = await connect("json");
    expect(codeAndId(await raw(j, JSON.stringify({ id: 5, subscribe: { channel: "x" } })))).toEqual([
      5,
      ErrorCode.UNIMPLEMENTED,
    ]);
    const p = await connect("proto");
    // id 5, then field 20 (length-delimited, empty): a command of a newer protocol.
    const reply = await raw(p, cat([0x08, 0x05, 0xa2, 0x01, 0x00]));
    expect(codeAndId(reply)).toEqual([5, ErrorCode.UNIMPLEMENTED]);
    expect(reply.error?.message).toMatch(/field number 20/);
  });

  it("does not spend the error budget: 40 unknown commands, and the connection stays", async () => {
    for (const enc of ["json", "proto"] as const) {
      const c = await connect(enc);
      // id 100 (0x64), clear of the ids TestClient.ok picks.
      const frame = enc === "json" ? JSON.stringify({ id: 100, subscribe: {} }) : cat([0x08, 0x64, 0xa2, 0x01, 0x00]);
      for (let i = 0; i < 40; i++) expect((await raw(c, frame)).error?.code).toBe(ErrorCode.UNIMPLEMENTED);
      await c.ok({ command: { case: "ping", value: {} } });
      expect(c.closeCode).toBeUndefined();
    }
  });

  it("ignores unknown fields at any depth, and no recipient sees them", async () => {
    const j = await connect("json");
    const p = await connect("proto");
    const watcher = await connect("proto");
    await watcher.ok({ command: { case: "join", value: { channel: "unknown-fields" } } });
    const joinJson = { id: 2, join: { channel: "unknown-fields", priority: 3 }, trace: "abc" };
    expect(codeAndId(await raw(j, JSON.stringify(joinJson)))).toEqual([2, 0]);
    // A join with field 7 inside Join, then field 31 (varint) in ClientFrame.
    const joinBin = cat(
      [0x08, 0x02, 0x12, 0x14, 0x0a, 0x0e],
      Buffer.from("unknown-fields"),
      [0x38, 0x01],
      [0xf8, 0x01, 0x01],
    );
    expect(codeAndId(await raw(p, joinBin))).toEqual([2, 0]);
    // A send whose google.protobuf.Value carries unknown field 9 after its string_value.
    const withUnknown = new BinaryWriter()
      .tag(1, WireType.Varint)
      .uint32(3)
      .tag(5, WireType.LengthDelimited)
      .fork()
      .tag(1, WireType.LengthDelimited)
      .string("unknown-fields")
      .tag(2, WireType.LengthDelimited)
      .string("e")
      .tag(3, WireType.LengthDelimited)
      .fork()
      .tag(3, WireType.LengthDelimited)
      .string("v")
      .tag(9, WireType.Varint)
      .uint32(1)
      .join()
      .join()
      .finish();
    expect(codeAndId(await raw(p, withUnknown))).toEqual([3, 0]);
    const event = await watcher.event("e", "unknown-fields");
    expect(event.payload.case).toBe("json");
    expect((event.payload.value as { $unknown?: unknown }).$unknown).toBeUndefined();
    expect(toJson(ValueSchema, event.payload.value as Value)).toBe("v");
  });
});

describe("a frame's id and its one command", () => {
  it("an error reply to a damaged binary frame keeps its id when it can be read", async () => {
    const p = await connect("proto");
    // id 42, then a join of 5 bytes of which 1 came.
    expect(codeAndId(await raw(p, cat([0x08, 0x2a, 0x12, 0x05, 0x0a])))).toEqual([42, ErrorCode.INVALID_ARGUMENT]);
    // a ping, id 7 after it, then a field whose length runs past the end.
    expect(codeAndId(await raw(p, cat([0x42, 0x00, 0x08, 0x07, 0x1a, 0x7f, 0x01])))).toEqual([
      7,
      ErrorCode.INVALID_ARGUMENT,
    ]);
    // nothing readable: id 0.
    expect(codeAndId(await raw(p, cat([0xff])))).toEqual([0, ErrorCode.INVALID_ARGUMENT]);
  });

  it("refuses two commands in one frame, in both encodings, with the frame's id", async () => {
    const p = await connect("proto");
    await p.ok({ command: { case: "join", value: { channel: "two" } } });
    const join = bin({ command: { case: "join", value: { channel: "two" } } });
    const leave = bin({ command: { case: "leave", value: { channel: "two" } } });
    const reply = await raw(p, cat([0x08, 0x09], join, leave));
    expect(codeAndId(reply)).toEqual([9, ErrorCode.INVALID_ARGUMENT]);
    expect(reply.error?.message).toMatch(/2 commands \(join, leave\)/);
    // Nothing was done: still a member.
    expect(
      (await p.ok({ command: { case: "getMembers", value: { channel: "two" } } })).members.map((m) => m.id),
    ).toEqual([p.id]);
    const j = await connect("json");
    const jr = await raw(j, JSON.stringify({ id: 9, join: { channel: "two" }, leave: { channel: "two" } }));
    expect(codeAndId(jr)).toEqual([9, ErrorCode.INVALID_ARGUMENT]);
  });
});

describe("well-formed Unicode only", () => {
  it("refuses a JSON frame with a lone surrogate, naming the field; binary peers never see U+FFFD for it", async () => {
    const j = await connect("json");
    const jPeer = await connect("json");
    const pPeer = await connect("proto");
    for (const c of [j, jPeer, pPeer]) await c.ok({ command: { case: "join", value: { channel: "utf" } } });
    const send = `{"id":3,"send":{"channel":"utf","event":"e","json":{"text":"a\\ud800b"}}}`;
    const reply = await raw(j, send);
    expect(codeAndId(reply)).toEqual([3, ErrorCode.INVALID_ARGUMENT]);
    expect(reply.error?.message).toMatch(/send\.json\.text is not well-formed Unicode/);
    const profile = await raw(j, `{"id":4,"updateProfile":{"data":{"names":["ok","\\udc00"]}}}`);
    expect(codeAndId(profile)).toEqual([4, ErrorCode.INVALID_ARGUMENT]);
    expect(profile.error?.message).toMatch(/updateProfile\.data\.names\[1\]/);
    // A well-formed pair (an emoji written as escapes) is fine.
    expect(codeAndId(await raw(j, `{"id":5,"send":{"channel":"utf","event":"e","json":"\\ud83d\\ude00"}}`))).toEqual([
      5, 0,
    ]);
    for (const peer of [jPeer, pPeer]) {
      const event = await peer.event("e", "utf");
      expect(toJson(ValueSchema, event.payload.value as Value)).toBe("😀");
    }
    expect([...jPeer.events("e"), ...pPeer.events("e")]).toHaveLength(2);
  });

  it("the API refuses a Connect JSON request with a lone surrogate: INVALID_ARGUMENT, nothing published", async () => {
    const peer = await connect("proto");
    await peer.ok({ command: { case: "join", value: { channel: "utf-api" } } });
    const post = (method: string, body: string) =>
      fetch(`http://${cluster.http}/realtime.v1.Realtime/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
    const cases: [string, string][] = [
      ["Send", `{"channel":"utf-api","event":"e","json":{"k":"\\udfff"}}`],
      ["Broadcast", `{"event":"e","json":["\\ud800"]}`],
      [
        "SendBatch",
        `{"requests":[{"channel":"utf-api","event":"e","json":1},{"channel":"utf-api","event":"e","json":{"\\ud800":1}}]}`,
      ],
    ];
    for (const [method, body] of cases) {
      const res = await post(method, body);
      const json = (await res.json()) as { code?: string; message?: string };
      expect({ method, status: res.status, code: json.code }).toEqual({
        method,
        status: 400,
        code: "invalid_argument",
      });
      expect(json.message).toMatch(/not well-formed Unicode/);
    }
    const ok = await post("Send", `{"channel":"utf-api","event":"fine","json":"\\ud83d\\ude00"}`);
    expect(ok.status).toBe(200);
    await peer.event("fine", "utf-api");
    expect(peer.events("e")).toEqual([]);
  });
});

describe("the SDK keeps the Unicode rule in both encodings", () => {
  it("refuses a message or profile with a lone surrogate before sending, whatever its encoding", () => {
    expect(() => toPayload({ text: "a\ud800b" })).toThrow(
      expect.objectContaining({
        code: ErrorCode.INVALID_ARGUMENT,
        message: expect.stringMatching(/message\.text is not well-formed/),
      }),
    );
    expect(() => toValue("\udc00", "profile")).toThrow(/profile is not well-formed Unicode/);
    expect(toPayload({ text: "😀" }).case).toBe("json");
  });
});

/** The size of a varint, as docs/protocol.md has a client compute it. */
const varint = (n: number) => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4);
/** A length-delimited field of n bytes: tag, length, bytes. */
const field = (n: number) => 1 + varint(n) + n;

const CHANNEL = "size";
const EVENT = "blob";
/** The largest binary payload: the limit less the channel and event fields and the payload's own tag and length. */
const MAX_BINARY = (() => {
  const names = field(CHANNEL.length) + field(EVENT.length);
  let n = DEFAULT_MAX_PAYLOAD_BYTES - names;
  while (names + field(n) > DEFAULT_MAX_PAYLOAD_BYTES) n--;
  return n;
})();
/** The largest string payload: json is a google.protobuf.Value whose string_value (field 3) holds it. */
const MAX_STRING = (() => {
  const names = field(CHANNEL.length) + field(EVENT.length);
  let n = DEFAULT_MAX_PAYLOAD_BYTES - names;
  while (names + field(field(n)) > DEFAULT_MAX_PAYLOAD_BYTES) n--;
  return n;
})();

const binary = (n: number) => ({ case: "binary" as const, value: new Uint8Array(n).fill(7) });
const string = (n: number) => ({ case: "json" as const, value: fromJson(ValueSchema, "x".repeat(n)) });

describe("the event size limit counts what the publisher sends", () => {
  it("the figures of the docs: 65,520 bytes of binary, 65,516 characters of string, beside channel and event of 4", () => {
    expect([MAX_BINARY, MAX_STRING]).toEqual([65_520, 65_516]);
  });

  it("gRPC Send and SendBatch: the largest payload is accepted, whatever the id counter; one byte more is not", async () => {
    for (let round = 0; round < 2; round++) {
      for (const payload of [binary(MAX_BINARY), string(MAX_STRING)]) {
        await api.send({ channel: CHANNEL, event: EVENT, payload });
      }
      await expect(api.send({ channel: CHANNEL, event: EVENT, payload: binary(MAX_BINARY + 1) })).rejects.toMatchObject(
        {
          code: status.RESOURCE_EXHAUSTED,
        },
      );
      await expect(api.send({ channel: CHANNEL, event: EVENT, payload: string(MAX_STRING + 1) })).rejects.toMatchObject(
        {
          code: status.RESOURCE_EXHAUSTED,
        },
      );
      const batch = await api.sendBatch({
        requests: [{ channel: CHANNEL, event: EVENT, payload: binary(MAX_BINARY) }],
      });
      expect(batch.responses).toHaveLength(1);
      await expect(
        api.sendBatch({ requests: [{ channel: CHANNEL, event: EVENT, payload: binary(MAX_BINARY + 1) }] }),
      ).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/requests\[0\]/) });
      // Grow the API's id counter past 1,296 (four base-36 digits): longer ids, the same limit.
      if (round === 0)
        for (let i = 0; i < 2; i++)
          await api.sendBatch({
            requests: Array.from({ length: 1_000 }, () => ({ channel: CHANNEL, event: "tick", payload: binary(1) })),
          });
    }
  });

  it("Connect JSON Send: the same limit", async () => {
    const post = (n: number) =>
      fetch(`http://${cluster.http}/realtime.v1.Realtime/Send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ channel: CHANNEL, event: EVENT, binary: Buffer.alloc(n, 7).toString("base64") }),
      });
    expect((await post(MAX_BINARY)).status).toBe(200);
    const over = await post(MAX_BINARY + 1);
    expect(((await over.json()) as { code: string }).code).toBe("resource_exhausted");
  });

  it("a client, in both encodings: the largest payload is sent, one byte more is RESOURCE_EXHAUSTED", async () => {
    for (const enc of ["json", "proto"] as const) {
      const c = await connect(enc);
      await c.ok({ command: { case: "join", value: { channel: CHANNEL } } });
      for (const payload of [binary(MAX_BINARY), string(MAX_STRING)]) {
        const reply = await c.request({
          command: { case: "send", value: { channel: CHANNEL, event: EVENT, payload } },
        });
        expect({ enc, error: reply.error?.message }).toEqual({ enc, error: undefined });
      }
      for (const payload of [binary(MAX_BINARY + 1), string(MAX_STRING + 1)]) {
        const reply = await c.request({
          command: { case: "send", value: { channel: CHANNEL, event: EVENT, payload } },
        });
        expect({ enc, code: reply.error?.code }).toEqual({ enc, code: ErrorCode.RESOURCE_EXHAUSTED });
        expect(reply.error?.message).toMatch(/65537 bytes encoded \(channel, event name and payload/);
      }
    }
  });
});

/**
 * Checks that each of a connection's own events (echo on) arrives before the
 * reply to the command that caused it, `rounds` times over.
 */
async function ownEventsBeforeReplies(url: string, enc: "json" | "proto", rounds: number): Promise<void> {
  const c = await TestClient.connect(url, enc);
  clients.push(c);
  const before = (reply: Reply, event: string, channel: string) => {
    const r = c.frames.findIndex((f) => f.frame.case === "reply" && f.frame.value.id === reply.id);
    const e = c.frames.findIndex(
      (f) => f.frame.case === "event" && f.frame.value.event === event && f.frame.value.channel === channel,
    );
    return e >= 0 && e < r;
  };
  const payload = { case: "binary" as const, value: new Uint8Array([1]) };
  for (let i = 0; i < rounds; i++) {
    const channel = `own-${enc}-${i}`;
    const cmds: [Parameters<TestClient["ok"]>[0], string, string][] = [
      [{ command: { case: "join", value: { channel } } }, "channel:join", channel],
      [{ command: { case: "updateProfile", value: { data: fromJson(ValueSchema, i) } } }, "channel:update", channel],
      [{ command: { case: "send", value: { channel, event: "mine", payload } } }, "mine", channel],
      [{ command: { case: "broadcast", value: { event: `all-${channel}`, payload } } }, `all-${channel}`, ""],
      [{ command: { case: "leave", value: { channel } } }, "channel:leave", channel],
    ];
    for (const [cmd, event, ch] of cmds) {
      const reply = await c.ok(cmd);
      expect({ enc, i, event, before: before(reply, event, ch) }).toEqual({ enc, i, event, before: true });
    }
  }
}

describe("what docs/protocol.md tells a client writer", () => {
  it("a connection's own join, update, send, broadcast and leave arrive before the command's reply, in both encodings", async () => {
    for (const enc of ["json", "proto"] as const) await ownEventsBeforeReplies(cluster.ws[0]!, enc, 20);
  });

  it.skipIf(NO_REDIS_SERVER)(
    "the same in Redis mode, where the event and the reply come over different Redis connections",
    async () => {
      // A redis-server of the test's own, so that no other test's keys are near.
      const redis = new OwnRedis(await freePort());
      await redis.start();
      const topology = await startTopology(1, 1, {
        REALTIME_REDIS_URL: redis.url,
        REALTIME_REDIS_PREFIX: uniquePrefix("own-events"),
        REALTIME_ALLOW_CLIENT_BROADCAST: "true",
      });
      try {
        for (const enc of ["json", "proto"] as const) await ownEventsBeforeReplies(topology.ws[0]!, enc, 20);
      } finally {
        await Promise.all(clients.splice(0).map((c) => c.close()));
        await topology.stop();
        await redis.kill();
      }
    },
    60_000,
  );

  it("the edge picks realtime.v1.proto when a client offers both, in either order", async () => {
    for (const offered of [
      ["realtime.v1.json", "realtime.v1.proto"],
      ["realtime.v1.proto", "realtime.v1.json"],
    ]) {
      const ws = new WebSocket(cluster.ws[0]!, offered);
      await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
      expect(ws.protocol).toBe("realtime.v1.proto");
      ws.close();
    }
  });
});

describe("the figures docs/protocol.md gives a client writer", () => {
  const docs = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");

  it("the largest event frames: 6 x the limit in JSON (control characters), the limit + 30 bytes in binary", () => {
    const id = "i".repeat(MAX_EVENT_ID_BYTES);
    /** The largest string of ch that fits the limit, as a broadcast, and its frames. */
    const largest = (ch: string, channel = "") => {
      const pub = (n: number) => {
        const event = create(EventSchema, {
          id,
          channel,
          event: "e",
          payload: { case: "json", value: fromJson(ValueSchema, ch.repeat(n)) },
        });
        try {
          return createPublication(event, DEFAULT_MAX_PAYLOAD_BYTES);
        } catch {
          return undefined; // over the limit
        }
      };
      // The largest n that fits, by bisection.
      let [lo, hi] = [0, DEFAULT_MAX_PAYLOAD_BYTES];
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (pub(mid)) lo = mid;
        else hi = mid - 1;
      }
      const found = pub(lo)!;
      return { json: jsonEventFrame(found).length, binary: binaryEventFrame(found).length };
    };
    const worst = largest("\u0001");
    expect(worst).toEqual({ json: 393_215, binary: DEFAULT_MAX_PAYLOAD_BYTES + 30 });
    expect(worst.json).toBeLessThanOrEqual(6 * DEFAULT_MAX_PAYLOAD_BYTES);
    for (const ch of ['"', "a", "é", "😀"]) expect(largest(ch, "c").json).toBeLessThan(worst.json / 2);
    expect(docs).toContain("| `realtime.v1.proto` | limit + 30 bytes | 65,566 bytes |");
    expect(docs).toContain("| `realtime.v1.json` | 6 × limit | 393,216 bytes (384 KiB) |");
  });

  it("the SDK's constants, as the table gives them", () => {
    const constants: Record<string, number> = {
      DEFAULT_RECONNECT_INITIAL_DELAY_MS,
      DEFAULT_RECONNECT_MAX_DELAY_MS,
      DEFAULT_REQUEST_TIMEOUT_MS,
      DEFAULT_CONNECT_TIMEOUT_MS,
      DEFAULT_MAX_QUEUED_REQUESTS,
    };
    for (const [name, value] of Object.entries(constants)) {
      const row = new RegExp(`^\\| \`${name}\` \\| (\\d+)( ms)? \\|`, "m").exec(docs);
      expect({ name, documented: Number(row?.[1]) }).toEqual({ name, documented: value });
    }
  });
});
