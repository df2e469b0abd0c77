/**
 * The connection policy of an edge: how a client connection is admitted,
 * kept alive, bounded and ended, whatever the transport that carries it
 * (transport.ts). A transport maps its events to the calls below and
 * implements Transport; everything decided here is the same for all.
 *
 * What it decides:
 *  - Admission (admit; the rules are admission.ts): admit, or refuse with an
 *    HTTP status, a reason of the observer's closed set and a message.
 *  - Liveness (heartbeat): every intervalMs each open connection whose
 *    transport has a probe is pinged; one that has not answered a round
 *    timeoutMs after it is terminated (recorded 4002; a dead peer would not
 *    answer a close).
 *  - The outbound bound: a frame that would take a connection's queue
 *    (Transport.bufferedBytes) past maxOutboundBytes closes it with 4001
 *    and is dropped, with every later one, so a client that stops reading
 *    costs at most maxOutboundBytes plus one frame.
 *  - Closes spread over a window: on shutdown (close) and after an outage of
 *    the backend (backendState), every connection is closed in its own slot
 *    of the window, with jitter inside the slot, so that clients do not all
 *    reconnect at the same moment.
 *  - Closing means stopping: from the close decision on (ClientConnection
 *    close, or a close the transport made on its own: failed), nothing more
 *    of the connection is handed to the Edge nor sent to it; the first of
 *    its frames that arrives stops the reading; the transport is terminated
 *    CLOSE_HANDSHAKE_TIMEOUT_MS after the decision unless the connection
 *    ended by then (a slow consumer, whose close waits behind its unread
 *    bytes, gets the heartbeat timeout, or SLOW_CONSUMER_TERMINATE_MS
 *    without a heartbeat). The first decision's code is the one recorded.
 *    The Edge makes some decisions itself (4003 when a token expires, 4503
 *    when the error budget is spent) through Connection.close: the same
 *    rules carry them out.
 *  - The disconnect reason (Observer): "shutdown" once the edge is closing,
 *    otherwise the reason of the code decided here, or of the code the
 *    connection ended with when nothing was decided (disconnectReason).
 *
 * Connections of several transports may live under one policy: the limits
 * and the spreads count them all.
 */
import { CloseCode } from "../protocol/close-codes.js";
import type { Encoding } from "../protocol/encodings.js";
import {
  authRefusal,
  screen,
  SHUTTING_DOWN,
  type Admission,
  type AdmissionOptions,
  type ConnectRequest,
  type Refusal,
} from "./admission.js";
import type { Edge, PresenceForm, Session } from "./edge.js";
import { ANONYMOUS, type Identity } from "./identity.js";
import { CLOSE_HANDSHAKE_TIMEOUT_MS, SLOW_CONSUMER_TERMINATE_MS } from "./limits.js";
import { disconnectReason, NOOP_OBSERVER, type DropReason, type Observer } from "./observer.js";
import type { Connection, Transport } from "./transport.js";

export interface ConnectionPolicyOptions extends AdmissionOptions {
  /** The core the connections are handed to. */
  edge: Pick<Edge, "connect" | "receive" | "disconnect">;
  /** Told about refusals and about frames dropped (metrics). Default: none. */
  observer?: Observer;
  /**
   * Bytes that may wait to be written to one client (Transport.bufferedBytes);
   * a frame that would go past it closes the client with 4001 instead of
   * being queued. Default: unlimited.
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
   * shutdown, and refuses connections with 503 until it is back
   * (REALTIME_OUTAGE_CLOSE_MS). Default, or afterMs 0: clients are kept
   * whatever the backend's state.
   */
  outage?: { afterMs: number; spreadMs: number };
}

/**
 * The connection policy of one edge (see the module comment). Its timers
 * are unref'd; close() stops them.
 */
export class ConnectionPolicy {
  /** @internal The open connections, in the order they opened. */
  readonly clients = new Set<ClientConnection>();
  /** Sessions still leaving their channels after their connection ended. */
  private readonly leaving = new Set<Promise<void>>();
  /** Set once close() starts: every later disconnect is the edge's shutdown. */
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Requests being authenticated: they count towards maxConnections. */
  private handshaking = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private round = 0;
  /** Armed while the backend is down; fires after outage.afterMs. */
  private outageTimer: NodeJS.Timeout | undefined;
  /** Set once the outage lasted afterMs, until the backend is back: connections are refused. */
  private unavailable = false;
  /** @internal */
  readonly observer: Observer;
  /** @internal */
  readonly edge: ConnectionPolicyOptions["edge"];
  /** @internal See ConnectionPolicyOptions.maxOutboundBytes; undefined = unlimited. */
  readonly maxOutboundBytes: number | undefined;
  /** @internal How long a slow consumer has to read its close frame. */
  readonly terminateMs: number;
  /**
   * The longest a connection lives after its close decision: a transport
   * with a timer of its own for closes (one the client began) waits no
   * longer than this.
   */
  readonly closeWaitMs: number;

