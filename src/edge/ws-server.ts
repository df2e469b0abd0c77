import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer, type RawData, type ServerOptions } from "ws";
import type { HostCheck, OriginCheck } from "../auth/browser-guards.js";
import { ANONYMOUS, type Identity } from "../core/identity.js";
import { CloseCode } from "../protocol/close-codes.js";
import {
  CLOSE_HANDSHAKE_TIMEOUT_MS,
  MAX_MESSAGE_FRAGMENTS,
  maxBufferedReads,
  SLOW_CONSUMER_TERMINATE_MS,
} from "../core/limits.js";
import type { Edge, Session } from "../core/edge.js";
import {
  disconnectReason,
  NOOP_OBSERVER,
  type DropReason,
  type Observer,
  type RefusalReason,
} from "../core/observer.js";
import type { Transport } from "../core/transport.js";
import { Encoding } from "../protocol/encodings.js";
import { writeFrame } from "./ws-frames.js";

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
  /** Told about refused upgrades and frames dropped by the transport (metrics). Default: none. */
  observer?: Observer;
  /** Serve TLS (wss://) with this PEM certificate chain and key. Default: plain (TLS in front). */
  tls?: { cert: Buffer; key: Buffer };
  /**
   * Authenticates an upgrade request before the handshake completes; a
   * rejection with an error that has a numeric `status` (AuthRefusal) is
   * answered with that HTTP status and the error's message, and no
   * connection. Default: every connection is anonymous.
   */
  authenticate?: (req: IncomingMessage) => Promise<Identity>;
  /**
   * Browser pages that may connect, by their Origin (auth/browser-guards.ts);
   * others get HTTP 403 naming REALTIME_WS_ORIGINS. Default: any.
   */
  origins?: OriginCheck;
  /**
   * Host headers an upgrade may carry (the DNS rebinding guard of an edge
   * without token keys); others get HTTP 403 naming REALTIME_ALLOWED_HOSTS.
   * Default: any.
   */
  hosts?: HostCheck;
  /** Most connections, handshakes in progress included; more get HTTP 503 before the upgrade. Default: unlimited. */
  maxConnections?: number;
  /**
   * Bytes that may wait to be written to one client (ws buffer + socket
   * buffer); a frame that would go past it closes the client with 4001
   * instead of being queued. Default: unlimited.
   */
  maxOutboundBytes?: number;
  /**
   * Pings every client every intervalMs; one that has not answered a ping
   * within timeoutMs is terminated (it leaves its channels). Default: none.
   */
  heartbeat?: { intervalMs: number; timeoutMs: number };
  /**
   * While the backend (told by backendState) has been down for afterMs, the
   * edge closes every client with 4004, spread over spreadMs like a
   * shutdown, and refuses upgrades with HTTP 503 until it is back
   * (REALTIME_OUTAGE_CLOSE_MS). Default: clients are kept whatever the
   * backend's state.
   */
  outage?: { afterMs: number; spreadMs: number };
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
  transport: WsTransport | undefined = undefined;
}

/**
 * WsEdgeServer is the WebSocket adapter of an edge: it performs handshakes,
 * picks the encoding from the subprotocol, and hands frames to the core
 * Edge. Everything else (membership, commands, fan-out) is the Edge's.
 *
 * Handshake rules: a client that offers no subprotocol speaks JSON; one that
 * offers only subprotocols this edge does not speak is refused with HTTP 400
 * and a body that lists the ones it does. Every refusal (refusal(): origin,
 * Host, limits, shutdown, outage) is an HTTP status before the handshake,
 * with a one-line body that names what to change.
 */
