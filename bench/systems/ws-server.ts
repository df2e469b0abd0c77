/**
 * The baseline: the least a WebSocket fan-out server can do with `ws`.
 * Membership is a Map<channel, Set<socket>>; each published message is
 * serialised and framed ONCE into a single Buffer, which is then written to
 * every member's TCP socket as is (no per-recipient JSON, no per-recipient
 * frame header, no copy of the payload).
 *
 * Protocol (JSON text frames):
 *   client    → {"id":n,"join":"chan"}                  ← {"id":n}
 *   publisher → {"id":n,"pub":"chan","d":{...}}         ← {"id":n,"n":recipients}
 *   publisher → {"id":n,"all":1,"d":{...}}              ← {"id":n,"n":recipients}
 *   members receive {"c":"chan","d":{...}} (c is "" for a broadcast)
 *
 * Prints {"ready":"ws","ws":"ws://127.0.0.1:PORT"} on stdout when listening.
 * Exits when its IPC channel to the coordinator closes.
 */
import type { Socket } from "node:net";
import { WebSocketServer, WebSocket } from "ws";

/** Listen backlog: a burst of thousands of connects must not overflow it. */
const LISTEN_BACKLOG = 4096;

/** An unmasked, final text frame (RFC 6455 §5.2) around payload. */
function textFrame(payload: Buffer): Buffer {
  const len = payload.length;
  const headerLength = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerLength + len);
  frame[0] = 0x81; // FIN + opcode 1 (text)
  if (len < 126) {
    frame[1] = len;
  } else if (len < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  payload.copy(frame, headerLength);
  return frame;
}

/**
 * Writes a prebuilt frame to ws's underlying socket. Safe here because the
 * server never compresses and never has another frame of this socket in
 * flight (ws.send writes synchronously when permessage-deflate is off).
 */
function writeFrame(ws: WebSocket, frame: Buffer): boolean {
  if (ws.readyState !== WebSocket.OPEN) return false;
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (socket && !socket.destroyed) socket.write(frame);
  else ws.send(frame.subarray(frame[1]! < 126 ? 2 : frame[1] === 126 ? 4 : 10), { binary: false });
  return true;
}

const channels = new Map<string, Set<WebSocket>>();
const everyone = new Set<WebSocket>();

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, backlog: LISTEN_BACKLOG, perMessageDeflate: false });

wss.on("connection", (ws) => {
  everyone.add(ws);
  const joined: string[] = [];
  ws.on("error", () => {});
  ws.on("close", () => {
    everyone.delete(ws);
    for (const c of joined) {
      const set = channels.get(c);
      set?.delete(ws);
      if (set?.size === 0) channels.delete(c);
    }
  });
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as { id?: number; join?: string; pub?: string; all?: number; d?: unknown };
    if (m.join !== undefined) {
      let set = channels.get(m.join);
      if (!set) channels.set(m.join, (set = new Set()));
      if (!set.has(ws)) {
        set.add(ws);
        joined.push(m.join);
      }
      ws.send(`{"id":${m.id}}`);
      return;
    }
    const frame = textFrame(Buffer.from(JSON.stringify({ c: m.pub ?? "", d: m.d })));
    let n = 0;
    if (m.all) {
      for (const s of everyone) if (s !== ws && writeFrame(s, frame)) n++;
    } else {
      const set = channels.get(m.pub!);
      if (set) for (const s of set) if (writeFrame(s, frame)) n++;
    }
    ws.send(`{"id":${m.id},"n":${n}}`);
  });
});

wss.on("listening", () => {
  const { port } = wss.address() as { port: number };
  process.stdout.write(JSON.stringify({ ready: "ws", ws: `ws://127.0.0.1:${port}` }) + "\n");
});

process.on("disconnect", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
