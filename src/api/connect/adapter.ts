/**
 * Serves connect-style `ServiceImpl`s (from gen/, protoc-gen-es v2) with
 * connect-node, over the Connect protocol (JSON and binary) and gRPC-Web:
 * the same implementations that src/api/grpc/adapter.ts serves with
 * grpc-js, so a method added once appears on both.
 *
 * The wire protocols are connect-node's job
 * (https://connectrpc.com/docs/protocol, https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md);
 * this file only sets the limits and answers what connect-node leaves bare.
 */
import {
  ConnectError,
  createConnectRouter,
  createContextValues,
  type Interceptor as ConnectInterceptor,
} from "@connectrpc/connect";
// Public enough: types only, of an exported subpath, none marked @private; the public ConnectRouter.handlers is UniversalHandler[].
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Code } from "../../protocol/status-codes.js";
import { CONNECTION } from "../call-context.js";
import type { Interceptor } from "../interceptors.js";
import type { ServiceEntry } from "../service-entry.js";
import { unavailableOnAbort } from "../shutdown-signal.js";
import { requestDecoder } from "../undecodable.js";
import { methodMismatch, parseRpcContentType } from "./content-type.js";
import { checkRequests, undecodableInterceptor } from "./request-check.js";

/** A node:http request handler (what connectNodeAdapter returns, for HTTP/1.1). */
export type NodeHandlerFn = (req: IncomingMessage, res: ServerResponse) => void;

/** Options of {@link createConnectHandler}. */
export interface ConnectHandlerOptions {
  /**
   * Largest request message, in bytes; larger gets RESOURCE_EXHAUSTED.
   * Required: connect-node's own default is about 4 GiB.
   */
  readMaxBytes: number;
  /**
   * When it aborts, the `ctx.signal` of every call in flight aborts with
   * UNAVAILABLE, so that long-lived streams (WatchChannel) end and the HTTP
   * server can close. Default: none.
   */
  shutdownSignal?: AbortSignal;
  /** Answers requests that are not RPCs (the dashboard). Default: 404. */
  fallback?: NodeHandlerFn;
}

/** The compressions the HTTP port accepts (connectNodeAdapter's default). */
const ACCEPT_COMPRESSION = [compressionGzip, compressionBrotli];

/**
 * The API's RPC interceptor (src/api/interceptors.ts) as a connect-es
 * server-side Interceptor: the adapter function of this port. It sees the
 * call as connect-node hands it to interceptors (service, method, request
 * header, context values), and its `next()` settles once the handler has
 * returned: for a streaming response, once it has returned its stream.
 */
export function toConnectInterceptor(interceptor: Interceptor): ConnectInterceptor {
  return (next) => async (req) => {
    let res: Awaited<ReturnType<typeof next>> | undefined;
    await interceptor(
      { service: req.service, method: req.method, requestHeader: req.header, values: req.contextValues },
      async () => {
        res = await next(req);
      },
    );
    if (!res) throw new ConnectError("an interceptor resolved without running the call", Code.Internal);
    return res;
  };
}

/**
 * Creates a Node request handler (for node:http or node:http2) serving
 * `services`. Guarantees, for every call:
 * - a handler's ConnectError goes out with its code and message, as over
 *   gRPC (the service turns RealtimeErrors into ConnectErrors itself);
 * - a request message larger than `readMaxBytes` is RESOURCE_EXHAUSTED;
 * - a request message that is not valid protobuf is INVALID_ARGUMENT, with
 *   the gRPC port's message, after the interceptors that run before the
 *   handler (metrics count it; a bad API key is refused first), and on a
 *   client or bidi stream only that message fails (request-check.ts);
 * - a POST to an RPC path with a content type this port does not serve
 *   (content-type.ts) gets HTTP 415 and a body that says what to send
 *   (connect-node alone sends 415 with an empty body); a bidi method over
 *   HTTP/1.1, which connect-node cannot serve, gets 505 and a body that says
 *   where to call it;
 * - `ctx.values.get(CONNECTION)` names the connection the call came on;
 * - a service's `interceptor` runs around each of its calls, before the
 *   check of undecodable requests (see {@link toConnectInterceptor});
 * - after an answer decided before the request body was read to its end
 *   (a body refused as too large), the client's next call is answered, not
 *   stuck behind the unread body on the same HTTP/1.1 connection
 *   (closeIfUnread);
 * - other paths go to `fallback`.
 *
 * It is connectNodeAdapter's dispatch (path, then protocol by content type)
 * written out with connect's public pieces (createConnectRouter, the
 * universal request and response of connect-node), so that each
 * UniversalHandler can be wrapped by checkRequests.
 */
