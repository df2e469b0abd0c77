/**
 * Handler interceptors shared by the API's protocol adapters. The shape is
 * the gRPC adapter's `HandlerInterceptor` (src/api/grpc/adapter.ts), written
 * out here so that this file depends on no adapter: `next()` runs the rest
 * of the chain and the handler, and rejects with what they threw.
 */
import type { HandlerContext } from "@connectrpc/connect";

export type Interceptor = (ctx: HandlerContext, next: () => Promise<void>) => Promise<void>;

/**
 * Composes interceptors into one, the first outermost: it runs first, and
 * sees the outcome of every later one (a metrics interceptor placed first
 * counts the calls an auth interceptor after it rejects). `undefined`
 * entries are skipped, so optional interceptors can be listed inline.
 */
export function chainInterceptors(...interceptors: (Interceptor | undefined)[]): Interceptor {
  const list = interceptors.filter((i): i is Interceptor => i !== undefined);
  return (ctx, next) => {
    const run = (i: number): Promise<void> => (i === list.length ? next() : list[i]!(ctx, () => run(i + 1)));
    return run(0);
  };
}
