/**
 * One service as both ports serve it: the generated descriptor, its one
 * implementation, and how its calls are read and wrapped. The gRPC port
 * (src/api/grpc/server.ts) and the HTTP port (src/api/connect/server.ts)
 * take the same entries, so a service is described once for both.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Interceptor } from "./interceptors.js";
import type { RequestDecoders } from "./undecodable.js";

/** How a service's calls are read and wrapped, on either port. Every field is optional. */
export interface ServiceOptions {
  /** Decoders for its request messages instead of protobuf-es's (see RequestDecoders). Default: none. */
  requestDecoders?: RequestDecoders;
  /** Runs around every call of the service (src/api/interceptors.ts). Default: none. */
  interceptor?: Interceptor;
}

/** One service to serve. */
export interface ServiceEntry extends ServiceOptions {
  service: DescService;
  /** A Partial<ServiceImpl<typeof service>>; methods missing answer UNIMPLEMENTED. */
  impl: object;
}

/** A typed ServiceEntry: checks that impl implements service. */
export function serviceEntry<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: ServiceOptions = {},
): ServiceEntry {
  return { service, impl, ...options };
}
