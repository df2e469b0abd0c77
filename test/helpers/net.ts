/**
 * Ports and probes for tests, without dependencies (the global setup, in
 * vitest's own process, uses them too).
 */
import { createServer, Socket } from "node:net";

/** A free TCP port on 127.0.0.1 (free when checked). */
export function freePort(): Promise<number> {
  const server = createServer();
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether the Redis at url answers PING within timeoutMs (any reply counts: one that wants a password is there too). */
export function answersPing(url: string, timeoutMs = 2_000): Promise<boolean> {
  let host: string;
  let port: number;
  try {
    const u = new URL(url);
    host = u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
    port = Number(u.port) || 6379;
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("error", () => done(false));
    socket.once("data", (d: Buffer) => done(/^[+-]/.test(d.toString())));
    socket.connect(port, host, () => socket.write("PING\r\n"));
  });
}
