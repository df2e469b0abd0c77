/**
 * Serves a connect-style `ServiceImpl` (from gen/, protoc-gen-es v2) with
 * grpc-js, so that one implementation runs behind grpc-js and connect-node
 * (src/api/connect/adapter.ts, the HTTP port) alike. Request and response
 * messages are (de)serialized from the generated descriptors; there is no
 * proto-loader and no hand-written message type.
 *
 * The gRPC wire protocol is grpc-js's job; this file only translates:
 * grpc-js calls into `HandlerContext`s, async iterables into grpc-js streams,
 * thrown errors into gRPC statuses (https://grpc.github.io/grpc/core/md_doc_statuscodes.html),
 * and the API's RPC interceptor (src/api/interceptors.ts) into a wrapper of
 * each call.
 */
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
} from "@bufbuild/protobuf";
import {
  ConnectError,
  createContextValues,
  createHandlerContext,
  createServiceImplSpec,
  decodeBinaryHeader,
  encodeBinaryHeader,
  type HandlerContext,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import { RealtimeError } from "../../protocol/errors.js";
import { Code } from "../../protocol/status-codes.js";
import { CONNECTION } from "../call-context.js";
import type { Interceptor } from "../interceptors.js";
import type { ServiceOptions } from "../service-entry.js";
import { unavailableOnAbort } from "../shutdown-signal.js";
import {
  decodeReason,
  requestDecoder,
  undecodableMessage,
  UndecodableRequestError,
  type RequestDecoders,
} from "../undecodable.js";
import { STATUS_DETAILS_KEY, statusDetailsBin } from "./status-details.js";

/**
 * The status message sent for any failure that is neither a ConnectError nor
 * a RealtimeError. The cause is never sent to the client; the `interceptor`
 * sees it (to log it) before it is replaced.
 */
export const INTERNAL_ERROR_MESSAGE = "internal error";

/**
 * Options of {@link addService}. Every field is optional. The `interceptor`
 * runs with the call's HandlerContext (which is an InterceptedCall: this
 * port needs no conversion); its `next()` settles once the handler is done,
 * for a streaming response once its last message is written, and rejects
 * with what the handler threw, before it is mapped to a status.
 */
export interface AddServiceOptions extends ServiceOptions {
  /**
   * When it aborts, the `ctx.signal` of every call in flight aborts with
   * UNAVAILABLE, so that long-lived streams (health Watch) end and
   * `server.tryShutdown()` can complete. Default: none (streams only end when
   * the client cancels or its deadline passes).
   */
  shutdownSignal?: AbortSignal;
}

/**
 * Response header and trailer keys the adapter never copies from
 * ctx.responseHeader / ctx.responseTrailer / ConnectError metadata: grpc-js
 * writes them itself, and HTTP/2 forbids connection-specific headers.
 * `grpc-status-details-bin` is the one `grpc-` key that is passed on.
 */
const RESERVED_RESPONSE_KEYS = new Set([
  "content-type",
  "content-length",
  "connection",
  "keep-alive",
  "te",
  "transfer-encoding",
  "upgrade",
]);

/**
 * A cancel that arrives this close to the deadline (or after it) aborts
 * ctx.signal with DeadlineExceeded rather than Canceled: a client cancels at
 * its own deadline, which it computed a little before ours, and grpc-js
 * reports its own deadline as a cancel that may beat our timer.
 */
export const DEADLINE_TOLERANCE_MS = 100;

/**
 * Builds the grpc-js ServiceDefinition of a generated service: one entry per
 * method, keyed by `method.localName` (with `method.name` as originalName, so
 * a client from `grpc.makeGenericClientConstructor` has both), on the path
 * `/${service.typeName}/${method.name}`, (de)serialized with
 * toBinary/fromBinary. Usable for servers and for clients.
 */
export function serviceDefinition(service: DescService, requestDecoders: RequestDecoders = {}): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    const kind = method.methodKind;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: kind === "client_streaming" || kind === "bidi_streaming",
      responseStream: kind === "server_streaming" || kind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: requestDeserializer(method.input, requestDecoders),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition;
}