export class WsEdgeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  /** Sessions still leaving their channels after their connection closed. */
  private readonly leaving = new Set<Promise<void>>();
  /** Set once close() starts: every later disconnect is the edge's shutdown. */
  private closing = false;
  /** Upgrades being authenticated: they count towards maxConnections. */
  private handshaking = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** Armed while the backend is down; fires after options.outage.afterMs. */
  private outageTimer: NodeJS.Timeout | undefined;
  /** Set once the outage lasted afterMs, until the backend is back: upgrades get 503. */
  private unavailable = false;
  private round = 0;
  /** The open connections (ws's own clientTracking is off: it costs a closure per connection). */
  private readonly clients = new Set<WsTransport>();
  /** @internal How long a slow consumer has to read its close frame (see WsTransport.send). */
  readonly terminateMs: number;

  constructor(private readonly options: WsEdgeServerOptions) {
    const onRequest: RequestListener = (req, res) => {
      if (options.httpHandler?.(req, res)) return;
      res.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
      res.end(`This is a Switchboard edge: connect with a WebSocket, subprotocol ${PROTOCOLS.join(" or ")}.\n`);
    };
    this.http = options.tls ? createHttpsServer(options.tls, onRequest) : createServer(onRequest);
    this.terminateMs = options.heartbeat?.timeoutMs ?? SLOW_CONSUMER_TERMINATE_MS;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameBytes,
      // What a message the client has not finished may hold (limits.ts).
      maxFragments: MAX_MESSAGE_FRAGMENTS,
      maxBufferedChunks: maxBufferedReads(options.maxFrameBytes),
      perMessageDeflate: false,
      clientTracking: false,
      WebSocket: EdgeWebSocket,
      handleProtocols: (offered) => PROTOCOLS.find((p) => offered.has(p)) ?? false,
      // ws's own timer, for closes the edge does not time itself (a client's
      // close we answered): none waits longer than a slow consumer may.
      closeTimeout: Math.max(CLOSE_HANDSHAKE_TIMEOUT_MS, this.terminateMs),
    } as ServerOptions & { closeTimeout: number }); // closeTimeout (ws 8.19+) is not in @types/ws 8.18 yet
    this.http.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
    this.wss.on("error", (err) => options.onError?.(err, "websocket server"));
    if (options.heartbeat) {
      const { intervalMs, timeoutMs } = options.heartbeat;
      this.heartbeatTimer = setInterval(() => this.ping(timeoutMs), intervalMs);
      this.heartbeatTimer.unref();
    }
  }

  /** One heartbeat round: ping everyone; terminate, timeoutMs later, whoever has not answered it. */
  private ping(timeoutMs: number): void {
    const round = ++this.round;
    for (const t of this.clients) {
      if (t.ws.readyState !== WebSocket.OPEN) continue;
      t.pinged = round;
      t.ws.ping();
    }
    setTimeout(() => {
      for (const t of this.clients) {
        if (t.pinged >= round && t.ponged < round) t.terminate(CloseCode.HeartbeatTimeout);
      }
    }, timeoutMs).unref();
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
    return this.clients.size;
  }

  /**
   * The backend (the link to the API, or Redis) is reachable (up) or not.
   * See WsEdgeServerOptions.outage: down for afterMs, every client is
   * closed with 4004 and upgrades are refused until it is up again.
   */
  backendState(up: boolean): void {
    const outage = this.options.outage;
    if (!outage || outage.afterMs <= 0) return;
    if (up) {
      clearTimeout(this.outageTimer);
      this.outageTimer = undefined;
      this.unavailable = false;
      return;
    }
    if (this.outageTimer || this.unavailable || this.closing) return;
    this.outageTimer = setTimeout(() => {
      this.outageTimer = undefined;
      this.unavailable = true;
      void this.closeAll(
        CloseCode.Unavailable,
        "this edge lost the rest of the service: reconnect (to another edge) after a delay",
        outage.spreadMs,
      );
    }, outage.afterMs);
    this.outageTimer.unref();
  }

  /**
   * Stops accepting, closes every client with code (Shutdown by default)
   * and waits until their sessions have left their channels.
   */
  async close(code: number = CloseCode.Shutdown, reason = "edge shutting down", spreadMs = 0): Promise<void> {
    this.closing = true;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.outageTimer);
    // Stop listening first: no new connection while the old ones close.
    const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    await this.closeAll(code, reason, spreadMs);
    await Promise.all(this.leaving);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await httpClosed;
  }

  /** Closes every client with code, spread over spreadMs; resolves once each connection is closed. */
  private async closeAll(code: number, reason: string, spreadMs: number): Promise<void> {
    const clients = [...this.clients];
    const closing = clients.map(
      (t, i) =>
        new Promise<void>((resolve) => {
          if (t.ws.readyState === WebSocket.CLOSED) return resolve();
          t.ws.once("close", () => resolve());
          // Spread evenly over spreadMs, with jitter inside each slot, so
          // that clients do not all reconnect at the same moment.
          const delay = clients.length > 1 ? ((i + Math.random()) * spreadMs) / clients.length : 0;
          setTimeout(() => t.close(code, reason), delay).unref();
        }),
    );
    await Promise.all(closing);
  }

  /** Destroys every client socket at once (the shutdown deadline passed). */
  terminateAll(): void {
    for (const t of this.clients) t.ws.terminate();
  }

  /** Refuses an upgrade with an HTTP status, and counts why. */
  private refuse(socket: Duplex, status: number, message: string, reason: RefusalReason): void {
    (this.options.observer ?? NOOP_OBSERVER).connectionRefused(reason);
    refuse(socket, status, message);
  }

  /** The refusal of an upgrade that must not proceed before it is authenticated, if any. */
  private refusal(req: IncomingMessage): [status: number, message: string, reason: RefusalReason] | undefined {
    if (this.closing)
      return [503, "this edge is shutting down: connect again (to another edge) after a short delay", "shutdown"];
    const { host, origin } = req.headers;
    if (this.options.hosts && !this.options.hosts(host))
      return [
        403,
        `Host ${JSON.stringify(host)} is not allowed: this edge verifies no tokens, so it answers only connections ` +
          "addressed to localhost, an IP address or a name in REALTIME_ALLOWED_HOSTS (a guard against DNS rebinding): " +
          "add the name to REALTIME_ALLOWED_HOSTS, or configure a token key",
        "origin",
      ];
    if (this.options.origins && !this.options.origins(origin, host))
      return [
        403,
        `origin ${origin} is not allowed to connect: add it to REALTIME_WS_ORIGINS (comma-separated origins, or *)`,
        "origin",
      ];
    if (this.unavailable)
      return [
        503,
        `this edge has lost the rest of the service for more than ${this.options.outage!.afterMs} ms ` +
          "(REALTIME_OUTAGE_CLOSE_MS): connect to another edge or retry later",
        "unavailable",
      ];
    const max = this.options.maxConnections;
    if (max !== undefined && this.clients.size + this.handshaking >= max)
      return [
        503,
        `this edge holds ${max} connections, its limit (REALTIME_MAX_CONNECTIONS): connect to another edge or retry later`,
        "limit",
      ];
    const offered = (req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    if (offered.length > 0 && !offered.some((p) => (PROTOCOLS as readonly string[]).includes(p)))
      return [
        400,
        `unsupported subprotocol ${offered.join(", ")}: this edge speaks ${PROTOCOLS.join(" and ")}`,
        "protocol",
      ];
    return undefined;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node's http server removes its error listener from an upgrading
    // socket; until ws takes it over (handleUpgrade), a reset by the client
    // (e.g. while its token is verified, or after a refusal) must not be an
    // uncaught 'error'.
    const onError = () => socket.destroy();
    socket.on("error", onError);
    const refusal = this.refusal(req);
    if (refusal) return this.refuse(socket, ...refusal);
    const url = new URL(req.url ?? "/", "http://edge");
    const echoParam = url.searchParams.get("echo");
    if (echoParam !== null && echoParam !== "true" && echoParam !== "false") {
      this.refuse(
        socket,
        400,
        `query parameter echo must be true or false, not ${JSON.stringify(echoParam)}`,
        "protocol",
      );
      return;
    }
    const authenticate = this.options.authenticate;
    if (!authenticate) {
      socket.off("error", onError);
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, echoParam !== "false", ANONYMOUS));
      return;
    }
    // The token is verified before the handshake completes: a refused
    // client gets an HTTP status, never a WebSocket.
    this.handshaking++;
    let identity: Identity;
    authenticate(req)
      .then(
        (id) => {
          identity = id;
        },
        (err: unknown) => {
          const status =
            typeof (err as { status?: unknown }).status === "number" ? (err as { status: number }).status : 401;
          this.refuse(socket, status, err instanceof Error ? err.message : "unauthorized", "auth");
        },
      )
      .finally(() => {
        this.handshaking--;
        if (!identity || socket.destroyed || !socket.writable) return;
        if (this.closing)
          return this.refuse(
            socket,
            503,
            "this edge is shutting down: connect again (to another edge) after a short delay",
            "shutdown",
          );
        socket.off("error", onError);
        this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, echoParam !== "false", identity));
      })
      .catch((err: unknown) => {
        this.options.onError?.(err, "websocket upgrade");
        socket.destroy();
      });
  }

  /**
   * A connection is open: it gets a Session. Its listeners are the shared
   * functions below (they find the connection through ws.transport), so an
   * idle connection costs ws's objects, a WsTransport and a Session.
   */
  private accept(ws: WebSocket, echo: boolean, identity: Identity): void {
    const encoding = (ws.protocol || Encoding.Json) as Encoding;
    const transport = new WsTransport(ws, this);
    (ws as EdgeWebSocket).transport = transport;
    this.clients.add(transport);
    transport.session = this.options.edge.connect(transport, encoding, echo, identity);
    if (this.options.heartbeat) ws.on("pong", WsEdgeServer.onPong);
    ws.on("message", WsEdgeServer.onMessage);
    ws.on("error", WsEdgeServer.onError);
    ws.on("close", WsEdgeServer.onClose);
  }

  private static onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    const t = (this as EdgeWebSocket).transport!;
    if (t.closedWith !== undefined) return t.stopReading();
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    t.server.options.edge.receive(t.session!, bytes, isBinary);
  }

  private static onPong(this: WebSocket): void {
    const t = (this as EdgeWebSocket).transport!;
    if (t.closedWith !== undefined) return t.stopReading();
    t.ponged = t.pinged;
  }

  /**
   * ws found the client breaking the protocol or a limit: it has sent the
   * close frame with the code for the error (WS_CLOSE_CODES) and stops
   * parsing; 'close' follows. Socket errors (a reset) carry no such code:
   * the connection is just dropping (1006).
   */
  private static onError(this: WebSocket, err: Error & { code?: unknown }): void {
    const t = (this as EdgeWebSocket).transport!;
    const code = typeof err.code === "string" ? WS_CLOSE_CODES[err.code] : undefined;
    if (code !== undefined) t.closedByWs(code);
  }

  private static onClose(this: WebSocket, code: number): void {
    const t = (this as EdgeWebSocket).transport!;
    const server = t.server;
    server.clients.delete(t);
    const byEdge = t.closedWith !== undefined;
    const reason = server.closing ? "shutdown" : disconnectReason(t.closedWith ?? code, byEdge);
    const done = server.options.edge.disconnect(t.session!, reason).finally(() => server.leaving.delete(done));
    server.leaving.add(done);
  }

  /** @internal Told about every frame a transport drops. */
  dropped(reason: DropReason): void {
    this.options.observer?.dropped(reason, 1);
  }

  /** @internal See WsEdgeServerOptions.maxOutboundBytes; undefined = unlimited. */
  get maxOutboundBytes(): number | undefined {
    return this.options.maxOutboundBytes;
  }
}

