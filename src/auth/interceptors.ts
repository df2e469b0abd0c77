/**
 * The API-key check as an RPC interceptor (src/api/interceptors.ts), so that
 * gRPC and Connect refuse exactly the same calls with the same codes: it
 * reads the `authorization` request header and the method's proto name
 * (`Send`, `GetMembers`...), and throws ConnectError UNAUTHENTICATED or
 * PERMISSION_DENIED (see ApiKeyring.authorize) before the handler runs; a
 * call let through has its key's fingerprint in `ctx.values` (API_KEY),
 * which WatchChannel's per-key bound reads. Give it to realtime.v1.Realtime
 * only: grpc.health.v1.Health stays open to load balancers.
 */
import { API_KEY } from "../api/call-context.js";
import type { Interceptor } from "../api/interceptors.js";
import type { ApiKeyring } from "./api-keys.js";

/** Checks the API key of every call, then runs it. No keys configured: every call runs. */
export function apiKeyInterceptor(keyring: ApiKeyring): Interceptor {
  return async (call, next) => {
    const key = keyring.authorize(call.requestHeader.get("authorization"), call.method.name);
    if (key) call.values.set(API_KEY, key.fingerprint);
    await next();
  };
}