export function createConnectHandler(services: readonly ServiceEntry[], options: ConnectHandlerOptions): NodeHandlerFn {
  const router = createConnectRouter({
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: unavailableOnAbort(options.shutdownSignal),
    acceptCompression: ACCEPT_COMPRESSION,
  });
  const handlers = new Map<string, UniversalHandler>();
  for (const { service, impl, requestDecoders, interceptor } of services) {
    const first = router.handlers.length;
    const interceptors = [...(interceptor ? [toConnectInterceptor(interceptor)] : []), undecodableInterceptor()];
    router.service(service, impl as never, { interceptors });
    for (const handler of router.handlers.slice(first)) {
      const decode = requestDecoder(handler.method.input, requestDecoders);
      handlers.set(
        handler.requestPath,
        checkRequests(handler, { decode, compressions: ACCEPT_COMPRESSION, readMaxBytes: options.readMaxBytes }),
      );
    }
  }
  const fallback = options.fallback ?? notFound;
  return (req, res) => {
    const handler = handlers.get((req.url ?? "/").split("?")[0]!);
    if (!handler) return fallback(req, res);
    if (req.method === "POST") {
      const type = parseRpcContentType(req.headers["content-type"] ?? "");
      const refused = "refused" in type ? type.refused : methodMismatch(type, handler.method);
      if (refused !== undefined) return answer(req, res, 415, refused, options.readMaxBytes);
      if (handler.method.methodKind === "bidi_streaming" && req.httpVersionMajor === 1) {
        return answer(
          req,
          res,
          505,
          `${handler.method.name} is a bidi-streaming method, which needs HTTP/2 both ways; this port speaks HTTP/1.1: call it on the gRPC port, or publish here with Send, Broadcast or SendBatch`,
          options.readMaxBytes,
        );
      }
    }
    const values = createContextValues().set(CONNECTION, `http:${req.socket.remoteAddress}:${req.socket.remotePort}`);
    let uReq;
    try {
      uReq = universalRequestFromNodeRequest(req, res, undefined, values);
    } catch (err) {
      // No Host header (HTTP/1.0): connect-node cannot build the request URL.
      return answer(
        req,
        res,
        400,
        `the request cannot be served: ${err instanceof Error ? err.message : String(err)}`,
        options.readMaxBytes,
      );
    }
    handler(uReq)
      .then((uRes) => {
        // The answer is decided and its head not yet written.
        closeIfUnread(req, res, options.readMaxBytes);
        return universalResponseToNodeResponse(uRes, res);
      })
      .catch(() => {
        // Writing the answer failed: the client has gone; connect-node has
        // already aborted the call's signal.
      });
  };
}

function notFound(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(404);
  res.end();
}

/** Answers with `status` and a JSON body, as connect's errors look, saying what to do instead. */
function answer(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  readMaxBytes: number,
): void {
  const body = JSON.stringify({ code: "invalid_argument", message });
  closeIfUnread(req, res, readMaxBytes);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/**
 * The most bytes of an unread request body (one refused as too large) that
 * the server reads and discards after answering, so that an HTTP/1.1 client
 * that is still writing can finish and read the answer; past it the
 * connection is closed at once.
 */
export const MAX_DRAIN_BYTES = 1024 * 1024;

/**
 * connect-node stops reading a body at readMaxBytes and answers at once,
 * leaving the rest unread. A keep-alive connection cannot go on to the next
 * request before that rest is read: depending on how far connect-node read,
 * Node reads and discards all of it (however large), or leaves it, and the
 * client's next call on the connection hangs until it times out (ABORTED;
 * test/connect-unread-body.test.ts pins what we do). Called once the answer is
 * decided and before its head is written: if the body has not been read to
 * its end, once the answer is written the rest is read and discarded (up to
 * MAX_DRAIN_BYTES, past which the connection is closed), so that the client
 * can finish writing and read it; when it was refused as too large (its
 * content-length is over readMaxBytes, or connect-node had begun to read
 * it), the answer also says `connection: close` (res.setHeader: the client
 * opens a new connection for its next call). A body read to its end (every
 * call answered normally), or one of no stated length not read at all,
 * keeps the connection alive.
 */
function closeIfUnread(req: IncomingMessage, res: ServerResponse, readMaxBytes: number): void {
  // HTTP/2 ends the stream, not the connection, and has no keep-alive to unstick.
  if (req.httpVersionMajor !== 1 || req.complete || res.headersSent) return;
  res.once("finish", () => drain(req));
  // A body refused as too large closes the connection: by its content-length,
  // or read in part. One not read at all and of no stated length (a stream's
  // request refused before it was read: by a key's scope, an interceptor) is
  // drained whole, and the connection stays open: closing it reset a client
  // still writing that body, which then reported a write error (EPIPE:
  // INTERNAL) instead of the answer.
  const length = req.headers["content-length"];
  const refusedLarge = length !== undefined && Number(length) > readMaxBytes;
  if (refusedLarge || req.readableFlowing !== null || req.destroyed) res.setHeader("connection", "close");
}

function drain(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  let drained = 0;
  req.on("data", (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > MAX_DRAIN_BYTES) req.socket.destroy();
  });
  req.on("error", () => {});
  req.resume();
}

/**
 * The read limit of the HTTP port for the gRPC port's request limit
 * (maxRequestBytes in src/core/limits.ts), widened by JSON's base64 of bytes
 * (4/3), so that a binary payload at the limit fits in Connect JSON too
 * (JSON made mostly of escapes, "\u0001", can still exceed it). Events are
 * held to the same payload limit on both ports
 * (RESOURCE_EXHAUSTED from the service); this only bounds reading.
 */
export function readMaxBytesFor(maxRequestBytes: number): number {
  return Math.ceil((maxRequestBytes * 4) / 3);
}
