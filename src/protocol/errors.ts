import { Code } from "./status-codes.js";

/**
 * The codes a RealtimeError carries: the one table of status codes
 * (status-codes.ts), re-exported beside the error that carries them. The
 * numbers are the gRPC status codes (realtime.client.v1.ErrorCode uses
 * them too), so an adapter maps a RealtimeError to its protocol without a
 * table.
 */
export { Code };

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
