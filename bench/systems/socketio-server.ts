/**
 * Socket.IO 4.8 as an application would use it: rooms, `io.to(room).emit`
 * (the packet is encoded once per broadcast by the in-memory adapter), the
 * websocket transport only, no compression.
 *
 * Events (all acknowledged with a callback):
 *   client    "join"    (room)          → socket.join(room)
 *   publisher "pub"     (room, payload) → io.to(room).emit("m", payload)
 *   publisher "all"     (payload)       → socket.broadcast.emit("m", payload)
 *   publisher "members" (room)          → (await io.in(room).fetchSockets()).length
 *
 * Prints {"ready":"socketio","ws":"http://127.0.0.1:PORT"} when listening.
 * Exits when its IPC channel to the coordinator closes.
 */
import { createServer } from "node:http";
import { Server } from "socket.io";

/** Listen backlog: a burst of thousands of connects must not overflow it. */
const LISTEN_BACKLOG = 4096;

const http = createServer();
const io = new Server(http, { transports: ["websocket"], serveClient: false, perMessageDeflate: false });

io.on("connection", (socket) => {
  socket.on("join", (room: string, ack: () => void) => {
    void socket.join(room);
    ack();
  });
  socket.on("pub", (room: string, payload: unknown, ack: () => void) => {
    io.to(room).emit("m", payload);
    ack();
  });
  socket.on("all", (payload: unknown, ack: () => void) => {
    socket.broadcast.emit("m", payload);
    ack();
  });
  socket.on("members", async (room: string, ack: (n: number) => void) => {
    ack((await io.in(room).fetchSockets()).length);
  });
});

http.listen({ host: "127.0.0.1", port: 0, backlog: LISTEN_BACKLOG }, () => {
  const { port } = http.address() as { port: number };
  process.stdout.write(JSON.stringify({ ready: "socketio", ws: `http://127.0.0.1:${port}` }) + "\n");
});

process.on("disconnect", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
