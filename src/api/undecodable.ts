/**
 * A request message that is not valid protobuf of its type: the caller's
 * fault, so INVALID_ARGUMENT on every port and protocol, with a message
 * that names the type (never INTERNAL, which is the server's fault and what
 * the error-rate alert watches). Both adapters decode requests with these.
 */
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";

/**
 * Request decoders to use instead of protobuf-es's reflective `fromBinary`,
 * by message type name (e.g. the hand-written ones of the hot path, in
 * src/api/request-codec.ts). Each must return what `fromBinary` would, and
 * throw where it would.
 */
export type RequestDecoders = Readonly<Record<string, (bytes: Uint8Array) => unknown>>;

/** The decoder of `schema`'s messages: the one in `decoders`, else `fromBinary`. Throws on bytes that are not one. */
export function requestDecoder(schema: DescMessage, decoders: RequestDecoders = {}): (bytes: Uint8Array) => unknown {
  return decoders[schema.typeName] ?? ((bytes) => fromBinary(schema, bytes));
}

/** The status message for an undecodable request of type `typeName`; `reason` is protobuf's. */
export function undecodableMessage(typeName: string, reason: string): string {
  return `the request is not a valid ${typeName} message: ${reason}`;
}

/** The reason protobuf (or a hand decoder) gave for refusing bytes. */
export function decodeReason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
