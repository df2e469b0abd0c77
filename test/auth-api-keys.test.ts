/**
 * Backends must present an API key (REALTIME_API_KEYS) on gRPC and on
 * Connect alike: missing, malformed and wrong keys are UNAUTHENTICATED, a
 * scoped key outside its scope is PERMISSION_DENIED, several keys work at
 * once (rotation), health stays open. Without keys the API refuses to
 * listen beyond loopback unless REALTIME_INSECURE=true. Oversized requests
 * are RESOURCE_EXHAUSTED; deadlines are honoured.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { startCluster, startProcess, stopAll, type Cluster } from "./helpers/cluster.js";

const FULL = "full-access-key-0123456789abcdef";
const OLD = "old-rotating-key-0123456789abcdef";
const READER = "presence-only-key-0123456789abcd";
const WRITER = "publish-only-key-0123456789abcde";
const json = (v: unknown) => ({ case: "json" as const, value: fromJson(ValueSchema, v as never) });

let cluster: Cluster;
const clients: Record<string, (key?: string, header?: string) => Client<typeof Realtime>> = {};

beforeAll(async () => {
  cluster = await startCluster(1, {
    REALTIME_API_KEYS: `${FULL}, ${OLD}\n${READER}:presence, ${WRITER}:publish`,
    REALTIME_MAX_PAYLOAD_BYTES: "4096",
  });
  const make = (kind: "grpc" | "connect") => (key?: string, header?: string) => {
    const baseUrl = kind === "grpc" ? `http://${cluster.grpc}` : `http://${cluster.http}`;
    const interceptors = [
      (next: (r: never) => Promise<never>) => async (req: { header: Headers }) => {
        if (header !== undefined) req.header.set("authorization", header);
        else if (key !== undefined) req.header.set("authorization", `Bearer ${key}`);
        return next(req as never);
      },
    ] as never;
    const transport =
      kind === "grpc"
        ? createGrpcTransport({ baseUrl, interceptors })
        : createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors });
    return createClient(Realtime, transport);
  };
  clients.grpc = make("grpc");
  clients.connect = make("connect");
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
});

async function code(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

for (const protocol of ["grpc", "connect"] as const) {
  describe(`API keys over ${protocol}`, () => {
    const rt = (key?: string, header?: string) => clients[protocol]!(key, header);
    const send = (c: Client<typeof Realtime>) => c.send({ channel: "keys", event: "e", payload: json(1) });

    it("refuses a missing, malformed or wrong key with UNAUTHENTICATED", async () => {
      expect(await code(send(rt()))).toBe(Code.Unauthenticated);
      expect(await code(send(rt(undefined, FULL)))).toBe(Code.Unauthenticated); // no "Bearer"
      expect(await code(send(rt(undefined, `Basic ${FULL}`)))).toBe(Code.Unauthenticated);
      expect(await code(send(rt("wrong-key-0123456789abcdef0123")))).toBe(Code.Unauthenticated);
      expect(await code(send(rt(FULL.slice(0, -1))))).toBe(Code.Unauthenticated); // a prefix of a key
      expect(await code(send(rt(`${FULL}x`)))).toBe(Code.Unauthenticated); // a key plus one character
      expect(await code(rt().getMembers({ channel: "keys" }))).toBe(Code.Unauthenticated);
      expect(await code(rt().listChannels({}))).toBe(Code.Unauthenticated);
    });

    it("accepts every configured key (rotation), with any case of Bearer", async () => {
      expect(await code(send(rt(FULL)))).toBe("ok");
      expect(await code(send(rt(OLD)))).toBe("ok");
      expect(await code(send(rt(undefined, `bearer ${OLD}`)))).toBe("ok");
    });

    it("limits a scoped key to its methods: PERMISSION_DENIED outside them", async () => {
      const reader = rt(READER);
      expect(await code(reader.getMembers({ channel: "keys" }))).toBe("ok");
      expect(await code(reader.presenceStats({ channel: "keys" }))).toBe("ok");
      expect(await code(reader.listChannels({}))).toBe("ok");
      expect(await code(reader.getHistory({ channel: "keys" }))).toBe("ok");
      // GetConnections is a read: past the key check, nobody of that name is NOT_FOUND.
      const nobody = { target: { case: "userId" as const, value: "keys-nobody" } };
      expect(await code(reader.getConnections({ target: nobody }))).toBe(Code.NotFound);
      expect(await code(send(reader))).toBe(Code.PermissionDenied);
      expect(await code(reader.broadcast({ event: "e", payload: json(1) }))).toBe(Code.PermissionDenied);
      expect(await code(reader.sendBatch({ requests: [{ channel: "keys", event: "e", payload: json(1) }] }))).toBe(
        Code.PermissionDenied,
      );
      const writer = rt(WRITER);
      expect(await code(send(writer))).toBe("ok");
      expect(await code(writer.sendBatch({ requests: [{ channel: "keys", event: "e", payload: json(1) }] }))).toBe(
        "ok",
      );
      expect(await code(writer.getMembers({ channel: "keys" }))).toBe(Code.PermissionDenied);
      expect(await code(writer.presenceStats({ channel: "keys" }))).toBe(Code.PermissionDenied);
      expect(await code(writer.getHistory({ channel: "keys" }))).toBe(Code.PermissionDenied);
      expect(await code(writer.getConnections({ target: nobody }))).toBe(Code.PermissionDenied);
      // WatchMessages is a read: past the key check, a bad prefix is INVALID_ARGUMENT.
      const first = async (stream: AsyncIterable<unknown>) => {
        for await (const _ of stream) return;
      };
      expect(await code(first(reader.watchMessages({ channelPrefix: "bad prefix" })))).toBe(Code.InvalidArgument);
      expect(await code(first(writer.watchMessages({})))).toBe(Code.PermissionDenied);
      // Refused before its request is read, every time (over Connect's HTTP/1.1 a reset connection was INTERNAL in about 1 in 4).
      const many = new Set<Code | "ok">();
      for (let i = 0; i < 40; i++) many.add(await code(first(writer.watchMessages({}))));
      expect(many).toEqual(new Set([Code.PermissionDenied]));
    });

    if (protocol === "grpc") {
      it("lets the publish scope open a Publish stream, and refuses it to others before reading a request", async () => {
        async function* one() {
          yield { event: { case: "send" as const, value: { channel: "keys", event: "e", payload: json(1) } } };
        }
        const publish = async (c: Client<typeof Realtime>) => {
          let handled = 0n;
          for await (const r of c.publish(one())) handled = r.handled;
          return handled;
        };
        expect(await publish(rt(WRITER))).toBe(1n);
        expect(await code(publish(rt(READER)))).toBe(Code.PermissionDenied);
        expect(await code(publish(rt()))).toBe(Code.Unauthenticated);
      });
    }

    it("checks the key before the request: an unauthenticated bad request is UNAUTHENTICATED, not INVALID_ARGUMENT", async () => {
      expect(await code(rt().send({ channel: "", event: "", payload: json(1) }))).toBe(Code.Unauthenticated);
    });

    it("answers a request larger than the limit with RESOURCE_EXHAUSTED", async () => {
      const big = {
        channel: "keys",
        event: "e",
        payload: { case: "binary" as const, value: new Uint8Array(64 * 1024) },
      };
      expect(await code(rt(FULL).send(big))).toBe(Code.ResourceExhausted);
    });

    it("honours the caller's deadline: a stream outliving it ends with DEADLINE_EXCEEDED", async () => {
      const started = Date.now();
      const watched = (async () => {
        for await (const _ of rt(FULL).watchChannel({ channel: "keys" }, { timeoutMs: 300 }));
      })();
      expect(await code(watched)).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(3_000);
    });
  });
}

it("leaves health open to load balancers without a key", async () => {
  const health = createClient(Health, createGrpcTransport({ baseUrl: `http://${cluster.grpc}` }));
  expect((await health.check({ service: "" })).status).toBe(1); // SERVING
});

describe("secure by default", () => {
  it("without keys, refuses to listen beyond loopback and says how to fix it", async () => {
    await expect(
      startProcess("api", {
        REALTIME_GRPC_HOST: "0.0.0.0",
        REALTIME_GRPC_PORT: "0",
        REALTIME_LINK_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_API_KEYS: "",
      }),
    ).rejects.toThrow(/refusing to listen on 0\.0\.0\.0 without authentication: set REALTIME_API_KEYS/);
  }, 30_000);

  it("without keys on loopback, starts and says that every call is allowed", async () => {
    const api = await startProcess("api", {
      REALTIME_GRPC_PORT: "0",
      REALTIME_LINK_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_API_KEYS: "",
    });
    try {
      expect(api.stderr()).toMatch(/no API keys configured.*loopback only/);
      const rt = createClient(Realtime, createGrpcTransport({ baseUrl: `http://${api.ready.grpc}` }));
      expect(await code(rt.getMembers({ channel: "open" }))).toBe("ok");
    } finally {
      await api.stop();
    }
  }, 30_000);

  it("with REALTIME_INSECURE=true, listens beyond loopback without keys, loudly", async () => {
    const api = await startProcess("api", {
      REALTIME_GRPC_HOST: "0.0.0.0",
      REALTIME_GRPC_PORT: "0",
      REALTIME_LINK_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_API_KEYS: "",
      REALTIME_INSECURE: "true",
    });
    try {
      expect(api.stderr()).toMatch(/WITHOUT API keys/);
    } finally {
      await api.stop();
    }
  }, 30_000);

  it("refuses a malformed key list at start, naming the variable", async () => {
    await expect(
      startProcess("api", {
        REALTIME_GRPC_PORT: "0",
        REALTIME_LINK_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_API_KEYS: "short",
      }),
    ).rejects.toThrow(/REALTIME_API_KEYS.*16 to 256 characters/);
    await expect(
      startProcess("api", {
        REALTIME_GRPC_PORT: "0",
        REALTIME_LINK_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_API_KEYS: `${FULL}:publsh`,
      }),
    ).rejects.toThrow(/REALTIME_API_KEYS.*scope 1 after the colon is unknown/);
  }, 30_000);
});
