/**
 * The API-key check, in the two shapes the API's protocol adapters take, so
 * that gRPC and Connect refuse exactly the same calls with the same codes:
 *
 * - {@link apiKeyHandlerInterceptor}: a HandlerInterceptor, for the gRPC
 *   adapter's `addService(server, Realtime, impl, { interceptHandler })`
 *   (src/api/grpc/adapter.ts), and for any adapter that wraps a call as
 *   `(ctx: HandlerContext, next) => Promise<void>`.
 * - {@link apiKeyConnectInterceptor}: a connect-es `Interceptor`, for
 *   `connectNodeAdapter({ routes, interceptors: [apiKeyConnectInterceptor(keyring)] })`
 *   (connect-node runs server-side interceptors before the handler).
 *
 * Both read the `authorization` request header and the method's proto name
 * (`Send`, `GetMembers`...), and throw ConnectError UNAUTHENTICATED or
 * PERMISSION_DENIED (see ApiKeyring.authorize) before the handler runs; a
 * call let through has its key's fingerprint in `ctx.values` (API_KEY).
 * Apply them to realtime.v1.Realtime only: grpc.health.v1.Health stays open
 * to load balancers.
 */
import { Code, ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { API_KEY } from "../api/call-context.js";
import type { ApiKeyring } from "./api-keys.js";

/** The shape of src/api/grpc/adapter.ts HandlerInterceptor (kept structural so auth does not import an adapter). */
export type CallInterceptor = (ctx: HandlerContext, next: () => Promise<void>) => Promise<void>;

/** Checks the API key of every call, then runs it. No keys configured: every call runs. */
export function apiKeyHandlerInterceptor(keyring: ApiKeyring): CallInterceptor {
  return async (ctx, next) => {
    const key = keyring.authorize(ctx.requestHeader.get("authorization"), ctx.method.name);
    if (key) ctx.values.set(API_KEY, key.fingerprint);
    await next();
  };
}

/**
 * The same check as a connect-es server-side Interceptor. A Connect server
 * serves several services through one interceptor list: only the services
 * named in `services` (type names) are checked, realtime.v1.Realtime by
 * default, so that health checks need no key.
 */
export function apiKeyConnectInterceptor(
  keyring: ApiKeyring,
  services: readonly string[] = [REALTIME_SERVICE],
): Interceptor {
  return (next) => async (req) => {
    if (services.includes(req.service.typeName)) {
      const key = keyring.authorize(req.header.get("authorization"), req.method.name);
      if (key) req.contextValues.set(API_KEY, key.fingerprint);
    }
    return next(req);
  };
}

/** The type name of the service API keys guard. */
export const REALTIME_SERVICE = "realtime.v1.Realtime";

/**
 * The gate of a draining API: once close() is called, new calls of the
 * guarded services fail with UNAVAILABLE ("retry elsewhere") before their
 * handler runs, while calls already running finish. Health is not guarded,
 * so it keeps answering NOT_SERVING.
 */
export interface DrainGate {
  readonly handler: CallInterceptor;
  connect(services?: readonly string[]): Interceptor;
  /** From now on, new calls are refused. */
  close(): void;
  /** Calls of guarded services running now. */
  readonly inFlight: number;
}

export function createDrainGate(): DrainGate {
  let closed = false;
  let inFlight = 0;
  const refuse = () => new ConnectError("the server is shutting down: retry (on another instance)", Code.Unavailable);
  return {
    handler: async (_ctx, next) => {
      if (closed) throw refuse();
      inFlight++;
      try {
        await next();
      } finally {
        inFlight--;
      }
    },
    connect:
      (services = [REALTIME_SERVICE]) =>
      (next) =>
      async (req) => {
        if (!services.includes(req.service.typeName)) return next(req);
        if (closed) throw refuse();
        inFlight++;
        try {
          return await next(req);
        } finally {
          inFlight--;
        }
      },
    close: () => {
      closed = true;
    },
    get inFlight() {
      return inFlight;
    },
  };
}
