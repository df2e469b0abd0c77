import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type RawData, type ServerOptions } from "ws";
import type { Admission, Refusal } from "../core/admission.js";
import type { ClientConnection, ConnectionPolicy } from "../core/connections.js";
import { MAX_EVENTS_FRAME_BYTES, MAX_MESSAGE_FRAGMENTS, maxBufferedReads } from "../core/limits.js";
import type { Transport } from "../core/transport.js";
import { CloseCode } from "../protocol/close-codes.js";
import { Encoding } from "../protocol/encodings.js";
import { EventBatch, FrameWriter, UNDELAYED_WRITER } from "./ws-frames.js";

export interface WsEdgeServerOptions {
  /**
   * The connection policy every connection of this server lives under
   * (core/connections.ts): admission, heartbeats, the outbound bound, closes.
   */
  connections: ConnectionPolicy;
  /** The largest client frame; larger ones close the connection with 1009. */
  maxFrameBytes: number;
  onError?: (err: unknown, context: string) => void;
  /**
   * Sees every plain HTTP request first (e.g. /metrics, /healthz, /readyz
   * from src/metrics); returns true when it answered. Others get 426.
   */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Serve TLS (wss://) with this PEM certificate chain and key. Default: plain (TLS in front). */
  tls?: { cert: Buffer; key: Buffer };
  /**
   * How long a connection's frames may wait to leave together, in one
   * write (REALTIME_WRITE_DELAY_MS, ws-frames.ts FrameWriter). Default 0:
   * to the end of the event loop's turn.
   */
  writeDelayMs?: number;
  /**
   * Pack the events a connection gets within the write delay into one
   * events frame, for connections that ask (events=batch;
   * REALTIME_WRITE_BATCH, ws-frames.ts EventBatch). Needs writeDelayMs > 0.
   * Default false: one event frame per event.
   */
  writeBatch?: boolean;
}

/**
 * The close code ws sends for each error it raises on a client connection,
 * by the error's public `code` (WS_ERR_*, ws's doc/ws.md); close-codes.ts
 * names each. test/ws-close-codes.test.ts pins them against this ws; an
 * error a later ws adds is counted as the drop it looks like (1006).
 */
const WS_CLOSE_CODES: Readonly<Record<string, number>> = {
  WS_ERR_EXPECTED_FIN: CloseCode.BadFrame,
  WS_ERR_EXPECTED_MASK: CloseCode.BadFrame,
  WS_ERR_INVALID_CLOSE_CODE: CloseCode.BadFrame,
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: CloseCode.BadFrame,
  WS_ERR_INVALID_OPCODE: CloseCode.BadFrame,
  WS_ERR_UNEXPECTED_MASK: CloseCode.BadFrame,
  WS_ERR_UNEXPECTED_RSV_1: CloseCode.BadFrame,
  WS_ERR_UNEXPECTED_RSV_2_3: CloseCode.BadFrame,
  WS_ERR_INVALID_UTF8: CloseCode.InvalidUtf8,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: CloseCode.TooManyParts,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig,
};

/** The subprotocols this edge speaks, preferred first. */
const PROTOCOLS: readonly Encoding[] = [Encoding.Proto, Encoding.Json];

/**
 * The edge's WebSocket: ws's own, plus the one field that lets a single
 * listener function serve every connection (no closures per connection).
 */
class EdgeWebSocket extends WebSocket {
  connection: ClientConnection | undefined = undefined;
}

/**
 * WsEdgeServer is the WebSocket transport of an edge: it performs
 * handshakes, picks the encoding from the subprotocol, frames, and maps ws's
 * events to the connection policy (core/connections.ts), which decides
 * everything else about a connection (admission, heartbeats, the outbound
 * bound, closes) and hands it to the core Edge.
 *
 * Handshake rules: a client that offers no subprotocol speaks JSON; one that
 * offers only subprotocols this edge does not speak is refused with HTTP 400
 * and a body that lists the ones it does. Every refusal (the policy's, in
 * the order of core/admission.ts, this one among them) is an HTTP status
 * before the handshake, with a one-line body that names what to change.
 */
export class WsEdgeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly connections: ConnectionPolicy;
  private readonly writer: FrameWriter;
  private readonly maxEventsFrameBytes: number;

