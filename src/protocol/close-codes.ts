/**
 * WebSocket close codes an edge uses, one closed set: every code in it is
 * one the edge sends (or answers a client with), none is only reserved.
 * The range tells a client what to do:
 *   1000-1015  standard codes (RFC 6455 section 7.4.1); 1002, 1007, 1008 and
 *              1009 are the ones ws sends on its own when a client breaks
 *              RFC 6455 or a limit of the edge (edge/ws-server.ts maps them)
 *   4000-4499  the client may reconnect (with backoff and jitter)
 *   4500-4999  the client must not reconnect until it changes something
 *              (its token, its code): reconnecting would fail the same way
 * Refusals before the handshake (no token, unknown subprotocol, origin) are
 * HTTP statuses, not close codes. docs/protocol.md documents each code; the
 * SDK exports this table.
 */
export const CloseCode = {
  /** Normal closure, by the client; the edge answers with the same code. */
  Normal: 1000,
  /** The client is going away (a browser leaving the page); the edge answers with the same code. */
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

  /** The edge is shutting down; reconnect after a short, jittered delay. */
  Shutdown: 4000,
  /** The client read too slowly and its outbound queue overflowed. */
  SlowConsumer: 4001,
  /** The client did not answer heartbeats in time (recorded; the terminated client sees 1006). */
  HeartbeatTimeout: 4002,
  /** The client's token expired and was not refreshed in time. */
  TokenExpired: 4003,
  /** The edge lost its link to the rest of the service (the API, or Redis) for too long. */
  Unavailable: 4004,
  /** The backend closed this connection (realtime.v1 Disconnect, reconnect = true): reconnect after a delay. */
  Disconnected: 4005,

  /** The client kept going past its error budget (rate limits, denials, malformed frames). */
  PolicyViolation: 4503,
  /**
   * The backend closed this connection (realtime.v1 Disconnect, reconnect =
   * false): do not reconnect until something changes (a new login, a new token).
   */
  DisconnectedFinal: 4505,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** True when a client that was closed with code should try to reconnect. */
export function shouldReconnect(code: number): boolean {
  if (code >= 4000 && code < 4500) return true;
  if (code >= 4500 && code < 5000) return false;
  // Standard codes: a normal closure that the client asked for is final;
  // going away, an abnormal closure, and what a proxy in front may send
  // (1011 internal error, 1012 restart, 1013 try later) are not.
  return code === 1001 || code === 1006 || code === 1011 || code === 1012 || code === 1013;
}
