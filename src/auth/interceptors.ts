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
 * PERMISSION_DENIED (see ApiKeyring.authorize) before the handler runs.
 * Apply them to realtime.v1.Realtime only: grpc.health.v1.Health stays open
 * to load balancers.
 */
import type { HandlerContext, Interceptor } from "@connectrpc/connect";
import type { ApiKeyring } from "./api-keys.js";

/** The shape of src/api/grpc/adapter.ts HandlerInterceptor (kept structural so auth does not import an adapter). */
export type CallInterceptor = (ctx: HandlerContext, next: () => Promise<void>) => Promise<void>;

/** Checks the API key of every call, then runs it. No keys configured: every call runs. */
export function apiKeyHandlerInterceptor(keyring: ApiKeyring): CallInterceptor {
  return async (ctx, next) => {
    keyring.authorize(ctx.requestHeader.get("authorization"), ctx.method.name);
    await next();
  };
}

/** The same check as a connect-es server-side Interceptor. */
export function apiKeyConnectInterceptor(keyring: ApiKeyring): Interceptor {
  return (next) => async (req) => {
    keyring.authorize(req.header.get("authorization"), req.method.name);
    return next(req);
  };
}

/** Runs interceptors outermost first: chain(a, b)(ctx, next) = a(ctx, () => b(ctx, next)). */
export function chainInterceptors(...interceptors: CallInterceptor[]): CallInterceptor {
  return (ctx, next) => {
    const run = (i: number): Promise<void> => (i === interceptors.length ? next() : interceptors[i]!(ctx, () => run(i + 1)));
    return run(0);
  };
}
