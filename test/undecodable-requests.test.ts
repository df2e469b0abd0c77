/**
 * A request that is not valid protobuf is the caller's fault on every port:
 * INVALID_ARGUMENT with a message naming the message type, counted as
 * INVALID_ARGUMENT in the RPC metrics (never INTERNAL, which the shipped
 * error-rate alert watches), whatever the protocol: gRPC, Connect binary
 * (unary and streaming) and gRPC-Web.
 */
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { useCluster } from "./helpers/fixture.js";
import { scrape, type Samples } from "./helpers/prom.js";
import { connectStreamRaw, connectUnaryRaw, envelope, grpcRaw, grpcWebRaw, type RawStatus } from "./helpers/raw-rpc.js";

const f = useCluster(0);

/** Bytes that are no protobuf message: field 1, length 127, one byte of data. */
const TRUNCATED = Uint8Array.of(0x0a, 0x7f, 0x61);
/** GetMembersRequest { channel: "c" } */
const GET_MEMBERS = Uint8Array.of(0x0a, 0x01, 0x63);
/** Field 1 with wire type 7, which does not exist. */
const BAD_WIRE_TYPE = Uint8Array.of(0x0f, 0x01);

const count = (s: Samples, labels: Record<string, string>) => {
  try {
    return s.get("switchboard_rpc_handled_total", labels);
  } catch {
    return 0;
  }
};

type Protocol = "grpc" | "connect" | "grpc-web";
const PROTOCOLS: Protocol[] = ["grpc", "connect", "grpc-web"];

function call(protocol: Protocol, method: string, kind: "unary" | "server", body: Uint8Array): Promise<RawStatus> {
  const path = `/realtime.v1.Realtime/${method}`;
  const http = `http://${f.cluster.http}`;
  if (protocol === "grpc") return grpcRaw(f.cluster.grpc, path, kind, [body]);
  if (protocol === "grpc-web") return grpcWebRaw(http, path, [body]);
  return kind === "unary" ? connectUnaryRaw(http, path, body) : connectStreamRaw(http, path, [body]);
}

const CASES = [
  { method: "Send", kind: "unary", type: "realtime.v1.SendRequest" },
  { method: "GetMembers", kind: "unary", type: "realtime.v1.GetMembersRequest" },
  { method: "WatchChannel", kind: "server", type: "realtime.v1.WatchChannelRequest" },
] as const;

describe("undecodable requests", () => {
  for (const c of CASES) {
    for (const [name, bytes] of [
      ["truncated", TRUNCATED],
      ["bad wire type", BAD_WIRE_TYPE],
    ] as const) {
      it(`${c.method} (${c.kind}), ${name}: INVALID_ARGUMENT naming ${c.type} on every protocol, counted as such`, async () => {
        const metrics = `http://${f.cluster.http}/metrics`;
        const labels = { service: "realtime.v1.Realtime", method: c.method };
        const outcomes = [];
        for (const protocol of PROTOCOLS) {
          const before = await scrape(metrics);
          const status = await call(protocol, c.method, c.kind, bytes);
          const after = await scrape(metrics);
          const delta = (code: string) => count(after, { ...labels, code }) - count(before, { ...labels, code });
          outcomes.push({
            protocol,
            code: status.code,
            message: status.message,
            ...(protocol === "connect" && c.kind === "unary" ? { http: status.http } : {}),
            counted: { INVALID_ARGUMENT: delta("INVALID_ARGUMENT"), INTERNAL: delta("INTERNAL") },
          });
        }
        const message = expect.stringMatching(
          new RegExp(`^the request is not a valid ${c.type.replace(/\./g, "\\.")} message: `),
        );
        expect(outcomes).toEqual(
          PROTOCOLS.map((protocol) => ({
            protocol,
            code: "InvalidArgument",
            message,
            ...(protocol === "connect" && c.kind === "unary" ? { http: 400 } : {}),
            counted: { INVALID_ARGUMENT: 1, INTERNAL: 0 },
          })),
        );
      });
    }
  }

  it("compressed requests are judged after decompression: good ones are served, bad ones INVALID_ARGUMENT", async () => {
    const url = (m: string) => `http://${f.cluster.http}/realtime.v1.Realtime/${m}`;
    const unary = (body: Uint8Array) =>
      fetch(url("GetMembers"), {
        method: "POST",
        headers: { "content-type": "application/proto", "content-encoding": "gzip" },
        body: gzipSync(body),
      });
    expect((await unary(GET_MEMBERS)).status).toBe(200);
    const bad = await unary(TRUNCATED);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/not a valid realtime\.v1\.GetMembersRequest/);
    // gRPC-Web: the envelope's compressed flag, with grpc-encoding.
    const web = (body: Uint8Array) =>
      fetch(url("GetMembers"), {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "grpc-encoding": "gzip" },
        body: envelope(gzipSync(body), 1),
      }).then(async (res) => new TextDecoder().decode(await res.arrayBuffer()));
    expect(await web(GET_MEMBERS)).toMatch(/grpc-status: ?0/);
    const trailer = await web(TRUNCATED);
    expect(trailer).toMatch(/grpc-status: ?3\r\n/);
    expect(trailer).toMatch(/grpc-message: the%20request%20is%20not%20a%20valid/);
  });

  it("the server keeps answering good requests on every protocol afterwards", async () => {
    const ok = await call("connect", "GetMembers", "unary", GET_MEMBERS);
    expect(ok.code).toBe("Ok");
    expect((await call("grpc-web", "GetMembers", "unary", GET_MEMBERS)).code).toBe("Ok");
    expect((await call("grpc", "GetMembers", "unary", GET_MEMBERS)).code).toBe("Ok");
  });
});
