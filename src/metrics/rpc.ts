/**
 * RPC metrics for the API's ports: count and latency of every call, by
 * service, method and status code. Method labels come from the registered
 * services' descriptors and codes from the 17 gRPC codes, so cardinality is
 * bounded by the contract, never by traffic.
 */
import type { Interceptor } from "../api/interceptors.js";
import { statusCodeOf } from "../api/status.js";
import { codeLabel, type Metrics } from "./metrics.js";

/**
 * An RPC interceptor (src/api/interceptors.ts) that counts and times every
 * call. Place it first in chainInterceptors, so that it also sees calls that
 * later interceptors reject. A streaming response is timed until `next()`
 * settles: over gRPC until the stream ends, over Connect until the handler
 * returns its stream.
 */
export function rpcMetricsInterceptor(metrics: Metrics): Interceptor {
  return async (call, next) => {
    const start = process.hrtime.bigint();
    let code = "OK";
    try {
      await next();
    } catch (err) {
      code = codeLabel(statusCodeOf(err));
      throw err;
    } finally {
      metrics.rpc(call.service.typeName, call.method.name, code, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };
}
