/**
 * The one error every SDK method rejects with. Codes are the gRPC status
 * numbers of the one table (src/protocol/status-codes.ts), the same numbers
 * as realtime.client.v1.ErrorCode and the server's `Code`, so a code means
 * the same thing whether the edge sent it or the SDK decided it locally.
 */
import { Code, CODE_NAMES } from "../protocol/status-codes.js";

/**
 * The closed set of codes a {@link RealtimeClientError} carries. The edge
 * sends the codes it documents in client.proto (InvalidArgument,
 * PermissionDenied, ResourceExhausted, FailedPrecondition, Unimplemented,
 * Internal, Unavailable, Unauthenticated); the SDK adds three of its own:
 *  - Canceled: the application called close() before the reply came.
 *  - DeadlineExceeded: no reply within `requestTimeoutMs`.
 *  - Unavailable (also sent by the edge): the connection closed before the
 *    reply came, or there was no connection and none was coming.
 * and Unknown for what is not a RealtimeClientError (a listener that threw).
 * The numbers come from the one table; only the SDK's subset is listed.
 */
export const ErrorCode = {
  Canceled: Code.Canceled,
  Unknown: Code.Unknown,
  InvalidArgument: Code.InvalidArgument,
  DeadlineExceeded: Code.DeadlineExceeded,
  NotFound: Code.NotFound,
  PermissionDenied: Code.PermissionDenied,
  ResourceExhausted: Code.ResourceExhausted,
  FailedPrecondition: Code.FailedPrecondition,
  Unimplemented: Code.Unimplemented,
  Internal: Code.Internal,
  Unavailable: Code.Unavailable,
  Unauthenticated: Code.Unauthenticated,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Returns gRPC's canonical name of code ("INVALID_ARGUMENT", "CANCELLED");
 * a number that is no gRPC status code (a newer edge) becomes "CODE_<n>"
 * rather than being lost.
 */
export function codeName(code: number): string {
  return (CODE_NAMES as readonly string[])[code] ?? `CODE_${code}`;
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
