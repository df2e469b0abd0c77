/**
 * The one closed set of reasons an operation fails, shared by the gRPC API,
 * the Connect API and the client protocol. The numbers are the gRPC status
 * codes of the same name (and realtime.client.v1.ErrorCode uses them too),
 * so an adapter maps a RealtimeError to its protocol without a table.
 */
export enum Code {
  InvalidArgument = 3,
  NotFound = 5,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  Unauthenticated = 16,
}

/**
 * RealtimeError is the only error the core throws on purpose. Its message is
 * written for the person who has to fix the request: it names the field and
 * the rule that was broken.
 */
export class RealtimeError extends Error {
  override readonly name = "RealtimeError";
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
  }
}

/** Returns err as a RealtimeError; anything unexpected becomes Internal. */
export function asRealtimeError(err: unknown): RealtimeError {
  if (err instanceof RealtimeError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RealtimeError(Code.Internal, `internal error: ${message}`);
}
