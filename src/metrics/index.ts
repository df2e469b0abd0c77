/** Operations: metrics, readiness and the HTTP endpoints that expose them. */
export {
  createMetrics,
  DELIVERY_LATENCY_BUCKETS,
  METRIC_PREFIX,
  RPC_DURATION_BUCKETS,
  type EdgeLevels,
  type HubLevels,
  type Metrics,
  type MetricsOptions,
} from "./metrics.js";
export { Readiness, type Phase, type ReadinessStatus } from "./readiness.js";
export { createOpsHandler, OPS_PATHS, type OpsHandler, type OpsHandlerOptions } from "./http.js";
export { rpcMetricsInterceptor } from "./rpc.js";
export { VERSION } from "./version.js";
