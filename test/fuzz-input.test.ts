/**
 * Property-based fuzzing (fast-check) of everything that parses untrusted
 * input: the client frame decoder (random bytes, truncated protobuf, random
 * and hostile JSON, deep nesting, huge values, prototype-pollution keys), the
 * edge core fed those frames, and the API's request validation. Properties:
 * never a crash, never an error other than the documented ones, and always
 * a message that says what is wrong.
 */
import { fromBinary, fromJson, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code as ConnectCode, ConnectError, createContextValues } from "@connectrpc/connect";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  type ClientFrame,
  type ServerFrame,
} from "../gen/realtime/client/v1/client_pb.js";
import { createRealtimeService } from "../src/api/service.js";
import { ChannelGrants } from "../src/core/identity.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import { decodeClientFrame, FrameError } from "../src/wire/client-codec.js";
import { Edge } from "../src/core/edge.js";
import { Code } from "../src/protocol/errors.js";
import { DEFAULT_LIMITS } from "../src/core/limits.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { IdGenerator } from "../src/core/publication.js";
import type { Connection } from "../src/core/transport.js";
import { Encoding } from "../src/protocol/encodings.js";

const RUNS = 300;
const enc = new TextEncoder();
const ENCODINGS = [Encoding.Json, Encoding.Proto] as const;

/** Decodes or throws FrameError with a message; anything else fails the property. */
function decodeOrFrameError(data: Uint8Array, isBinary: boolean, encoding: Encoding): ClientFrame | FrameError {
  try {
    const frame = decodeClientFrame(data, isBinary, encoding);
    expect(frame.command.case).toBeDefined();
    return frame;
  } catch (err) {
    expect(err).toBeInstanceOf(FrameError);
    const e = err as FrameError;
    // INVALID_ARGUMENT, or UNIMPLEMENTED for what reads as a newer protocol's command.
    expect([Code.InvalidArgument, Code.Unimplemented]).toContain(e.code);
    expect(e.message.length).toBeGreaterThan(10);
    expect(Number.isInteger(e.requestId) && e.requestId >= 0).toBe(true);
    return e;
  }
}

/** A valid ClientFrame of any command, with hostile strings and values. */
const jsonValue = fc.jsonValue({ maxDepth: 4 });
const anyFrame: fc.Arbitrary<ClientFrame> = fc
  .record({
    id: fc.nat({ max: 0xffffffff }),
    kind: fc.constantFrom("join", "leave", "updateProfile", "send", "broadcast", "getMembers", "ping", "refresh"),
    channel: fc.oneof(fc.string(), fc.constantFrom("__proto__", "constructor", "private:x", "a".repeat(200))),
    event: fc.oneof(fc.string(), fc.constantFrom("channel:join", "__proto__")),
    value: jsonValue,
    bytes: fc.uint8Array({ maxLength: 64 }),
    binary: fc.boolean(),
  })
  .map(({ id, kind, channel, event, value, bytes, binary }) => {
    const json = JSON.stringify(value) ?? "null";
    const frameJson: Record<string, unknown> = { id };
    const p = binary ? { binary: Buffer.from(bytes).toString("base64") } : { json: JSON.parse(json) };
    switch (kind) {
      case "join":
      case "leave":
      case "getMembers":
        frameJson[kind] = { channel };
        break;
      case "updateProfile":
        frameJson[kind] = { data: JSON.parse(json) };
        break;
      case "send":
        frameJson[kind] = { channel, event, ...p };
        break;
      case "broadcast":
        frameJson[kind] = { event, ...p };
        break;
      case "ping":
        frameJson[kind] = {};
        break;
      case "refresh":
        frameJson[kind] = { token: channel };
        break;
    }
    return fromJsonString(ClientFrameSchema, JSON.stringify(frameJson));
  });

afterEach(() => {
  // No property may have polluted Object.prototype.
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.prototype.hasOwnProperty.call(Object.prototype, "polluted")).toBe(false);
});

