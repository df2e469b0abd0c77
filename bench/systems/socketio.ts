/**
 * Adapter for Socket.IO (socketio-server.ts): socket.io-client 4.8 with the
 * websocket transport only and no reconnection, so a dropped connection is
 * counted instead of silently replaced.
 */
import { fileURLToPath } from "node:url";
import { io, type Socket } from "socket.io-client";
import type { BenchPayload, ClientConnection, Publisher, SystemAdapter } from "./system.js";

const SERVER_SCRIPT = fileURLToPath(new URL("./socketio-server.ts", import.meta.url));
/** How long an acknowledgement may take before the call counts as failed. */
const ACK_TIMEOUT_MS = 30_000;

function open(url: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], reconnection: false, forceNew: true, timeout: ACK_TIMEOUT_MS });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
}

/** Emits with an acknowledgement; rejects on timeout or disconnect. */
function call<T>(socket: Socket, event: string, ...args: unknown[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    socket
      .timeout(ACK_TIMEOUT_MS)
      .emit(event, ...args, (err: Error | null, result: T) => (err ? reject(err) : resolve(result)));
  });
}

export const socketIoSystem: SystemAdapter = {
  name: "socketio",
  description: "Socket.IO 4.8, rooms + io.to(room).emit, websocket transport only",

  async start(ctx) {
    const proc = await ctx.spawn({
      name: "socketio-server",
      args: ["--import", "tsx", SERVER_SCRIPT],
      cwd: ctx.repoRoot,
      ipc: true,
      ready: (l) => l.ready === "socketio",
    });
    const url = String(proc.readyLine!.ws);
    return { clientUrls: [url], publishUrl: url, processes: [proc] };
  },

  async connect(url, onDelivery, onClose): Promise<ClientConnection> {
    const socket = await open(url);
    let closing = false;
    socket.on("m", (d: BenchPayload) => onDelivery(d.t, d.k));
    socket.on("disconnect", (reason) => {
      if (!closing) onClose(reason);
    });
    return {
      join: (channel) => call<void>(socket, "join", channel),
      close() {
        closing = true;
        socket.close();
      },
    };
  },

  async createPublisher(url): Promise<Publisher> {
    const socket = await open(url);
    return {
      publish: (channel, d) => call<void>(socket, "pub", channel, d),
      broadcast: (d) => call<void>(socket, "all", d),
      members: (channel) => call<number>(socket, "members", channel),
      async close() {
        socket.close();
      },
    };
  },
};