/**
 * Adds `impl` to a grpc-js server under `service`'s name. Methods missing
 * from `impl` answer UNIMPLEMENTED. Guarantees, for every call:
 * - `ctx.signal` aborts when the client cancels (reason: ConnectError
 *   Canceled), when the deadline passes (DeadlineExceeded; `ctx.timeoutMs()`
 *   is the time left), on `shutdownSignal` (Unavailable), and at the end of
 *   the call;
 * - `ctx.values.get(CONNECTION)` is `grpc:` and the peer's address:port;
 * - `ctx.requestHeader` holds the request metadata (`-bin` values base64;
 *   grpc-js strips grpc-timeout, te, content-type and the encoding headers);
 *   `ctx.protocolName` is "grpc", `ctx.url` is `http://host/service/method`
 *   (https only when grpc-js reports a verified client certificate);
 * - `ctx.responseHeader` is sent before the first response message (for
 *   streams: set it before yielding), `ctx.responseTrailer` with the status;
 * - a thrown ConnectError or RealtimeError becomes the status with the same
 *   code and its message; anything else becomes INTERNAL with
 *   {@link INTERNAL_ERROR_MESSAGE}; no handler failure escapes to the process;
 * - server-streaming writes wait for the transport to drain, and iteration
 *   stops once the call is cancelled. A streaming handler must itself return
 *   when `ctx.signal` aborts while it waits for something to send.
 * A request that is not valid protobuf never reaches the handler: it is
 * answered INVALID_ARGUMENT, with protobuf's reason; on a client or bidi
 * stream, reading that message rejects with UndecodableRequestError and the
 * stream goes on (src/api/undecodable.ts).
 * Throws (like grpc-js) if the service was already added to this server.
 */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  impl: Partial<ServiceImpl<S>>,
  options: AddServiceOptions = {},
): void {
  const spec = createServiceImplSpec(service, impl);
  const shutdownSignal = unavailableOnAbort(options.shutdownSignal);
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const run: Runner = {
      service,
      method,
      shutdownSignal,
      intercept: options.interceptor ?? ((_call, next) => next()),
    };
    handlers[method.localName] = createHandler(spec.methods[method.localName], run);
  }
  server.addService(serviceDefinition(service, options.requestDecoders), handlers);
}

/**
 * Maps anything a handler throws to the gRPC status sent for it: the code of
 * a ConnectError (whose Code numbers are gRPC's) or RealtimeError, with its
 * message (ConnectError: rawMessage, and its metadata and details in the
 * trailer, the details as grpc-status-details-bin); otherwise INTERNAL with
 * {@link INTERNAL_ERROR_MESSAGE}. `trailer` is sent along.
 */
export function toGrpcStatus(err: unknown, trailer?: Headers): grpc.StatusObject {
  const headers = new Headers(trailer);
  if (err instanceof ConnectError) {
    err.metadata.forEach((value, key) => headers.append(key, value));
    const details = statusDetailsBin(err);
    if (details !== undefined) headers.set(STATUS_DETAILS_KEY, details);
    return { code: err.code as number, details: err.rawMessage, metadata: toMetadata(headers) };
  }
  if (err instanceof RealtimeError) {
    return { code: err.code, details: err.message, metadata: toMetadata(headers) };
  }
  return { code: Code.Internal, details: INTERNAL_ERROR_MESSAGE, metadata: toMetadata(headers) };
}

/** What every handler of one method shares. */
interface Runner {
  service: DescService;
  method: DescMethod;
  shutdownSignal: AbortSignal | undefined;
  intercept: Interceptor;
}

type Context = ReturnType<typeof createHandlerContext>;
/** What ctx.signal aborts with once the call has ended on its own. */
const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);
type WritableCall = grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;
/** What the adapter uses of a grpc-js call of any kind (grpc-js does not export ServerSurfaceCall). */
interface AnyCall {
  readonly cancelled: boolean;
  readonly metadata: grpc.Metadata;
  once(event: "cancelled", listener: () => void): unknown;
  removeListener(event: "cancelled", listener: () => void): unknown;
  getDeadline(): Date | number;
  getAuthContext(): { transportSecurityType?: string };
  getHost(): string;
  getPath(): string;
  getPeer(): string;
  sendMetadata(metadata: grpc.Metadata): void;
}

