/**
 * Raw RPC calls for tests that send bytes no generated client would: the
 * same request body over gRPC (grpc-js with identity serializers), Connect
 * unary and streaming, and gRPC-Web (fetch), each answering with the gRPC
 * status code and message the server sent.
 */
import * as grpc from "@grpc/grpc-js";
import { connect as http2Connect } from "node:http2";
import { Code } from "@connectrpc/connect";

export interface RawStatus {
  /** The status code, as a Code name ("InvalidArgument"). */
  code: string;
  message: string;
  /** The response messages before the status, undecoded. */
  messages: Uint8Array[];
  /** For HTTP protocols: the HTTP status. */
  http?: number;
}

/** A gRPC/Connect/gRPC-Web envelope: flags, 4-byte big-endian length, data. */
export function envelope(data: Uint8Array, flags = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/** Splits a body into its envelopes. */
export function envelopes(body: Uint8Array): { flags: number; data: Uint8Array }[] {
  const out: { flags: number; data: Uint8Array }[] = [];
  let pos = 0;
  while (pos + 5 <= body.length) {
    const len = new DataView(body.buffer, body.byteOffset + pos + 1, 4).getUint32(0);
    out.push({ flags: body[pos]!, data: body.subarray(pos + 5, pos + 5 + len) });
    pos += 5 + len;
  }
  return out;
}

const codeName = (n: number) => (n === 0 ? "Ok" : (Code[n] ?? `code ${n}`));
const CONNECT_CODES: Record<string, number> = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k.replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase()), v as number]),
);

const identity = (b: Buffer) => b;

interface RawResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/**
 * POSTs body to baseUrl + path: with fetch (HTTP/1.1), or over HTTP/2 with
 * prior knowledge when baseUrl starts with "h2c://" (fetch speaks no h2c).
 */
async function post(
  baseUrl: string,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
): Promise<RawResponse> {
  if (!baseUrl.startsWith("h2c://")) {
    const res = await fetch(baseUrl + path, { method: "POST", headers, body: new Uint8Array(body) });
    return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()) };
  }
  const session = http2Connect(baseUrl.replace(/^h2c:/, "http:"));
  try {
    return await new Promise<RawResponse>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({ ":method": "POST", ":path": path, ...headers });
      const chunks: Buffer[] = [];
      const out = new Headers();
      let status = 0;
      req.on("response", (h) => {
        status = Number(h[":status"]);
        for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) out.set(k, String(v));
      });
      req.on("trailers", (h) => {
        for (const [k, v] of Object.entries(h)) if (v !== undefined) out.set(k, String(v));
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status, headers: out, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

/** gRPC: one request message (raw bytes) on `path`, unary or server streaming; or several on a bidi/client stream. */
export async function grpcRaw(
  address: string,
  path: string,
  kind: "unary" | "server" | "bidi",
  requests: Uint8Array[],
): Promise<RawStatus> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<RawStatus>((resolve) => {
      const messages: Uint8Array[] = [];
      const onStatus = (s: grpc.StatusObject) => resolve({ code: codeName(s.code), message: s.details, messages });
      if (kind === "unary") {
        const call = client.makeUnaryRequest(path, identity, identity, Buffer.from(requests[0]!), (err, res) => {
          if (res) messages.push(res);
          void err;
        });
        call.on("status", onStatus);
        return;
      }
      const call =
        kind === "server"
          ? client.makeServerStreamRequest(path, identity, identity, Buffer.from(requests[0]!))
          : client.makeBidiStreamRequest(path, identity, identity);
      call.on("data", (m: Buffer) => messages.push(m));
      call.on("error", () => {});
      call.on("status", onStatus);
      if (kind === "bidi") {
        const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
        for (const r of requests) duplex.write(Buffer.from(r));
        duplex.end();
      }
    });
  } finally {
    client.close();
  }
}

/** Connect unary, binary: the body is the message. */
export async function connectUnaryRaw(baseUrl: string, path: string, body: Uint8Array): Promise<RawStatus> {
  const res = await post(baseUrl, path, { "content-type": "application/proto", "connect-protocol-version": "1" }, body);
  const bytes = res.body;
  if (res.status === 200) return { code: "Ok", message: "", messages: [bytes], http: res.status };
  const err = JSON.parse(new TextDecoder().decode(bytes)) as { code: string; message?: string };
  return { code: codeName(CONNECT_CODES[err.code] ?? -1), message: err.message ?? "", messages: [], http: res.status };
}

/** POSTs enveloped requests; the response's messages, and its envelope with `endFlag` (the status) if any. */
async function postEnvelopes(
  baseUrl: string,
  path: string,
  headers: Record<string, string>,
  requests: Uint8Array[],
  endFlag: number,
) {
  const res = await post(baseUrl, path, headers, concat(requests.map((r) => envelope(r))));
  const all = envelopes(res.body);
  const end = all.find((e) => e.flags & endFlag);
  const messages = all.filter((e) => !(e.flags & endFlag)).map((e) => e.data);
  return { res, end, messages };
}

/** Connect streaming, binary: the body is enveloped messages; the status is the end-stream message. */
export async function connectStreamRaw(baseUrl: string, path: string, requests: Uint8Array[]): Promise<RawStatus> {
  const connect = { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
  const { res, end, messages } = await postEnvelopes(baseUrl, path, connect, requests, 2);
  if (!end) return { code: `no end-stream message (HTTP ${res.status})`, message: "", messages, http: res.status };
  const { error } = JSON.parse(new TextDecoder().decode(end.data)) as { error?: { code: string; message?: string } };
  if (!error) return { code: "Ok", message: "", messages, http: res.status };
  return { code: codeName(CONNECT_CODES[error.code] ?? -1), message: error.message ?? "", messages, http: res.status };
}

/** gRPC-Web, binary: enveloped messages; the status in the trailer envelope (or the headers, trailers-only). */
export async function grpcWebRaw(baseUrl: string, path: string, requests: Uint8Array[]): Promise<RawStatus> {
  const web = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  const { res, end: trailer, messages } = await postEnvelopes(baseUrl, path, web, requests, 0x80);
  const fields = new Map<string, string>();
  if (trailer) {
    for (const line of new TextDecoder().decode(trailer.data).split("\r\n")) {
      const i = line.indexOf(":");
      if (i > 0) fields.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
  } else {
    res.headers.forEach((v, k) => fields.set(k, v));
  }
  const status = fields.get("grpc-status");
  if (status === undefined) return { code: `no grpc-status (HTTP ${res.status})`, message: "", messages };
  return {
    code: codeName(Number(status)),
    message: decodeURIComponent(fields.get("grpc-message") ?? ""),
    messages,
    http: res.status,
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