describe("decodeClientFrame", () => {
  it("random bytes, in either encoding and frame type: a frame or a FrameError, never anything else", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.boolean(),
        fc.constantFrom(...ENCODINGS),
        (bytes, isBinary, encoding) => {
          decodeOrFrameError(bytes, isBinary, encoding);
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it("random text: a frame or a FrameError", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 256 }), (text) => {
        decodeOrFrameError(enc.encode(text), false, Encoding.Json);
      }),
      { numRuns: RUNS },
    );
  });

  it("valid frames round-trip in both encodings", () => {
    fc.assert(
      fc.property(anyFrame, (frame) => {
        const bin = decodeOrFrameError(toBinary(ClientFrameSchema, frame), true, Encoding.Proto);
        expect(bin).not.toBeInstanceOf(FrameError);
        const json = decodeOrFrameError(enc.encode(toJsonString(ClientFrameSchema, frame)), false, Encoding.Json);
        expect(json).not.toBeInstanceOf(FrameError);
      }),
      { numRuns: RUNS },
    );
  });

  it("truncated protobuf: a frame or a FrameError", () => {
    fc.assert(
      fc.property(anyFrame, fc.nat(), (frame, cut) => {
        const bytes = toBinary(ClientFrameSchema, frame);
        decodeOrFrameError(bytes.subarray(0, cut % (bytes.length + 1)), true, Encoding.Proto);
      }),
      { numRuns: RUNS },
    );
  });

  it("truncated or corrupted JSON: a frame or a FrameError naming the request when its id is readable", () => {
    fc.assert(
      fc.property(anyFrame, fc.nat(), fc.nat(), (frame, cut, flip) => {
        const text = toJsonString(ClientFrameSchema, frame);
        decodeOrFrameError(enc.encode(text.slice(0, cut % (text.length + 1))), false, Encoding.Json);
        const i = flip % text.length;
        decodeOrFrameError(enc.encode(text.slice(0, i) + "\u0000" + text.slice(i + 1)), false, Encoding.Json);
      }),
      { numRuns: RUNS },
    );
  });

  it("arbitrary JSON documents, with prototype-pollution keys anywhere: a frame or a FrameError, and no pollution", () => {
    const hostileKey = fc.constantFrom(
      "__proto__",
      "constructor",
      "prototype",
      "id",
      "send",
      "json",
      "ping",
      "toString",
      "hasOwnProperty",
    );
    const hostile = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small" },
        fc.jsonValue({ maxDepth: 2 }),
        tie("object"),
        fc.array(tie("value"), { maxLength: 3 }),
      ),
      object: fc.dictionary(fc.oneof(hostileKey, fc.string()), tie("value"), { maxKeys: 4 }),
    }));
    fc.assert(
      fc.property(hostile.value, (doc) => {
        decodeOrFrameError(enc.encode(JSON.stringify(doc) ?? "null"), false, Encoding.Json);
      }),
      { numRuns: RUNS },
    );
    const attacks = [
      '{"__proto__":{"polluted":1},"id":1,"ping":{}}',
      '{"id":2,"constructor":{"prototype":{"polluted":1}},"ping":{}}',
      '{"id":3,"send":{"channel":"c","event":"e","json":{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}}}',
      '{"id":4,"updateProfile":{"data":{"__proto__":{"polluted":1}}}}',
    ];
    for (const text of attacks) decodeOrFrameError(enc.encode(text), false, Encoding.Json);
  });

  it("deep nesting (JSON and protobuf): a FrameError that says so, at any depth", () => {
    for (const depth of [50, 200, 5_000, 20_000]) {
      const text = `{"id":9,"send":{"channel":"c","event":"e","json":${"[".repeat(depth)}${"]".repeat(depth)}}}`;
      const r = decodeOrFrameError(enc.encode(text), false, Encoding.Json);
      if (depth > 100) expect(r).toMatchObject({ message: expect.stringMatching(/recursion/), requestId: 9 });
      const deep = deepBinaryFrame(depth);
      const b = decodeOrFrameError(deep, true, Encoding.Proto);
      if (depth > 100) expect(b).toMatchObject({ message: expect.stringMatching(/recursion/) });
    }
  });

  it("huge values within the frame limit decode; the payload limit is the edge's job", () => {
    const text = `{"id":1,"send":{"channel":"c","event":"e","json":{"s":"${"x".repeat(80_000)}","n":${"1".repeat(400)}}}}`;
    expect(decodeOrFrameError(enc.encode(text), false, Encoding.Json)).not.toBeInstanceOf(FrameError);
    const many = `{"id":1,"send":{"channel":"c","event":"e","json":[${Array.from({ length: 20_000 }, () => "0").join(",")}]}}`;
    expect(decodeOrFrameError(enc.encode(many), false, Encoding.Json)).not.toBeInstanceOf(FrameError);
  });
});