  constructor(private readonly options: ConnectionPolicyOptions) {
    this.observer = options.observer ?? NOOP_OBSERVER;
    this.edge = options.edge;
    this.maxOutboundBytes = options.maxOutboundBytes;
    this.terminateMs = options.heartbeat?.timeoutMs ?? SLOW_CONSUMER_TERMINATE_MS;
    this.closeWaitMs = Math.max(CLOSE_HANDSHAKE_TIMEOUT_MS, this.terminateMs);
    if (options.heartbeat) {
      const { intervalMs, timeoutMs } = options.heartbeat;
      this.heartbeatTimer = setInterval(() => this.ping(timeoutMs), intervalMs);
      this.heartbeatTimer.unref();
    }
  }

  /** Whether this policy probes its connections: a transport reports answers (answered) only then. */
  get probes(): boolean {
    return this.options.heartbeat !== undefined;
  }

  /**
   * Decides whether request becomes a connection (the rules and their order
   * are admission.ts's). handshake is the transport's own refusal of the
   * request, if any; gone tells, once the request is authenticated, whether
   * its client went away meanwhile. Synchronous unless the request must be
   * authenticated. Refusals are counted here; the transport answers them.
   */
  admit(request: ConnectRequest, handshake: Refusal | undefined, gone: () => boolean): Admission | Promise<Admission> {
    const unavailableAfterMs = this.unavailable ? this.options.outage!.afterMs : undefined;
    const screened = screen(
      request,
      this.options,
      {
        closing: this.closing,
        unavailableAfterMs,
        connections: this.clients.size + this.handshaking,
      },
      handshake,
    );
    if (screened.refusal) return this.refused(screened.refusal);
    const { echo, presence, eventBatches } = screened;
    const authenticate = this.options.authenticate;
    if (!authenticate) return { admitted: true, identity: ANONYMOUS, echo, presence, eventBatches };
    this.handshaking++;
    return authenticate(request).then(
      (identity): Admission => {
        this.handshaking--;
        if (gone()) return { admitted: false, refusal: undefined };
        if (this.closing) return this.refused(SHUTTING_DOWN);
        return { admitted: true, identity, echo, presence, eventBatches };
      },
      (err: unknown) => {
        this.handshaking--;
        return this.refused(authRefusal(err));
      },
    );
  }

  private refused(refusal: Refusal): Admission {
    this.observer.connectionRefused(refusal.reason);
    return { admitted: false, refusal };
  }

  /**
   * An admitted request's connection is open over transport: it is handed to
   * the Edge (which sends it its id). The transport reports its events to the
   * ClientConnection returned.
   */
  open(
    transport: Transport,
    encoding: Encoding,
    echo: boolean,
    identity: Identity,
    presence: PresenceForm = "single",
  ): ClientConnection {
    const connection = new ClientConnection(transport, this);
    this.clients.add(connection);
    connection.session = this.edge.connect(connection, encoding, echo, identity, presence);
    return connection;
  }

  /** One heartbeat round: ping everyone; terminate, timeoutMs later, whoever has not answered it. */
  private ping(timeoutMs: number): void {
    const round = ++this.round;
    for (const c of this.clients) {
      if (!c.transport.open || !c.transport.ping) continue;
      c.pinged = round;
      c.transport.ping();
    }
    setTimeout(() => {
      for (const c of this.clients) {
        if (c.pinged >= round && c.ponged < round) c.terminate(CloseCode.HeartbeatTimeout);
      }
    }, timeoutMs).unref();
  }

  /**
   * The backend (the link to the API, or Redis) is reachable (up) or not.
   * See ConnectionPolicyOptions.outage: down for afterMs, every client is
   * closed with 4004 and connections are refused until it is up again.
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
   * Refuses every later request, closes every client with code spread over
   * spreadMs, and resolves once each has ended and its session has left its
   * channels. A transport stops listening before (new requests would only be
   * refused). Later calls return the first call's promise.
   */
  close(code: number = CloseCode.Shutdown, reason = "edge shutting down", spreadMs = 0): Promise<void> {
    return (this.closed ??= this.shutdown(code, reason, spreadMs));
  }

