/**
 * The gate of a draining API: once close() is called, new calls fail with
 * UNAVAILABLE ("retry elsewhere") before their handler runs, while calls
 * already running finish. Give its interceptor to realtime.v1.Realtime
 * only: health is not guarded, so it keeps answering NOT_SERVING.
 */
import { ConnectError } from "@connectrpc/connect";
import { Code } from "../protocol/status-codes.js";
import type { Interceptor } from "./interceptors.js";

export interface DrainGate {
  /** Refuses new calls once the gate is closed. */
  readonly interceptor: Interceptor;
  /** From now on, new calls are refused. */
  close(): void;
}

export function createDrainGate(): DrainGate {
  let closed = false;
  return {
    interceptor: async (_call, next) => {
      if (closed) throw new ConnectError("the server is shutting down: retry (on another instance)", Code.Unavailable);
      await next();
    },
    close: () => {
      closed = true;
    },
  };
}
