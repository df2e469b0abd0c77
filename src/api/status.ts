import { ConnectError } from "@connectrpc/connect";
import { RealtimeError } from "../protocol/errors.js";
import { Code } from "../protocol/status-codes.js";

/**
 * The status code of a failure: the code of a ConnectError (connect's Code
 * numbers are gRPC's) or of a RealtimeError; anything else is INTERNAL (a
 * bug, not the caller's fault). What the gRPC adapter answers with and
 * what the RPC metrics count, on both ports.
 */
export function statusCodeOf(err: unknown): Code {
  if (err instanceof ConnectError || err instanceof RealtimeError) return err.code as Code;
  return Code.Internal;
}