  private async shutdown(code: number, reason: string, spreadMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.outageTimer);
    await this.closeAll(code, reason, spreadMs);
    await Promise.all(this.leaving);
  }

  /** Closes every client with code, spread over spreadMs; resolves once each connection has ended. */
  private async closeAll(code: number, reason: string, spreadMs: number): Promise<void> {
    const all = [...this.clients];
    const ended = all.map(
      (c, i) =>
        new Promise<void>((resolve) => {
          const before = c.waiter;
          c.waiter = before ? () => (before(), resolve()) : resolve;
          // Spread evenly over spreadMs, with jitter inside each slot.
          const delay = all.length > 1 ? ((i + Math.random()) * spreadMs) / all.length : 0;
          setTimeout(() => c.close(code, reason), delay).unref();
        }),
    );
    await Promise.all(ended);
  }

  /** Destroys every connection at once (the shutdown deadline passed). */
  terminateAll(): void {
    for (const c of this.clients) c.transport.terminate();
  }

  /** @internal The connection ended: its session leaves its channels. */
  ended(c: ClientConnection, code: number): void {
    this.clients.delete(c);
    const byEdge = c.closedWith !== undefined;
    const reason = this.closing ? "shutdown" : disconnectReason(c.closedWith ?? code, byEdge);
    const done = this.edge.disconnect(c.session!, reason).finally(() => this.leaving.delete(done));
    this.leaving.add(done);
    c.waiter?.();
  }

  /** @internal Told about every frame a connection drops. */
  dropped(reason: DropReason): void {
    this.observer.dropped(reason, 1);
  }
}

/**
 * One client connection under the policy: the Connection the Edge writes
 * to, over the connection's Transport, and the receiver of the transport's
 * events. What is the same for every connection (limits, observer) is read
 * from the policy, not copied here: an idle connection costs its fields.
 */
export class ClientConnection implements Connection {
  /** The close code decided (by the edge, or by the transport on its own), if any. */
  closedWith: number | undefined = undefined;
  /** The core's Session of this connection; set right after Edge.connect. */
  session: Session | undefined = undefined;
  /** @internal Heartbeat: the last round this connection was pinged in, and the last one it answered. */
  pinged = 0;
  /** @internal */
  ponged = 0;
  /** @internal Resolves whatever waits for the connection to end (ConnectionPolicy.closeAll). */
  waiter: (() => void) | undefined = undefined;

  constructor(
    readonly transport: Transport,
    private readonly policy: ConnectionPolicy,
  ) {}

  send(data: Uint8Array, text: boolean, event = false): void {
    const t = this.transport;
    if (this.closedWith !== undefined || !t.open) {
      this.policy.dropped(this.closedWith === CloseCode.SlowConsumer ? "slow_consumer" : "closed");
      return;
    }
    const max = this.policy.maxOutboundBytes;
    if (max !== undefined && t.bufferedBytes + data.length > max) {
      this.policy.dropped("slow_consumer");
      this.close(CloseCode.SlowConsumer, "slow consumer: the client did not read fast enough and its queue overflowed");
      return;
    }
    t.send(data, text, event);
  }

  close(code: number, reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    this.transport.close(code, reason);
    const ms = code === CloseCode.SlowConsumer ? this.policy.terminateMs : CLOSE_HANDSHAKE_TIMEOUT_MS;
    setTimeout(() => this.transport.terminate(), ms).unref();
  }

  /** Destroys the connection without a closing handshake, recording code unless a close was decided before. */
  terminate(code: number): void {
    this.closedWith ??= code;
    this.transport.terminate();
  }

  // --- What the transport reports ---

  /** A frame from the client: handed to the Edge, unless the connection is closing (then the reading stops). */
  received(data: Uint8Array, isBinary: boolean): void {
    if (this.closedWith !== undefined) return this.transport.stopReading();
    this.policy.edge.receive(this.session!, data, isBinary);
  }

  /** The client answered a probe (Transport.ping). */
  answered(): void {
    if (this.closedWith !== undefined) return this.transport.stopReading();
    this.ponged = this.pinged;
  }

  /**
   * The transport closed the connection on its own with code (the client
   * broke its protocol or a limit); it stops reading by itself. Returns
   * whether this is the close decision (false: one was made before, and
   * stands).
   */
  failed(code: number): boolean {
    if (this.closedWith !== undefined) return false;
    this.closedWith = code;
    setTimeout(() => this.transport.terminate(), CLOSE_HANDSHAKE_TIMEOUT_MS).unref();
    return true;
  }

  /** The connection is gone, with the code it ended with (1006: no close frame). */
  ended(code: number): void {
    this.policy.ended(this, code);
  }
}
