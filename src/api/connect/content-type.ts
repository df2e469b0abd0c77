/**
 * The content types the HTTP port serves on an RPC path, and the answer for
 * every other one. connect-node answers a type it does not serve with HTTP
 * 415 and an empty body; the adapter checks first, with this list, and
 * refuses with a body that says what to send instead.
 *
 * The accepted forms are exactly those connect-node 2.1.2 accepts (its
 * content-type regular expressions are internal, so they are written out
 * here; test/http-content-types.test.ts checks that each one reaches
 * connect-node), minus gRPC-Web's text mode, which connect-node refuses
 * (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md: base64
 * bodies, application/grpc-web-text).
 */
import type { DescMethod } from "@bufbuild/protobuf";

/** A content type the HTTP port serves. */
export interface RpcContentType {
  /** Connect (https://connectrpc.com/docs/protocol), gRPC-Web, or gRPC. */
  protocol: "connect" | "grpc-web" | "grpc";
  /** Connect only: the streaming form (application/connect+json|proto). */
  stream: boolean;
  /** Protobuf binary (not JSON). */
  binary: boolean;
}

const CHARSET_UTF8 = "(?:; ?charset=utf-?8)?";
const CONNECT_UNARY = new RegExp(`^application/(?:(json)${CHARSET_UTF8}|proto)$`, "i");
const CONNECT_STREAM = new RegExp(`^application/connect\\+(?:(json)${CHARSET_UTF8}|proto)$`, "i");
const GRPC_WEB = new RegExp(`^application/grpc-web(?:\\+(?:(json)${CHARSET_UTF8}|proto))?$`, "i");
const GRPC = new RegExp(`^application/grpc(?:\\+(?:(json)${CHARSET_UTF8}|proto))?$`, "i");
const GRPC_WEB_TEXT = /^application\/grpc-web-text/i;
/** The JSON media types, whose charset parameter is checked. */
const JSON_MEDIA = /^application\/(?:connect\+|grpc-web\+|grpc\+)?json$/i;

/** What a POST to an RPC path with `contentType` is: served, or refused with a message. */
export function parseRpcContentType(contentType: string): RpcContentType | { refused: string } {
  let m: RegExpExecArray | null;
  if ((m = CONNECT_UNARY.exec(contentType))) return { protocol: "connect", stream: false, binary: !m[1] };
  if ((m = CONNECT_STREAM.exec(contentType))) return { protocol: "connect", stream: true, binary: !m[1] };
  if ((m = GRPC_WEB.exec(contentType))) return { protocol: "grpc-web", stream: false, binary: !m[1] };
  if ((m = GRPC.exec(contentType))) return { protocol: "grpc", stream: false, binary: !m[1] };
  const quoted = JSON.stringify(contentType);
  if (GRPC_WEB_TEXT.test(contentType)) {
    return {
      refused: `content-type ${quoted} is not served: this port speaks gRPC-Web in binary only, not its base64 text mode; send application/grpc-web+proto (grpc-web clients: mode "grpcweb"; connect-web's createGrpcWebTransport sends it), or use Connect (application/json)`,
    };
  }
  const [media = "", ...params] = contentType.split(";").map((p) => p.trim());
  const charset = params.find((p) => /^charset\s*=/i.test(p));
  if (JSON_MEDIA.test(media) && charset !== undefined) {
    const value = charset
      .slice(charset.indexOf("=") + 1)
      .trim()
      .replace(/^"(.*)"$/, "$1")
      .toLowerCase();
    if (value !== "utf-8" && value !== "utf8") {
      return {
        refused: `content-type ${quoted}: JSON must be UTF-8 (RFC 8259); encode the body as UTF-8 and send content-type ${media.toLowerCase()} (or ${media.toLowerCase()}; charset=utf-8)`,
      };
    }
  }
  return {
    refused: `content-type ${quoted} is not an RPC content type: use application/json or application/proto (Connect; application/connect+json or application/connect+proto for streaming methods), application/grpc-web+proto (gRPC-Web), or application/grpc (gRPC, over HTTP/2 on the gRPC port); the only parameter accepted is "; charset=utf-8", on JSON types`,
  };
}

/**
 * Connect has one content type for unary methods and another for streaming
 * ones; the other protocols use theirs for every method. Undefined when
 * `type` fits `method`, else the message to refuse it with.
 */
export function methodMismatch(type: RpcContentType, method: DescMethod): string | undefined {
  if (type.protocol !== "connect") return undefined;
  const unary = method.methodKind === "unary";
  if (unary && type.stream) {
    return `${method.name} is a unary method: over Connect, send application/json or application/proto (application/connect+json and application/connect+proto are for streaming methods)`;
  }
  if (!unary && !type.stream) {
    const kind = method.methodKind.replace("_streaming", "-streaming");
    return `${method.name} is a ${kind} method: over Connect, send application/connect+json or application/connect+proto (application/json and application/proto are for unary methods)`;
  }
  return undefined;
}