  constructor(private readonly options: WsEdgeServerOptions) {
    this.connections = options.connections;
    if (options.writeBatch && !options.writeDelayMs) throw new Error("writeBatch needs a writeDelayMs above 0");
    this.writer = options.writeDelayMs ? new FrameWriter(options.writeDelayMs) : UNDELAYED_WRITER;
    // Never a frame larger than a client may send (maxFrameBytes).
    this.maxEventsFrameBytes = Math.min(MAX_EVENTS_FRAME_BYTES, options.maxFrameBytes);
    const onRequest: RequestListener = (req, res) => {
      if (options.httpHandler?.(req, res)) return;
      res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
      res.end(`This is a Switchboard edge: connect with a WebSocket, subprotocol ${PROTOCOLS.join(" or ")}.\n`);
    };
    this.http = options.tls ? createHttpsServer(options.tls, onRequest) : createServer(onRequest);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameBytes,
      // What a message the client has not finished may hold (limits.ts).
      maxFragments: MAX_MESSAGE_FRAGMENTS,
      maxBufferedChunks: maxBufferedReads(options.maxFrameBytes),
      // Off: ws-frames.ts writes beside ws, which needs ws to write synchronously.
      perMessageDeflate: false,
      clientTracking: false,
      WebSocket: EdgeWebSocket,
      handleProtocols: (offered) => PROTOCOLS.find((p) => offered.has(p)) ?? false,
      // ws's own timer, for closes the policy does not time (a client's
      // close we answered): none waits longer than the policy's.
      closeTimeout: this.connections.closeWaitMs,
    } as ServerOptions & { closeTimeout: number }); // closeTimeout (ws 8.19+) is not in @types/ws 8.18 yet
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

  /**
   * Stops listening, closes every client with code (Shutdown by default),
   * spread over spreadMs (ConnectionPolicy.close), and waits until their
   * sessions have left their channels.
   */
  async close(code: number = CloseCode.Shutdown, reason = "edge shutting down", spreadMs = 0): Promise<void> {
    // Stop listening first: no new connection while the old ones close.
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.connections.close(code, reason, spreadMs);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await httpClosed;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node's http server removes its error listener from an upgrading
    // socket; until ws takes it over (handleUpgrade), a reset by the client
    // (e.g. while its token is verified, or after a refusal) must not be an
    // uncaught 'error'.
    const onError = () => socket.destroy();
    socket.on("error", onError);
    const admission = this.connections.admit(req, subprotocolRefusal(req), () => socket.destroyed || !socket.writable);
    if (!(admission instanceof Promise)) return this.complete(req, socket, head, onError, admission);
    // The token is verified before the handshake completes: a refused
    // client gets an HTTP status, never a WebSocket.
    admission
      .then((a) => this.complete(req, socket, head, onError, a))
      .catch((err: unknown) => {
        this.options.onError?.(err, "websocket upgrade");
        socket.destroy();
      });
  }

  private complete(req: IncomingMessage, socket: Duplex, head: Buffer, onError: () => void, a: Admission): void {
    if (!a.admitted) {
      if (a.refusal) refuse(socket, a.refusal);
      return;
    }
    socket.off("error", onError);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, socket, a));
  }

  /**
   * A connection is open: the policy hands it to the core. Its listeners
   * are the shared functions below (they find the connection through
   * ws.connection), so an idle connection costs ws's objects, a WsTransport,
   * a ClientConnection and a Session.
   */
  private accept(ws: WebSocket, socket: Duplex, a: Admission & { admitted: true }): void {
    const encoding = (ws.protocol || Encoding.Json) as Encoding;
    const batch = this.options.writeBatch && a.eventBatches;
    const connection = this.connections.open(
      new WsTransport(ws, socket, this.writer, batch ? this.maxEventsFrameBytes : 0),
      encoding,
      a.echo,
      a.identity,
      a.presence,
    );
    (ws as EdgeWebSocket).connection = connection;
    if (this.connections.probes) ws.on("pong", WsEdgeServer.onPong);
    ws.on("message", WsEdgeServer.onMessage);
    ws.on("error", WsEdgeServer.onError);
    ws.on("close", WsEdgeServer.onClose);
  }

  private static onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    (this as EdgeWebSocket).connection!.received(bytes, isBinary);
  }

  private static onPong(this: WebSocket): void {
    (this as EdgeWebSocket).connection!.answered();
  }

  /**
   * ws found the client breaking the protocol or a limit: it has sent the
   * close frame with the code for the error (WS_CLOSE_CODES) and stops
   * parsing; 'close' follows. It keeps reading (and discarding) the socket,
   * resuming it in a process.nextTick after the error, so the pause comes
   * after that (setImmediate); test/ws-closing.test.ts pins it. Socket
   * errors (a reset) carry no such code: the connection is just dropping
   * (1006).
   */
  private static onError(this: WebSocket, err: Error & { code?: unknown }): void {
    const code = typeof err.code === "string" ? WS_CLOSE_CODES[err.code] : undefined;
    if (code !== undefined && (this as EdgeWebSocket).connection!.failed(code)) setImmediate(pause, this);
  }

  private static onClose(this: WebSocket, code: number): void {
    (this as EdgeWebSocket).connection!.ended(code);
  }
}

