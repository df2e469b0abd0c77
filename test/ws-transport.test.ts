/**
 * What the edge's ws transport relies on when it writes its prebuilt frames
 * to the socket beside ws (src/edge/ws-frames.ts): the socket the upgrade
 * hands to ws (WebSocketServer.handleUpgrade) is the one ws writes to, ws
 * writes synchronously with permessage-deflate off, so frames written by
 * writeFrame and ws's own (data, pings, the close) reach the client in the
 * order they were made, and what writeFrame queues counts in ws's
 * bufferedAmount (the outbound bound of the connection policy reads it).
 * Against this ws, on port 0.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { writeFrame } from "../src/edge/ws-frames.js";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

/** A ws server that hands each connection and its upgrade socket to onConnection. */
async function listen(onConnection: (ws: WebSocket, socket: Duplex) => void): Promise<string> {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false });
  server = createServer();
  server.on("upgrade", (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, socket)));
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Everything the client sees, in order, until the close. */
function record(url: string): Promise<string[]> {
  const seen: string[] = [];
  const ws = new WebSocket(url);
  ws.on("message", (data: Buffer, isBinary) => seen.push(isBinary ? `binary ${data.length}` : `text ${data}`));
  ws.on("ping", (data: Buffer) => seen.push(`ping ${data}`));
  return new Promise((resolve) =>
    ws.on("close", (code, reason) => {
      seen.push(`close ${code} ${reason}`);
      resolve(seen);
    }),
  );
}

it("frames written to the upgrade's socket and ws's own frames reach the client in the order they were made", async () => {
  const url = await listen((ws, socket) => {
    writeFrame(socket, Buffer.from("a"), true);
    ws.ping("p1");
    writeFrame(socket, new Uint8Array(2), false);
    ws.send("b");
    writeFrame(socket, new Uint8Array(70_000), false);
    ws.ping("p2");
    writeFrame(socket, Buffer.from("c"), true);
    ws.close(4000, "bye");
  });
  expect(await record(url)).toEqual([
    "text a",
    "ping p1",
    "binary 2",
    "text b",
    "binary 70000",
    "ping p2",
    "text c",
    "close 4000 bye",
  ]);
});

it("what writeFrame queues counts in ws's bufferedAmount until it leaves", async () => {
  let during = -1;
  let after = -1;
  const url = await listen((ws, socket) => {
    const before = ws.bufferedAmount;
    writeFrame(socket, new Uint8Array(1_000), false);
    // Corked until the end of this turn of the event loop: header (4 bytes) and payload wait.
    during = ws.bufferedAmount - before;
    setTimeout(() => {
      after = ws.bufferedAmount;
      ws.close(1000);
    }, 50);
  });
  await record(url);
  expect(during).toBe(1_004);
  expect(after).toBe(0);
});
