/**
 * A WebSocket client by hand over node:net, for tests that must send what no
 * library sends: fragments, bad opcodes, invalid UTF-8, one frame in many
 * TCP writes, frames after a close. It parses the edge's frames just enough
 * to see pings (and answer them) and the close frame.
 */
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

export const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;

/** One client frame (masked with the all-zero key, which RFC 6455 allows: the payload goes as is). */
export function clientFrame(opcode: number, payload: Uint8Array = new Uint8Array(0), fin = true): Buffer {
  return Buffer.concat([clientFrameHeader(opcode, payload.length, fin), payload]);
}

/** The header (with its zero mask) of a client frame whose payload of len bytes follows separately. */
export function clientFrameHeader(opcode: number, len: number, fin = true): Buffer {
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.alloc(head + 4);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  return out;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends raw HTTP/1.1 request text to host:port and resolves with the response (read until the server closes). */
export function rawHttp(hostPort: string, request: string): Promise<RawResponse> {
  const { host, port } = split(hostPort);
  return new Promise((resolve, reject) => {
    const socket = connect(port, host);
    let data = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => (data = Buffer.concat([data, d])));
    socket.on("error", reject);
    socket.on("close", () => resolve(parseResponse(data.toString("latin1"))));
    socket.write(request);
  });
}

function parseResponse(text: string): RawResponse {
  const end = text.indexOf("\r\n\r\n");
  const [statusLine, ...lines] = text.slice(0, end < 0 ? text.length : end).split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0),
    headers,
    body: end < 0 ? "" : text.slice(end + 4),
  };
}

/** An upgrade request's text for url (ws://host:port/path?query), with extra headers (Host may be overridden). */
export function upgradeRequest(
  url: string,
  headers: Record<string, string> = {},
  protocol = "realtime.v1.json",
): string {
  const u = new URL(url);
  const all: Record<string, string> = {
    Host: u.host,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
    "Sec-WebSocket-Version": "13",
    ...(protocol ? { "Sec-WebSocket-Protocol": protocol } : {}),
    ...headers,
  };
  const lines = Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`);
  return `GET ${u.pathname}${u.search} HTTP/1.1\r\n${lines.join("")}\r\n`;
}

/**
 * A connection made by hand. `closeCode` is the code of the edge's close
 * frame once one arrived; `ended` resolves when the TCP connection is gone
 * (with whether it was reset or destroyed rather than ended).
 */
export class RawClient {
  closeCode: number | undefined;
  /** When the edge's close frame arrived (performance.now()). */
  closeAt: number | undefined;
  /** When the socket was gone. */
  endAt: number | undefined;
  readonly ended: Promise<void>;
  /** Bytes of the edge's frames received (the connected frame included). */
  received = 0;
  private buffered: Buffer = Buffer.alloc(0);
  private closeWaiters: (() => void)[] = [];

  private constructor(
    readonly socket: Socket,
    rest: Buffer,
    /** Answer the edge's pings (as browsers do). */
    private readonly answerPings: boolean,
  ) {
    this.ended = new Promise((resolve) =>
      socket.once("close", () => {
        this.endAt = performance.now();
        resolve();
      }),
    );
    socket.on("error", () => {});
    socket.on("data", (d: Buffer) => this.onData(d));
    if (rest.length > 0) this.onData(rest);
  }

  /** Opens a WebSocket to url by hand; rejects unless the edge answers 101. */
  static open(
    url: string,
    options: {
      headers?: Record<string, string>;
      protocol?: string;
      /** Answer the edge's pings. Default: true. */
      answerPings?: boolean;
      /** Keep writing after the edge ended its side (a hostile client ignores the FIN too). Default: false. */
      halfOpen?: boolean;
    } = {},
  ): Promise<RawClient> {
    const { host, port } = split(new URL(url).host);
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host, allowHalfOpen: options.halfOpen ?? false });
      socket.setNoDelay(true);
      let head = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onData);
        socket.off("error", reject);
        const response = parseResponse(head.subarray(0, end + 4).toString("latin1"));
        if (response.status !== 101) {
          socket.destroy();
          reject(new Error(`upgrade answered ${response.status}: ${head.subarray(end + 4).toString()}`));
          return;
        }
        resolve(new RawClient(socket, head.subarray(end + 4), options.answerPings ?? true));
      };
      socket.on("data", onData);
      socket.on("error", reject);
      socket.write(upgradeRequest(url, options.headers, options.protocol ?? "realtime.v1.json"));
    });
  }

  /** Writes bytes; resolves once they are handed to the kernel (or the socket is gone). */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      if (this.socket.write(bytes)) resolve();
      else {
        const done = () => {
          this.socket.off("close", done);
          this.socket.off("drain", done);
          resolve();
        };
        this.socket.once("drain", done);
        this.socket.once("close", done);
      }
    });
  }

  /** Resolves once the edge's close frame arrived (or the socket is gone). */
  closeFrame(): Promise<void> {
    if (this.closeCode !== undefined || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.closeWaiters.push(resolve);
      this.socket.once("close", () => resolve());
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.received += d.length;
    this.buffered = this.buffered.length === 0 ? d : Buffer.concat([this.buffered, d]);
    for (;;) {
      const b = this.buffered;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const opcode = b[0]! & 0x0f;
      const payload = b.subarray(off, off + len);
      this.buffered = b.subarray(off + len);
      if (opcode === Opcode.Ping && this.answerPings && !this.socket.destroyed)
        this.socket.write(clientFrame(Opcode.Pong, payload));
      if (opcode === Opcode.Close && this.closeCode === undefined) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.closeAt = performance.now();
        for (const w of this.closeWaiters.splice(0)) w();
      }
    }
  }
}

function split(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(hostPort.slice(i + 1)) };
}
