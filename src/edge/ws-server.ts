import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import { CloseCode } from "../core/close-codes.js";
import type { Edge } from "../core/edge.js";
import { disconnectReason } from "../core/observer.js";
import { Encoding, type Transport } from "../core/transport.js";

export interface WsEdgeServerOptions {
  edge: Edge;
  /** The largest client frame; larger ones close the connection with 1009. */
  maxFrameBytes: number;
  onError?: (err: unknown, context: string) => void;
  /**
   * Sees every plain HTTP request first (e.g. /metrics, /healthz, /readyz
   * from src/metrics); returns true when it answered. Others get 426.
   */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

/** The subprotocols this edge speaks, preferred first. */
const PROTOCOLS: readonly Encoding[] = [Encoding.Proto, Encoding.Json];

/**
 * WsEdgeServer is the WebSocket adapter of an edge: it performs handshakes,
 * picks the encoding from the subprotocol, and hands frames to the core
 * Edge. Everything else (membership, commands, fan-out) is the Edge's.
 *
 * Handshake rules: a client that offers no subprotocol speaks JSON; one that
 * offers only subprotocols this edge does not speak is refused with HTTP 400
 * and a body that lists the ones it does.
 */
export class WsEdgeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  /** Sessions still leaving their channels after their connection closed. */
  private readonly leaving = new Set<Promise<void>>();
  /** Set once close() starts: every later disconnect is the edge's shutdown. */
  private closing = false;

  constructor(private readonly options: WsEdgeServerOptions) {
    this.http = createServer((req, res) => {
      if (options.httpHandler?.(req, res)) return;
      res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
      res.end(`This is a Switchboard edge: connect with a WebSocket, subprotocol ${PROTOCOLS.join(" or ")}.\n`);
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: true,
      handleProtocols: (offered) => PROTOCOLS.find((p) => offered.has(p)) ?? false,
    });
    this.http.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
    this.wss.on("error", (err) => options.onError?.(err, "websocket server"));
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(port, host, () => {
        this.http.off("error", reject);
        resolve();
      });
    });
    return this.http.address() as AddressInfo;
  }

  /** The number of open client connections. */
  get connections(): number {
    return this.wss.clients.size;
  }

  /**
   * Stops accepting, closes every client with code (GoingAway by default)
   * and waits until their sessions have left their channels.
   */
  async close(code: number = CloseCode.GoingAway, reason = "edge shutting down"): Promise<void> {
    this.closing = true;
    const closing: Promise<void>[] = [];
    for (const ws of this.wss.clients) {
      closing.push(new Promise((resolve) => ws.once("close", () => resolve())));
      ws.close(code, reason);
      setTimeout(() => ws.terminate(), 2_000).unref();
    }
    await Promise.all(closing);
    await Promise.all(this.leaving);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const offered = (req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    if (offered.length > 0 && !offered.some((p) => (PROTOCOLS as readonly string[]).includes(p))) {
      refuse(socket, 400, `unsupported subprotocol ${offered.join(", ")}: this edge speaks ${PROTOCOLS.join(" and ")}`);
      return;
    }
    const url = new URL(req.url ?? "/", "http://edge");
    const echoParam = url.searchParams.get("echo");
    if (echoParam !== null && echoParam !== "true" && echoParam !== "false") {
      refuse(socket, 400, `query parameter echo must be true or false, not ${JSON.stringify(echoParam)}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, echoParam !== "false"));
  }

  private accept(ws: WebSocket, echo: boolean): void {
    const encoding = (ws.protocol || Encoding.Json) as Encoding;
    const transport = new WsTransport(ws);
    const session = this.options.edge.connect(transport, encoding, echo);
    ws.on("message", (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
      this.options.edge.receive(session, bytes, isBinary);
    });
    ws.on("error", () => {
      // ws closes the connection after an error (e.g. 1009); 'close' follows.
    });
    ws.on("close", (code) => {
      const byEdge = transport.closedWith !== undefined;
      const reason = this.closing ? "shutdown" : disconnectReason(transport.closedWith ?? code, byEdge);
      const done = this.options.edge.disconnect(session, reason).finally(() => this.leaving.delete(done));
      this.leaving.add(done);
    });
  }
}

/** A Transport over one `ws` connection. */
class WsTransport implements Transport {
  /** The close code the edge chose, if it closed the connection. */
  closedWith: number | undefined;

  constructor(private readonly ws: WebSocket) {}

  send(data: Uint8Array, text: boolean): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary: !text });
  }

  close(code: number, reason: string): void {
    this.closedWith ??= code;
    this.ws.close(code, reason);
  }
}

function refuse(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${status === 400 ? "Bad Request" : "Error"}\r\n` +
      `content-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