/**
 * A Transport over one `ws` connection, and the adapter's state of it. What
 * is the same for every connection (limits, observer) is read from the
 * server, not copied here.
 */
class WsTransport implements Transport {
  /** The close code the edge chose, if it closed the connection. */
  closedWith: number | undefined = undefined;
  /** The core's Session of this connection; set right after Edge.connect. */
  session: Session | undefined = undefined;
  /** Heartbeat: the last ping round sent to this client, and the last one it answered. */
  pinged = 0;
  ponged = 0;

  constructor(
    readonly ws: WebSocket,
    readonly server: WsEdgeServer,
  ) {}

  /**
   * Queues the frame, unless the client's queue (bytes not yet written to
   * the network) would go past maxOutboundBytes: then the client is closed
   * with 4001 and this frame and every later one are dropped, so a client
   * that stops reading costs at most maxOutboundBytes (+ one frame).
   */
  send(data: Uint8Array, text: boolean): void {
    if (this.closedWith !== undefined || this.ws.readyState !== WebSocket.OPEN) {
      this.server.dropped(this.closedWith === CloseCode.SlowConsumer ? "slow_consumer" : "closed");
      return;
    }
    const max = this.server.maxOutboundBytes;
    if (max !== undefined && this.ws.bufferedAmount + data.length > max) {
      this.server.dropped("slow_consumer");
      this.close(CloseCode.SlowConsumer, "slow consumer: the client did not read fast enough and its queue overflowed");
      return;
    }
    writeFrame(this.ws, data, text);
  }

