/**
 * Undecodable requests on the HTTP port: INVALID_ARGUMENT, as on the gRPC
 * port (src/api/undecodable.ts), where connect-node 2.1.2 answers INTERNAL
 * ("parse binary: ...") and, for unary calls, before any interceptor runs,
 * so that RPC metrics never see the call. connect-node offers no hook into
 * its decoding (binaryOptions only tunes protobuf-es), so the adapter
 * decodes each binary request message itself, first, through public
 * extension points only:
 *
 * - {@link checkRequests} wraps connect's UniversalHandler (public, from
 *   `@connectrpc/connect/protocol`): it reads the request body as its
 *   protocol frames it (Connect unary: the whole body; Connect streaming,
 *   gRPC-Web and gRPC: envelopes, https://connectrpc.com/docs/protocol),
 *   decodes each message, and hands connect-node the same bytes, except
 *   that an undecodable message is replaced by an empty one (which always
 *   decodes) and recorded, by index, in the call's context values;
 * - {@link undecodableInterceptor}, a connect Interceptor placed innermost,
 *   turns the recorded messages into the errors the gRPC adapter throws:
 *   a unary or server-streaming call fails with INVALID_ARGUMENT before its
 *   handler runs; on a client or bidi stream, reading the bad message
 *   rejects with {@link UndecodableRequestError} and the stream goes on.
 *
 * What the check cannot judge (an envelope larger than readMaxBytes, an
 * unknown or failing compression, flags it does not know, a truncated
 * body) it passes through unchanged from there on, for connect-node to
 * answer as it does. JSON requests are not checked: connect-node already
 * answers bad JSON with INVALID_ARGUMENT.
 */
