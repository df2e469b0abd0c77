/**
 * The one shape of an RPC concern (API keys, the drain gate, RPC metrics,
 * failure logging): written once against {@link Interceptor}, and plugged
 * into both ports at the edge, by their adapters: a service's entry
 * (`serviceEntry(service, impl, { interceptor })`, src/api/service-entry.ts)
 * carries it, and
 * - the gRPC adapter (src/api/grpc/adapter.ts, addService) runs it with the
 *   call's HandlerContext, which is an InterceptedCall as it is;
 * - the Connect adapter (src/api/connect/adapter.ts) runs it as a
 *   connect-es server-side Interceptor (toConnectInterceptor).
 * An interceptor is given per service, so a service it is not given to
 * (grpc.health.v1.Health, for API keys and the drain gate) never sees it.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { ContextValues } from "@connectrpc/connect";

/**
 * What an interceptor knows of a call before its handler runs, on either
 * port (a HandlerContext is one).
 */
export interface InterceptedCall {
  readonly service: DescService;
  readonly method: DescMethod;
  /** Request headers (gRPC metadata; `-bin` values base64, as on the wire). */
  readonly requestHeader: Headers;
  /** Values for the handler (src/api/call-context.ts): what an interceptor sets here, the handler reads. */
  readonly values: ContextValues;
}

/**
 * Wraps a call. `next()` runs the rest of the chain and the handler, and
 * rejects with what they threw (a ConnectError, a RealtimeError, anything
 * else), before that is mapped to a status. An interceptor may throw (a
 * ConnectError, to answer with its code) without calling `next()`, e.g. to
 * refuse a missing `authorization` header, and may set `call.values` for
 * the handler.
 *
 * When `next()` settles: over gRPC once the handler is done (for a
 * streaming response: once its last message is written); over Connect
 * once the handler has returned (for a streaming response: once it has
 * returned its stream, before the stream ends).
 */
export type Interceptor = (call: InterceptedCall, next: () => Promise<void>) => Promise<void>;

/**
 * Composes interceptors into one, the first outermost: it runs first, and
 * sees the outcome of every later one (a metrics interceptor placed first
 * counts the calls an auth interceptor after it rejects). `undefined`
 * entries are skipped, so optional interceptors can be listed inline.
 */
export function chainInterceptors(...interceptors: (Interceptor | undefined)[]): Interceptor {
  const list = interceptors.filter((i): i is Interceptor => i !== undefined);
  return (call, next) => {
    const run = (i: number): Promise<void> => (i === list.length ? next() : list[i]!(call, () => run(i + 1)));
    return run(0);
  };
}

/** What the failure log needs of a logger (src/log.ts's pino Logger is one). */
export interface DebugLog {
  debug(fields: object, message: string): void;
}

/**
 * Logs every failed call at debug ("call failed", with the method and the
 * error: a cause that is not sent to the client, such as an INTERNAL's, is
 * seen here), then lets the failure go on.
 */
export function failureLogInterceptor(log: DebugLog): Interceptor {
  return async (call, next) => {
    try {
      await next();
    } catch (err) {
      log.debug({ method: call.method.name, err }, "call failed");
      throw err;
    }
  };
}
