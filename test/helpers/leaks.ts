/**
 * The no-leaked-handles check of the gRPC tests: once every server and
 * client is closed, no socket is open and no timer created by grpc-js,
 * connect's core or src/api/ is pending. (connect-node's client keeps an
 * unref'd idle timer after abort(), so connect-node is not watched.)
 */
import { createHook } from "node:async_hooks";
import { expect } from "vitest";

const WATCHED = /@grpc\/grpc-js|@connectrpc\/connect\/|src\/api\//;
const SOCKETS = /TCP|Http2/;

export interface LeakWatch {
  /** Starts recording timers; call before anything is created. */
  start(): void;
  /** Fails the test file if a socket or a watched timer is still there. */
  check(): Promise<void>;
}

export function watchLeaks(): LeakWatch {
  const pendingTimers = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      const stack = new Error().stack ?? "";
      if (type === "Timeout" && WATCHED.test(stack)) pendingTimers.set(id, stack);
    },
    destroy: (id) => void pendingTimers.delete(id),
  });
  return {
    start: () => void hook.enable(),
    async check() {
      // A closed socket's handle goes a few ticks later on Node 24 than on 20:
      // wait for that (at most 1 s); a handle still open after it is a leak.
      for (let i = 0; i < 100 && process.getActiveResourcesInfo().some((r) => SOCKETS.test(r)); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      hook.disable();
      expect([...pendingTimers.values()]).toEqual([]);
      expect(process.getActiveResourcesInfo().filter((r) => SOCKETS.test(r))).toEqual([]);
    },
  };
}
