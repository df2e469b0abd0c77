/**
 * The one error every SDK method rejects with. Codes are the gRPC status
 * numbers, the same numbers as realtime.client.v1.ErrorCode and the
 * server's `Code` (src/core/errors.ts), so a code means the same thing
 * whether the edge sent it or the SDK decided it locally.
 */

/**
 * The closed set of codes a {@link RealtimeClientError} carries. The edge
 * sends the codes it documents in client.proto (InvalidArgument,
 * PermissionDenied, ResourceExhausted, FailedPrecondition, Unimplemented,
 * Internal, Unavailable, Unauthenticated); the SDK adds three of its own:
 *  - Canceled: the application called close() before the reply came.
 *  - DeadlineExceeded: no reply within `requestTimeoutMs`.
 *  - Unavailable (also sent by the edge): the connection closed before the
 *    reply came, or there was no connection and none was coming.
 */
export const ErrorCode = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** gRPC's canonical names, e.g. 3 → "INVALID_ARGUMENT". */
const CODE_NAMES: Readonly<Record<number, string>> = {
  1: "CANCELED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  16: "UNAUTHENTICATED",
};

/**
 * Returns gRPC's canonical name of code ("INVALID_ARGUMENT"); a code outside
 * the set (a newer edge) becomes "CODE_<n>" rather than being lost.
 */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/**
 * RealtimeClientError is why a call failed: an error reply from the edge, a
 * timeout, or a connection that ended before the reply. `code` is stable and
 * meant for programs; `message` is written for a person.
 */
export class RealtimeClientError extends Error {
  override readonly name = "RealtimeClientError";
  /** The gRPC status name of code, e.g. "FAILED_PRECONDITION". */
  readonly codeName: string;

  constructor(
    /** One of {@link ErrorCode}; a newer edge may send a number not listed. */
    readonly code: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.codeName = codeName(code);
  }
}

/**
 * Returns err as a RealtimeClientError, so that onError listeners see one
 * type; anything else (a throwing listener, a bad frame) becomes Unknown with
 * the original as `cause`.
 */
export function asRealtimeClientError(err: unknown): RealtimeClientError {
  if (err instanceof RealtimeClientError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RealtimeClientError(ErrorCode.Unknown, message, { cause: err });
}
