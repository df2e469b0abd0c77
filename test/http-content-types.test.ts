/**
 * What the HTTP port does with each content type on an RPC path: the types
 * connect-node serves reach it; every other one gets HTTP 415 with a body
 * that says what to send instead, never an empty 415. gRPC-Web text
 * (application/grpc-web-text) and JSON in a charset other than UTF-8 are
 * refused that way, by name (docs/reach.md); so is a bidi call over
 * HTTP/1.1, with 505.
 */
import { describe, expect, it } from "vitest";
import { useCluster } from "./helpers/fixture.js";
import { envelope } from "./helpers/raw-rpc.js";

const f = useCluster(0);

/** GetMembersRequest { channel: "c" } */
const GET_MEMBERS = Uint8Array.of(0x0a, 0x01, 0x63);

const post = (method: string, contentType: string, body: BodyInit) =>
  fetch(`http://${f.cluster.http}/realtime.v1.Realtime/${method}`, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });

async function refusal(res: Response): Promise<string> {
  expect(res.status).toBe(415);
  const text = await res.text();
  expect(text, "a 415 says why").not.toBe("");
  return (JSON.parse(text) as { message: string }).message;
}

describe("content types on the HTTP port", () => {
  it("application/grpc-web-text is refused with 415 and a message that names the binary gRPC-Web type", async () => {
    const body = Buffer.from(envelope(GET_MEMBERS)).toString("base64");
    for (const type of ["application/grpc-web-text", "application/grpc-web-text+proto"]) {
      const message = await refusal(await post("GetMembers", type, body));
      expect(message).toMatch(/grpc-web-text(\+proto)?" is not served: .* binary only/);
      expect(message).toMatch(/application\/grpc-web\+proto/);
    }
  });

  it("JSON in UTF-16 (or any charset but UTF-8) is refused with 415 and a message that says to send UTF-8", async () => {
    const utf16 = Buffer.from('\ufeff{"channel":"c"}', "utf16le");
    for (const type of [
      "application/json; charset=utf-16",
      "application/json;charset=UTF-16LE",
      'application/json; charset="iso-8859-1"',
      "application/connect+json; charset=utf-16",
      "application/grpc-web+json; charset=utf-16",
    ]) {
      const message = await refusal(await post("GetMembers", type, utf16));
      expect(message, type).toMatch(/must be UTF-8/);
    }
  });

  it("a Connect unary type on a streaming method, and a streaming type on a unary one, say which to use", async () => {
    const watch = await refusal(await post("WatchChannel", "application/json", '{"channel":"c"}'));
    expect(watch).toMatch(/WatchChannel is a server-streaming method: .*application\/connect\+json/);
    const unary = await refusal(await post("GetMembers", "application/connect+json", '{"channel":"c"}'));
    expect(unary).toMatch(/GetMembers is a unary method: .*application\/json/);
  });

  it("Publish (bidi) over HTTP/1.1 gets 505 with a body that says to call it on the gRPC port", async () => {
    const res = await post("Publish", "application/connect+proto", envelope(new Uint8Array(0)));
    expect(res.status).toBe(505);
    const { message } = (await res.json()) as { message: string };
    expect(message).toMatch(/Publish is a bidi-streaming method, which needs HTTP\/2 .*call it on the gRPC port/);
  });

  it("every type connect-node serves reaches it (no 415), in the forms connect-node accepts", async () => {
    const cases: [string, string, BodyInit][] = [
      ["GetMembers", "application/json", '{"channel":"c"}'],
      ["GetMembers", "application/json; charset=utf-8", '{"channel":"c"}'],
      ["GetMembers", "application/json;charset=UTF8", '{"channel":"c"}'],
      ["GetMembers", "application/proto", GET_MEMBERS],
      ["GetMembers", "application/grpc-web", envelope(GET_MEMBERS)],
      ["GetMembers", "application/grpc-web+proto", envelope(GET_MEMBERS)],
      ["GetMembers", "application/grpc-web+json", envelope(new TextEncoder().encode('{"channel":"c"}'))],
      ["WatchChannel", "application/connect+proto", envelope(GET_MEMBERS)],
      [
        "WatchChannel",
        "application/connect+json; charset=utf-8",
        envelope(new TextEncoder().encode('{"channel":"c"}')),
      ],
    ];
    for (const [method, type, body] of cases) {
      const ac = new AbortController();
      const res = await fetch(`http://${f.cluster.http}/realtime.v1.Realtime/${method}`, {
        method: "POST",
        headers: { "content-type": type },
        body,
        signal: ac.signal,
      });
      expect({ type, status: res.status }).toEqual({ type, status: 200 });
      ac.abort();
    }
  });

  it("anything else is 415 with the list of accepted types, never an empty body", async () => {
    for (const type of ["text/plain", "", "application/proto; charset=utf-8", "application/json ; charset=utf-8"]) {
      const message = await refusal(await post("GetMembers", type, '{"channel":"c"}'));
      expect(message, type).toMatch(/use application\/json or application\/proto/);
    }
  });
});
