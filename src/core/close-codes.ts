/**
 * WebSocket close codes an edge uses, one closed set. The range tells a
 * client what to do:
 *   1000-1015  standard codes (RFC 6455 section 7.4.1); 1009 = frame too big
 *   4000-4499  the client may reconnect (with backoff and jitter)
 *   4500-4999  the client must not reconnect until it changes something
 *              (its token, its code): reconnecting would fail the same way
 * docs/protocol.md documents each code; the SDK exports this table.
 */
export const CloseCode = {
  /** Normal closure, by either side. */
  Normal: 1000,
  /** The edge is going away (shutdown or restart): reconnect elsewhere/later. */
  GoingAway: 1001,
  /** The client broke RFC 6455 framing: a bad opcode, an unmasked frame, reserved bits, a bad close frame. */
  BadFrame: 1002,
  /** A text frame (or a close reason) was not valid UTF-8. */
  InvalidUtf8: 1007,
  /**
   * A message arrived in more parts than the edge holds: more than
   * MAX_MESSAGE_FRAGMENTS frames, or a frame in too many small reads
   * (MIN_AVERAGE_READ_BYTES, limits.ts).
   */
  TooManyParts: 1008,
  /** A frame was larger than the edge accepts. */
  MessageTooBig: 1009,
  /** An unexpected fault in the edge. */
  InternalError: 1011,

  /** The edge is shutting down; reconnect after a short, jittered delay. */
  Shutdown: 4000,
  /** The client read too slowly and its outbound queue overflowed. */
  SlowConsumer: 4001,
  /** The client did not answer heartbeats in time. */
  HeartbeatTimeout: 4002,
  /** The client's token expired and was not refreshed in time. */
  TokenExpired: 4003,
  /** The edge lost its link to the rest of the service for too long. */
  Unavailable: 4004,

  /** The client broke the protocol (too many malformed frames). */
  ProtocolError: 4500,
  /** The client offered no subprotocol this edge speaks. */
  UnsupportedProtocol: 4501,
  /** Authentication failed or is missing. */
  Unauthorized: 4502,
  /** The client kept going past its error budget (rate limits, denials). */
  PolicyViolation: 4503,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** True when a client that was closed with code should try to reconnect. */
export function shouldReconnect(code: number): boolean {
  if (code >= 4000 && code < 4500) return true;
  if (code >= 4500 && code < 5000) return false;
  // Standard codes: a normal closure that the client asked for is final;
  // the server going away, abnormal closure and internal errors are not.
  return code === 1001 || code === 1006 || code === 1011 || code === 1012 || code === 1013;
}
