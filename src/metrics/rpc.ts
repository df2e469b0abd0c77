/**
 * RPC metrics for the API's adapters: count and latency of every call, by
 * service, method and status code. Method labels come from the registered
 * services' descriptors and codes from the 17 gRPC codes, so cardinality is
 * bounded by the contract, never by traffic.
 */
import { ConnectError, type Interceptor as ConnectInterceptor } from "@connectrpc/connect";
import { RealtimeError } from "../protocol/errors.js";
import { Code } from "../protocol/status-codes.js";
import type { Interceptor } from "../api/interceptors.js";
import { codeLabel, type Metrics } from "./metrics.js";

/** The gRPC code name a failure is answered with (the adapters' own mapping: anything unknown is INTERNAL). */
export function codeName(err: unknown): string {
  return codeLabel(err instanceof ConnectError || err instanceof RealtimeError ? err.code : Code.Internal);
}

/**
 * An interceptor for the gRPC adapter's `interceptHandler` (compose it with
 * chainInterceptors, first, so that it also sees calls that later
 * interceptors reject).
 */
export function rpcMetricsInterceptor(metrics: Metrics): Interceptor {
  return async (ctx, next) => {
    const start = process.hrtime.bigint();
    let code = "OK";
    try {
      await next();
    } catch (err) {
      code = codeName(err);
      throw err;
    } finally {
      metrics.rpc(ctx.service.typeName, ctx.method.name, code, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
}

/**
 * The same for a Connect server (connect-node's `interceptors` option). A
 * streaming response is timed until the handler returns its stream, not
 * until the stream ends.
 */
export function rpcMetricsConnectInterceptor(metrics: Metrics): ConnectInterceptor {
  return (next) => async (req) => {
    const start = process.hrtime.bigint();
    let code = "OK";
    try {
      return await next(req);
    } catch (err) {
      code = codeName(err);
      throw err;
    } finally {
      metrics.rpc(req.service.typeName, req.method.name, code, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
}