  /**
   * Closing means stopping: from the first call on, none of the client's
   * frames reaches the core (Edge.receive), the first one that arrives stops
   * the reading of the socket (the client's answer to the close is read as
   * usual), and the socket is destroyed CLOSE_HANDSHAKE_TIMEOUT_MS later if
   * the client has not completed the closing handshake by then. A slow
   * consumer's close frame waits behind its unread bytes: it gets as long as
   * a heartbeat to read it (a client that cannot is as good as dead). Later
   * calls change nothing: the first decision is the code the client sees.
   */
  close(code: number, reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    this.ws.close(code, reason);
    // A ping is a frame too (pongs and messages are checked in their listeners).
    this.ws.on("ping", WsTransport.onLateFrame);
    const ms = code === CloseCode.SlowConsumer ? this.server.terminateMs : CLOSE_HANDSHAKE_TIMEOUT_MS;
    setTimeout(() => this.ws.terminate(), ms).unref();
  }

  /** @internal A frame arrived after the close: read nothing more (the timer destroys the socket). */
  stopReading(): void {
    this.ws.pause();
  }

  private static onLateFrame(this: WebSocket): void {
    this.pause();
  }

  /**
   * @internal ws closed the connection with code (see WsEdgeServer.onError).
   * Same rules as close(): ws discards what follows but keeps reading it,
   * resuming the socket in a process.nextTick after the error, so the pause
   * comes after that (setImmediate); test/ws-closing.test.ts pins it.
   */
  closedByWs(code: number): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    setImmediate(() => this.ws.pause());
    setTimeout(() => this.ws.terminate(), CLOSE_HANDSHAKE_TIMEOUT_MS).unref();
  }

  /** Destroys the socket without a closing handshake (a dead peer would not answer it). */
  terminate(code: number): void {
    this.closedWith ??= code;
    this.ws.terminate();
  }
}

/** Reason phrases of the statuses an upgrade may be refused with. */
const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  503: "Service Unavailable",
};

function refuse(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  const extra =
    status === 401 ? 'www-authenticate: Bearer realm="switchboard"\r\n' : status === 503 ? "retry-after: 1\r\n" : "";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
      `content-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
  );
}
