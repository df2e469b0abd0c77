/**
 * grpc.health.v1.Health, as specified in
 * https://github.com/grpc/grpc/blob/master/doc/health-checking.md, over a
 * small in-memory table of serving statuses that the API process updates
 * (e.g. NOT_SERVING under "" while it drains). Served on both ports, like
 * the service (src/roles/api.ts).
 */
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { Code } from "../protocol/status-codes.js";

export { ServingStatus };

/** The service name under which the server's overall status is kept (per the health protocol). */
export const OVERALL_SERVICE = "";

/**
 * List answers RESOURCE_EXHAUSTED above this many services, as the protocol
 * allows (grpc-go uses the same limit).
 */
export const MAX_LISTED_SERVICES = 100;

/** A table of serving statuses and the Health service that reports it. */
export interface HealthState {
  /**
   * Sets the status of `service` ({@link OVERALL_SERVICE} for the whole
   * server). Every Watch of that service receives it, unless it equals the
   * last status that Watch sent; a slow watcher receives only the latest.
   */
  set(service: string, status: ServingStatus): void;
  /** The status of `service`, or undefined if it was never set. */
  get(service: string): ServingStatus | undefined;
  /** The service to pass to addService: `addService(server, Health, health.impl)`. */
  readonly service: typeof Health;
  /**
   * Check: the status, or NOT_FOUND for a service never set. Watch: the
   * current status at once (SERVICE_UNKNOWN for a service never set), then
   * every change, until the call ends; it never ends on its own, so abort it
   * on shutdown (addService's `shutdownSignal`). List: every service, or
   * RESOURCE_EXHAUSTED above {@link MAX_LISTED_SERVICES}.
   */
  readonly impl: ServiceImpl<typeof Health>;
}

/**
 * Creates a health table whose overall status ({@link OVERALL_SERVICE}) starts
 * as SERVING, and no other service is known.
 */
export function createHealth(): HealthState {
  const statuses = new Map<string, ServingStatus>([[OVERALL_SERVICE, ServingStatus.SERVING]]);
  const watchers = new Map<string, Set<(status: ServingStatus) => void>>();

  function set(service: string, status: ServingStatus): void {
    statuses.set(service, status);
    for (const notify of watchers.get(service) ?? []) notify(status);
  }

  function subscribe(service: string, notify: (status: ServingStatus) => void): () => void {
    let listeners = watchers.get(service);
    if (!listeners) watchers.set(service, (listeners = new Set()));
    listeners.add(notify);
    return () => {
      listeners.delete(notify);
      if (listeners.size === 0) watchers.delete(service);
    };
  }

  async function* watch(service: string, ctx: HandlerContext) {
    // Latest status not yet sent; set() overwrites it, so a slow client
    // never makes this queue grow.
    let pending: ServingStatus | undefined = statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
    let wake: (() => void) | undefined;
    const unsubscribe = subscribe(service, (status) => {
      pending = status;
      wake?.();
    });
    const onAbort = () => wake?.();
    ctx.signal.addEventListener("abort", onAbort);
    try {
      let sent: ServingStatus | undefined;
      while (!ctx.signal.aborted) {
        const status = pending;
        pending = undefined;
        if (status !== undefined && status !== sent) {
          sent = status;
          yield { status };
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      unsubscribe();
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  const impl: ServiceImpl<typeof Health> = {
    check(req) {
      const status = statuses.get(req.service);
      if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
      return { status };
    },
    watch: (req, ctx) => watch(req.service, ctx),
    list() {
      if (statuses.size > MAX_LISTED_SERVICES) {
        throw new ConnectError(`more than ${MAX_LISTED_SERVICES} services`, Code.ResourceExhausted);
      }
      const list: Record<string, { status: ServingStatus }> = {};
      for (const [service, status] of statuses) list[service] = { status };
      return { statuses: list };
    },
  };

  return { set, get: (service) => statuses.get(service), service: Health, impl };
}
