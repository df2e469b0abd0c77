import { ConnectError } from "@connectrpc/connect";
import { Code } from "../protocol/status-codes.js";

/**
 * A signal that aborts with UNAVAILABLE ("the server is shutting down") when
 * `signal` aborts: what a call in flight sees when its server drains. Shared
 * by the gRPC and the Connect adapter, so both answer a drain the same way.
 */
export function unavailableOnAbort(signal: AbortSignal | undefined): AbortSignal | undefined {
  if (!signal) return undefined;
  const controller = new AbortController();
  const reason = () => new ConnectError("the server is shutting down", Code.Unavailable);
  if (signal.aborted) controller.abort(reason());
  else signal.addEventListener("abort", () => controller.abort(reason()), { once: true });
  return controller.signal;
}