function createHandler(spec: MethodImplSpec, run: Runner): grpc.UntypedHandleCall {
  switch (spec.kind) {
    case "unary":
      return (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
        guard(
          respondOnce(call, callback, run, (ctx) => spec.impl(decoded(call.request), ctx)),
          () => callback(toGrpcStatus(undefined)),
        );
    case "client_streaming":
      return (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
        guard(
          respondOnce(call, callback, run, (ctx) => spec.impl(readRequests(call, ctx.signal), ctx)),
          () => callback(toGrpcStatus(undefined)),
        );
    case "server_streaming":
      return (call: grpc.ServerWritableStream<unknown, unknown>) =>
        guard(
          respondStream(call, run, (ctx) => spec.impl(decoded(call.request), ctx)),
          () => call.emit("error", toGrpcStatus(undefined)),
        );
    case "bidi_streaming":
      return (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        guard(
          respondStream(call, run, (ctx) => spec.impl(readRequests(call, ctx.signal), ctx)),
          () => call.emit("error", toGrpcStatus(undefined)),
        );
  }
}

/**
 * The respond functions catch every handler failure themselves; this is the
 * last line for a bug in the adapter, so that it answers INTERNAL instead of
 * taking the process down with an unhandled rejection.
 */
function guard(responding: Promise<void>, answerInternal: () => void): void {
  responding.catch(() => {
    try {
      answerInternal();
    } catch {
      // Nothing left to tell the client.
    }
  });
}

/** Unary and client-streaming: one response or one error, through grpc-js's callback. */
async function respondOnce(
  call: AnyCall,
  callback: grpc.sendUnaryData<unknown>,
  run: Runner,
  handle: (ctx: HandlerContext) => unknown,
): Promise<void> {
  const ctx = createContext(call, run);
  let response: unknown;
  let failure: { err: unknown } | undefined;
  try {
    await run.intercept(ctx, async () => {
      response = await handle(ctx);
    });
  } catch (err) {
    failure = { err };
  }
  try {
    sendHeader(call, ctx);
    if (failure) callback(toGrpcStatus(failure.err, ctx.responseTrailer));
    else callback(null, response, toMetadata(ctx.responseTrailer));
  } catch {
    // The call is gone (or grpc-js refused the metadata): nobody to answer.
  } finally {
    ctx.abort();
  }
}

/** Server-streaming and bidi: write every response, then the status. */
async function respondStream(
  call: WritableCall,
  run: Runner,
  handle: (ctx: HandlerContext) => AsyncIterable<unknown>,
): Promise<void> {
  const ctx = createContext(call, run);
  let headerSent = false;
  let failure: { err: unknown } | undefined;
  try {
    await run.intercept(ctx, async () => {
      for await (const response of handle(ctx)) {
        if (ctx.signal.aborted) break;
        if (!headerSent) {
          // Once a message is written, grpc-js has sent the header anyway.
          sendHeader(call, ctx);
          headerSent = true;
        }
        if (!call.write(response)) await drained(call, ctx.signal);
        if (ctx.signal.aborted) break;
      }
      // Iteration stopped because of a cancel, deadline or shutdown: that is
      // the status, not OK.
      ctx.signal.throwIfAborted();
    });
  } catch (err) {
    failure = { err };
  }
  try {
    if (call.cancelled || call.destroyed) return;
    if (!headerSent) sendHeader(call, ctx);
    if (failure) call.emit("error", toGrpcStatus(failure.err, ctx.responseTrailer));
    else call.end(toMetadata(ctx.responseTrailer));
  } catch {
    // The call is gone (or grpc-js refused the metadata): nobody to answer.
  } finally {
    ctx.abort();
  }
}

function createContext(call: AnyCall, run: Runner): Context {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  const cancelled = new AbortController();
  const onCancel = () =>
    cancelled.abort(
      Date.now() >= deadlineMs - DEADLINE_TOLERANCE_MS
        ? new ConnectError("the operation timed out", Code.DeadlineExceeded)
        : new ConnectError("the call was cancelled", Code.Canceled),
    );
  if (call.cancelled) onCancel();
  else call.once("cancelled", onCancel);
  // grpc-js only reports TLS when the client presented a verified certificate.
  const secure = call.getAuthContext().transportSecurityType === "ssl";
  const ctx = createHandlerContext({
    service: run.service,
    method: run.method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `${secure ? "https" : "http"}://${call.getHost()}${call.getPath()}`,
    timeoutMs: Number.isFinite(deadlineMs) ? Math.max(0, deadlineMs - Date.now()) : undefined,
    requestSignal: cancelled.signal,
    shutdownSignal: run.shutdownSignal,
    requestHeader: toHeaders(call.metadata),
    contextValues: createContextValues().set(CONNECTION, `grpc:${call.getPeer()}`),
  });
  // grpc-js emits 'cancelled' after every call, even a successful one: stop
  // listening once the call has ended, and end it with one shared reason, so
  // that a finished call allocates no errors.
  const abort = ctx.abort;
  ctx.abort = (reason: unknown = CALL_ENDED) => {
    call.removeListener("cancelled", onCancel);
    abort(reason);
  };
  return ctx;
}

/** Sends ctx.responseHeader, unless it is empty (grpc-js then sends its own). */
function sendHeader(call: AnyCall, ctx: HandlerContext): void {
  let empty = true;
  ctx.responseHeader.forEach(() => (empty = false));
  if (!empty) call.sendMetadata(toMetadata(ctx.responseHeader));
}

/**
 * Requests of a streaming call, in order. Ending the iteration early does not
 * destroy the call (a bidi handler may stop reading and keep writing); a
 * cancelled call throws the reason ctx.signal aborted with. A request that
 * could not be decoded rejects its `next()` with UndecodableRequestError,
 * and the following `next()` goes on with the request after it.
 */
function readRequests(call: grpc.ServerReadableStream<unknown, unknown>, signal: AbortSignal): AsyncIterable<never> {
  return {
    [Symbol.asyncIterator]() {
      const it = call.iterator({ destroyOnReturn: false });
      let index = 0;
      return {
        async next() {
          let r: IteratorResult<unknown>;
          try {
            r = await it.next();
          } catch (err) {
            signal.throwIfAborted();
            throw err;
          }
          if (r.done) return { done: true, value: undefined as never };
          const i = index++;
          if (r.value instanceof UndecodableRequest) throw new UndecodableRequestError(i, r.value.message);
          return { done: false, value: r.value as never };
        },
        async return() {
          await it.return?.();
          return { done: true, value: undefined as never };
        },
      };
    },
  };
}

/** Resolves on 'drain', or at once when the signal aborts (grpc-js drops writes to a cancelled call, so 'drain' never comes). */
function drained(call: WritableCall, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

/** grpc-js request metadata as HTTP headers, `-bin` values base64-encoded as on the wire. */
function toHeaders(metadata: grpc.Metadata): Headers {
  const headers = new Headers();
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    for (const value of values) {
      try {
        headers.append(key, typeof value === "string" ? value : encodeBinaryHeader(value));
      } catch {
        // A key or value HTTP headers cannot carry; grpc-js accepted it, we skip it.
      }
    }
  }
  return headers;
}

/** HTTP headers as grpc-js metadata, minus the keys grpc-js and HTTP/2 reserve. */
function toMetadata(headers: Headers): grpc.Metadata {
  const metadata = new grpc.Metadata();
  headers.forEach((value, key) => {
    if (RESERVED_RESPONSE_KEYS.has(key)) return;
    if (key.startsWith("grpc-") && key !== STATUS_DETAILS_KEY) return;
    try {
      if (!key.endsWith("-bin")) metadata.add(key, value);
      else for (const part of value.split(",")) metadata.add(key, Buffer.from(decodeBinaryHeader(part.trim())));
    } catch {
      // A key or value grpc-js refuses; dropping it beats failing the call.
    }
  });
  return metadata;
}

function serializer(schema: DescMessage): (value: unknown) => Buffer {
  return (value) => {
    const message = isMessage(value, schema) ? value : create(schema, value as never);
    const bytes = toBinary(schema, message);
    // grpc-js copies the result with Buffer#copy: it must be a Buffer.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (bytes: Buffer) => unknown {
  return (bytes) => fromBinary(schema, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

/**
 * A request that is not a valid protobuf message of its type. grpc-js would
 * answer a throwing deserializer with INTERNAL; the handler answers this one
 * with INVALID_ARGUMENT instead: the client sent bad input.
 */
class UndecodableRequest {
  constructor(readonly message: string) {}
}

/** The server side's request deserializer: never throws. */
function requestDeserializer(schema: DescMessage, decoders: RequestDecoders): (bytes: Buffer) => unknown {
  const decode = requestDecoder(schema, decoders);
  return (bytes) => {
    try {
      return decode(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (err) {
      return new UndecodableRequest(undecodableMessage(schema.typeName, decodeReason(err)));
    }
  };
}

/** The request, or INVALID_ARGUMENT if it could not be decoded. */
function decoded(request: unknown): never {
  if (request instanceof UndecodableRequest) throw new ConnectError(request.message, Code.InvalidArgument);
  return request as never;
}