import { createContextKey, ConnectError, type Interceptor } from "@connectrpc/connect";
// Public enough: types only, of an exported subpath, none marked @private; the public ConnectRouter.handlers is UniversalHandler[].
import type { Compression, UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { Code } from "../../protocol/status-codes.js";
import { decodeReason, undecodableMessage, UndecodableRequestError } from "../undecodable.js";
import { parseRpcContentType } from "./content-type.js";

/** Undecodable request messages of one call: reason by message index. */
type Failures = Map<number, string>;

const UNDECODABLE = createContextKey<Failures | undefined>(undefined, { description: "undecodable request messages" });

/** What {@link checkRequests} needs to read a request as connect-node will. */
export interface RequestCheckOptions {
  /** Decodes one request message of the handler's method; throws on bytes that are not one. */
  decode: (bytes: Uint8Array) => unknown;
  /** The compressions connect-node accepts (its acceptCompression). */
  compressions: readonly Compression[];
  /** connect-node's readMaxBytes. */
  readMaxBytes: number;
}

/** Envelope flag: the message is compressed (gRPC, gRPC-Web and Connect alike). */
const COMPRESSED_FLAG = 0x01;
const ENVELOPE_HEADER_BYTES = 5;
/** An uncompressed envelope holding an empty message, which decodes as the message with no field set. */
const EMPTY_ENVELOPE = new Uint8Array(ENVELOPE_HEADER_BYTES);

/** `handler`, checking every binary request message first (see the file's comment). */
export function checkRequests(handler: UniversalHandler, options: RequestCheckOptions): UniversalHandler {
  const checked = async (req: UniversalServerRequest) => {
    const type = parseRpcContentType(req.header.get("content-type") ?? "");
    const body = req.body;
    if (req.method !== "POST" || "refused" in type || !type.binary || !isAsyncIterable(body) || !req.contextValues) {
      return handler(req);
    }
    const failures: Failures = new Map();
    req.contextValues.set(UNDECODABLE, failures);
    if (type.protocol === "connect" && !type.stream) return handler(await checkWholeBody(req, body, options, failures));
    const encoding = req.header.get(type.protocol === "connect" ? "connect-content-encoding" : "grpc-encoding");
    return handler({ ...req, body: checkEnvelopes(body, encoding, options, failures) });
  };
  return Object.assign(checked, handler);
}

/**
 * The innermost interceptor of the HTTP port: fails the call, or the read
 * of the message, that {@link checkRequests} found undecodable.
 */
export function undecodableInterceptor(): Interceptor {
  return (next) => async (req) => {
    const failures = req.contextValues.get(UNDECODABLE);
    if (!failures) return next(req);
    const typeName = req.method.input.typeName;
    if (!req.stream) {
      const reason = failures.get(0);
      if (reason !== undefined) throw new ConnectError(undecodableMessage(typeName, reason), Code.InvalidArgument);
      return next(req);
    }
    const single = req.method.methodKind === "server_streaming";
    return next({ ...req, message: reportUndecodable(req.message, failures, typeName, single) });
  };
}

/**
 * The messages of `messages`; reading one recorded in `failures` rejects
 * (and the next read goes on with the following message). A single-message
 * stream (server streaming) fails as a unary call does, without an index.
 */
function reportUndecodable<T>(
  messages: AsyncIterable<T>,
  failures: Failures,
  typeName: string,
  single: boolean,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = messages[Symbol.asyncIterator]();
      let index = 0;
      return {
        async next() {
          const r = await it.next();
          if (r.done) return r;
          const i = index++;
          const reason = failures.get(i);
          if (reason === undefined) return r;
          failures.delete(i);
          const message = undecodableMessage(typeName, reason);
          throw single ? new ConnectError(message, Code.InvalidArgument) : new UndecodableRequestError(i, message);
        },
        async return(value?: unknown) {
          await it.return?.(value);
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** Connect unary: the body is the message, compressed as content-encoding says. */
async function checkWholeBody(
  req: UniversalServerRequest,
  body: AsyncIterable<Uint8Array>,
  options: RequestCheckOptions,
  failures: Failures,
): Promise<UniversalServerRequest> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const it = body[Symbol.asyncIterator]();
  try {
    for (let r = await it.next(); !r.done; r = await it.next()) {
      chunks.push(r.value);
      size += r.value.length;
      // Too large: connect-node refuses it (RESOURCE_EXHAUSTED) without reading on.
      if (size > options.readMaxBytes) return { ...req, body: replay(chunks, it) };
    }
  } catch (err) {
    return { ...req, body: replay(chunks, undefined, { err }) };
  }
  const bytes = concat(chunks, size);
  const reason = await undecodableReason(bytes, req.header.get("content-encoding"), options);
  if (reason === undefined) return { ...req, body: replay([bytes]) };
  failures.set(0, reason);
  // An empty body in place of the message; it is no longer compressed.
  const header = new Headers(req.header);
  header.delete("content-encoding");
  header.delete("content-length");
  return { ...req, header, body: replay([]) };
}

/** Enveloped messages (Connect streaming, gRPC-Web, gRPC), each checked as it completes. */
async function* checkEnvelopes(
  body: AsyncIterable<Uint8Array>,
  encoding: string | null,
  options: RequestCheckOptions,
  failures: Failures,
): AsyncGenerator<Uint8Array> {
  let buffered: Uint8Array[] = [];
  let size = 0;
  let index = 0;
  let unchecked = false;
  for await (const chunk of body) {
    if (unchecked) {
      yield chunk;
      continue;
    }
    buffered.push(chunk);
    size += chunk.length;
    while (size >= ENVELOPE_HEADER_BYTES) {
      if (buffered[0]!.length < ENVELOPE_HEADER_BYTES) buffered = [concat(buffered, size)];
      const head = buffered[0]!;
      const flags = head[0]!;
      const length = new DataView(head.buffer, head.byteOffset + 1, 4).getUint32(0);
      if ((flags & ~COMPRESSED_FLAG) !== 0 || length > options.readMaxBytes) {
        // Not a plain message (an end-stream flag a client must not send), or
        // too large: connect-node answers it.
        unchecked = true;
        yield* buffered;
        buffered = [];
        size = 0;
        break;
      }
      const total = ENVELOPE_HEADER_BYTES + length;
      if (size < total) break;
      const all = concat(buffered, size);
      const envelope = all.subarray(0, total);
      buffered = size > total ? [all.subarray(total)] : [];
      size -= total;
      // A compressed message without an encoding is connect-node's to refuse ("" matches no compression).
      const compressedWith = flags & COMPRESSED_FLAG ? (encoding ?? "") : null;
      const reason = await undecodableReason(envelope.subarray(ENVELOPE_HEADER_BYTES), compressedWith, options);
      if (reason === undefined) {
        yield envelope;
      } else {
        failures.set(index, reason);
        yield EMPTY_ENVELOPE;
      }
      index++;
    }
  }
  // An incomplete envelope: connect-node reports the truncated body.
  yield* buffered;
}

/**
 * Why `bytes` (compressed with `encoding`, null when not compressed) are no
 * message of the method's type; undefined when they decode, or when this
 * cannot tell because connect-node will refuse them for another reason (an
 * unknown encoding, a compressed message without one, bad compression).
 */
async function undecodableReason(
  bytes: Uint8Array,
  encoding: string | null,
  options: RequestCheckOptions,
): Promise<string | undefined> {
  let data = bytes;
  if (encoding !== null && encoding !== "identity") {
    const compression = options.compressions.find((c) => c.name === encoding);
    if (!compression) return undefined;
    try {
      data = await compression.decompress(bytes, options.readMaxBytes);
    } catch {
      return undefined;
    }
  }
  try {
    options.decode(data);
    return undefined;
  } catch (err) {
    return decodeReason(err);
  }
}

/** `chunks` again, then the rest of `rest`, or the error reading it failed with. */
async function* replay(
  chunks: Uint8Array[],
  rest?: AsyncIterator<Uint8Array>,
  failed?: { err: unknown },
): AsyncGenerator<Uint8Array> {
  yield* chunks;
  if (failed) throw failed.err;
  if (rest) for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.length;
  }
  return out;
}

function isAsyncIterable(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}
