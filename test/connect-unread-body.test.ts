/**
 * The HTTP port after an answer decided before the request body was read to
 * its end (connect-node refuses a body over readMaxBytes at once): the
 * answer says `connection: close`, set with res.setHeader before its head is
 * written (no patched writeHead), and the connection ends, so a client never
 * waits on it for its next call; a call whose body was read keeps its
 * connection alive. Raw HTTP/1.1 on one socket, so that what the server says
 * and does with the connection is seen as is.
 */
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { createConnectHandler } from "../src/api/connect/adapter.js";
import { serviceEntry } from "../src/api/service-entry.js";

const READ_MAX_BYTES = 1000;
let server: Server;
let port: number;

beforeAll(async () => {
  const handler = createConnectHandler([serviceEntry(Realtime, { send: () => ({ messageId: "m", edges: 1 }) })], {
    readMaxBytes: READ_MAX_BYTES,
  });
  server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** A Send request in Connect JSON whose body is about `size` bytes. */
function send(size: number): string {
  const body = JSON.stringify({ channel: "c", event: "e", json: "x".repeat(size) });
  return (
    "POST /realtime.v1.Realtime/Send HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n" +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** One socket: what it received, and whether the server ended it. */
function open(): { socket: Socket; received: () => string; ended: Promise<void> } {
  const socket = connect(port, "127.0.0.1");
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString()));
  const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { socket, received: () => received, ended };
}

/** The status line and the connection header of each response in `raw`. */
function responses(raw: string): { status: string; connection: string | undefined }[] {
  return [...raw.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n((?:[^\r]+\r\n)*)\r\n/g)].map((m) => ({
    status: m[1]!,
    connection: /^connection: *(.*)$/im.exec(m[2]!)?.[1]?.toLowerCase(),
  }));
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("an HTTP/1.1 request body left unread", () => {
  it("is answered with connection: close, and the server ends the connection", async () => {
    const c = open();
    c.socket.write(send(5 * READ_MAX_BYTES));
    await c.ended;
    expect(responses(c.received())).toEqual([{ status: "429", connection: "close" }]);
  });

  it("is not the case of a body read to its end: the connection stays open for the next call", async () => {
    const c = open();
    c.socket.write(send(10));
    await until(() => responses(c.received()).length === 1);
    c.socket.write(send(10));
    await until(() => responses(c.received()).length === 2);
    expect(responses(c.received())).toEqual([
      { status: "200", connection: "keep-alive" },
      { status: "200", connection: "keep-alive" },
    ]);
    c.socket.destroy();
  });
});