describe("the edge core fed hostile frames", () => {
  it("never throws, answers every frame that has an id, and only with documented codes", async () => {
    const broker = new MemoryBroker();
    const presence = new MemoryPresence();
    let edge!: Edge;
    const node = broker.attach((pub) => edge.deliver(pub), true);
    edge = new Edge({ broker: node, presence: presence.view("e"), limits: DEFAULT_LIMITS, allowClientBroadcast: true });
    const DOCUMENTED = new Set([3, 7, 8, 9, 12, 16]);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            anyFrame.map((f) => ({ bytes: toBinary(ClientFrameSchema, f), id: f.id })),
            fc.uint8Array({ maxLength: 128 }).map((bytes) => ({ bytes, id: -1 })),
          ),
          { maxLength: 8 },
        ),
        async (frames) => {
          const sent: Uint8Array[] = [];
          const transport: Connection = { send: (d) => void sent.push(d), close: () => {} };
          const session = edge.connect(transport, Encoding.Proto, true, {
            userId: "u",
            expiresAt: undefined,
            grants: new ChannelGrants(["private:ok*"]),
          });
          for (const f of frames) edge.receive(session, f.bytes, true);
          await session.queue;
          const replies = sent
            .slice(1)
            .map((b) => fromBinary(ServerFrameSchema, b) as ServerFrame)
            .flatMap((f) => (f.frame.case === "reply" ? [f.frame.value] : []));
          for (const r of replies) {
            if (r.error) {
              expect(DOCUMENTED.has(r.error.code), `code ${r.error.code}: ${r.error.message}`).toBe(true);
              expect(r.error.message.length).toBeGreaterThan(10);
            }
          }
          for (const f of frames)
            if (f.id > 0)
              expect(
                replies.some((r) => r.id === f.id),
                `reply to ${f.id}`,
              ).toBe(true);
          await edge.disconnect(session);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("API request validation", () => {
  it("Send, Broadcast and GetMembers answer hostile requests with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, never worse", async () => {
    const broker = new MemoryBroker();
    const presence = new MemoryPresence();
    broker.attach(() => {}, true); // one "edge", so that publishing has somewhere to go
    const service = createRealtimeService({
      broker: broker.attach(() => {}, false),
      presence: presence.view("api"),
      limits: { ...DEFAULT_LIMITS, maxPayloadBytes: 1024 },
      eventIds: new IdGenerator(),
      watchers: (h) => broker.attach(h, false),
    } as Parameters<typeof createRealtimeService>[0]);
    // FAILED_PRECONDITION: a valid idempotency key that an earlier run used for another request.
    const ALLOWED = new Set([
      ConnectCode.InvalidArgument,
      ConnectCode.ResourceExhausted,
      ConnectCode.Unavailable,
      ConnectCode.FailedPrecondition,
    ]);
    const str = fc.oneof(
      fc.string({ unit: "binary", maxLength: 200 }),
      fc.constantFrom("", "__proto__", "channel:join", "a".repeat(129), "ok", "k:1"),
    );
    const payload = fc.oneof(
      fc.constant({ case: undefined }),
      fc.uint8Array({ maxLength: 2048 }).map((value) => ({ case: "binary" as const, value })),
      fc.jsonValue({ maxDepth: 3 }).map((v) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) })),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("send", "broadcast", "getMembers", "listChannels"),
        str,
        str,
        payload,
        fc.nat({ max: 5000 }),
        str,
        str,
        fc.option(str, { nil: undefined }),
        fc.option(str, { nil: undefined }),
        async (method, channel, event, p, pageSize, pageToken, idempotencyKey, userId, excludeConnectionId) => {
          const ctx = { values: createContextValues(), signal: new AbortController().signal } as never;
          const impl = service as unknown as Record<string, (req: unknown, ctx: never) => Promise<unknown>>;
          const req = {
            channel,
            event,
            payload: p,
            pageSize,
            pageToken,
            prefix: channel,
            idempotencyKey,
            userId,
            excludeConnectionId,
          };
          try {
            await impl[method]!(req, ctx);
          } catch (err) {
            expect(err).toBeInstanceOf(ConnectError);
            const e = err as ConnectError;
            expect(ALLOWED.has(e.code), `${method}: ${ConnectCode[e.code]} ${e.rawMessage}`).toBe(true);
            expect(e.rawMessage.length).toBeGreaterThan(10);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

/** A binary ClientFrame (id 9) whose send payload nests `depth` ListValues. */
function deepBinaryFrame(depth: number): Uint8Array {
  const tag = (no: number) => Uint8Array.of((no << 3) | 2);
  const varint = (n: number) => {
    const out: number[] = [];
    while (n > 0x7f) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
    return Uint8Array.from(out);
  };
  const cat = (...parts: Uint8Array[]) => Buffer.concat(parts);
  let inner: Uint8Array = Uint8Array.of(0x08, 0x00);
  for (let i = 0; i < depth; i++) {
    const list = cat(tag(1), varint(inner.length), inner);
    inner = cat(tag(6), varint(list.length), list);
  }
  const send = cat(
    tag(1),
    varint(1),
    enc.encode("c"),
    tag(2),
    varint(1),
    enc.encode("e"),
    tag(3),
    varint(inner.length),
    inner,
  );
  return cat(Uint8Array.of(0x08, 9), tag(5), varint(send.length), send);
}
