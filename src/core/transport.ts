/**
 * The Transport seam: one client connection as a transport carries it. The
 * WebSocket edge (src/edge/, over `ws`) is one; an SSE or WebTransport edge
 * would be another. A transport does its handshake and its framing, and
 * nothing else: who may connect, when a connection is probed, how much may
 * wait for it, and how and when it ends are the connection policy's
 * (connections.ts, admission.ts), the same for every transport.
 *
 * The seam has two sides:
 *  - Transport: what a transport provides for one open connection; the
 *    policy calls it.
 *  - Connection: what the core writes to. The policy's ClientConnection
 *    implements it over a Transport (with the queue bound and the rules of
 *    a close); the Edge holds one per Session; unit tests implement it in
 *    memory.
 * What happens on the connection, the transport reports to its
 * ClientConnection: a frame (received), the answer to a probe (answered),
 * a close it made on its own (failed), the end (ended).
 *
 * Close codes are the one closed set of protocol/close-codes.ts whatever the
 * transport; one without close frames (SSE) carries the code and the reason
 * in its last message. Refusals before a connection exists are HTTP
 * statuses (admission.ts).
 */
export interface Transport {
  /**
   * True while frames may be written: the connection is open and neither
   * side has begun to close it.
   */
  readonly open: boolean;

  /**
   * Bytes written but not yet handed to the network: the transport's own
   * buffer plus the socket's. Every send() counts here until it leaves.
   */
  readonly bufferedBytes: number;

  /**
   * Writes one frame: text=true a text frame (the JSON encoding), otherwise
   * binary. Frames leave in call order, and in order with the transport's
   * own (probes, the close). The same data object is passed to many
   * transports: it must not be modified. event: data is a ServerFrame{event}
   * (client-codec.ts binaryEventFrame, jsonEventFrame), which a transport
   * may pack with the connection's next ones into one ServerFrame{events}
   * (REALTIME_WRITE_BATCH), in the same order with its other frames.
   */
  send(data: Uint8Array, text: boolean, event?: boolean): void;

  /**
   * Begins the closing handshake with a code of close-codes.ts and a reason.
   * From now on a frame of the client that the transport handles without
   * reporting it (a WebSocket ping, which ws answers itself) must stop the
   * reading, as stopReading() does; the others the policy sees (received,
   * answered) and stops itself.
   */
  close(code: number, reason: string): void;

  /** Destroys the connection now, without a closing handshake. ended() follows. */
  terminate(): void;

  /**
   * Sends a liveness probe (a WebSocket ping) whose answer the transport
   * reports with answered(). A transport without one (SSE: the client
   * cannot answer) leaves it out, and the heartbeat skips its connections.
   */
  ping?(): void;

  /**
   * Reads nothing more from the network: what the client writes stays in
   * the kernel's buffers and flow control holds it back. The connection is
   * destroyed by the policy's timer, or ends when the client goes.
   */
  stopReading(): void;
}

/**
 * One client connection as the core writes to it: what the Edge holds per
 * Session.
 */
export interface Connection {
  /**
   * Queues one frame for the client (see Transport.send). A frame that comes
   * after the close decision, or that would overflow the connection's
   * queue, is dropped and counted (the overflow is itself a close decision,
   * 4001); the caller need not check. event: see Transport.send.
   */
  send(data: Uint8Array, text: boolean, event?: boolean): void;

  /**
   * The close decision, with a code from close-codes.ts and a reason. From
   * this call on none of the connection's frames reaches the Edge
   * (Edge.receive), and none is sent; the first code given is the one the
   * client sees. Edge.disconnect follows once the connection is gone.
   */
  close(code: number, reason: string): void;
}