function pause(ws: WebSocket): void {
  ws.pause();
}

/** The refusal of an upgrade that offers subprotocols, none of which this edge speaks (admission.ts, check 6). */
function subprotocolRefusal(req: IncomingMessage): Refusal | undefined {
  const offered = (req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  if (offered.length === 0 || offered.some((p) => (PROTOCOLS as readonly string[]).includes(p))) return undefined;
  return {
    status: 400,
    reason: "protocol",
    message: `unsupported subprotocol ${offered.join(", ")}: this edge speaks ${PROTOCOLS.join(" and ")}`,
  };
}

/**
 * The Transport of one `ws` connection. Frames are written to the socket
 * the upgrade handed to ws (ws-frames.ts says why that is safe); the rest
 * is ws's public API.
 */
class WsTransport implements Transport {
  /** The connection's event frames waiting for the write delay to end, when it gets events frames. */
  private readonly batch: EventBatch | undefined;
  private readonly write: FrameWriter["write"];

  /** maxEventsFrameBytes: pack its events into events frames of at most this many bytes; 0: never. */
  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    writer: FrameWriter,
    maxEventsFrameBytes: number,
  ) {
    this.write = writer.write;
    if (maxEventsFrameBytes > 0) this.batch = new EventBatch(writer, socket, () => this.open, maxEventsFrameBytes);
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedBytes(): number {
    return this.ws.bufferedAmount + (this.batch?.bytes ?? 0);
  }

  send(data: Uint8Array, text: boolean, event = false): void {
    const batch = this.batch;
    if (batch !== undefined) {
      if (event) return batch.add(data, text);
      batch.flush(); // what it holds was sent first
    }
    this.write(this.socket, data, text);
  }

  close(code: number, reason: string): void {
    this.batch?.flush(); // the events sent before the close precede it
    this.ws.close(code, reason);
    // ws answers pings itself: one after the close stops the reading too
    // (messages and pongs reach the policy, which stops it).
    this.ws.on("ping", WsTransport.onLateFrame);
  }

  terminate(): void {
    this.ws.terminate();
  }

  ping(): void {
    this.ws.ping();
  }

  stopReading(): void {
    this.ws.pause();
  }

  private static onLateFrame(this: WebSocket): void {
    this.pause();
  }
}

/** Reason phrases of the statuses an upgrade may be refused with. */
const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  503: "Service Unavailable",
};

/** Answers a refused upgrade with its HTTP status and message, and closes the socket. */
function refuse(socket: Duplex, { status, message }: Refusal): void {
  const body = `${message}\n`;
  const extra =
    status === 401 ? 'www-authenticate: Bearer realm="switchboard"\r\n' : status === 503 ? "retry-after: 1\r\n" : "";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
      `content-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
  );
}
