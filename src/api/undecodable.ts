/**
 * A request message that is not valid protobuf of its type: the caller's
 * fault, so INVALID_ARGUMENT on every port and protocol, with a message
 * that names the type (never INTERNAL, which is the server's fault and what
 * the error-rate alert watches). Both adapters produce it the same way.
 *
 * The contract for streaming requests, on both adapters: the request
 * iterator a handler reads rejects `next()` with an
 * {@link UndecodableRequestError} for a message that cannot be decoded, and
 * stays usable: the following `next()` returns the message after it. So a
 * `for await` loop ends at the bad message, and the call with
 * INVALID_ARGUMENT naming its index (the default for every handler); a
 * handler that can go on (Publish) catches the error and reads on.
 */
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { Code } from "../protocol/status-codes.js";

/**
 * Request decoders to use instead of protobuf-es's reflective `fromBinary`,
 * by message type name (e.g. the hand-written ones of the hot path, in
 * src/wire/request-codec.ts). Each must return what `fromBinary` would, and
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

/**
 * The request message at `index` of a streaming call could not be decoded.
 * Its message names the index (`requests[3]: the request is not a valid
 * realtime.v1.PublishRequest message: premature EOF`), for handlers that let
 * it end the call; `detail` is the same without the index, for handlers
 * that report it per request.
 */
export class UndecodableRequestError extends ConnectError {
  /**
   * ConnectError's own check accepts anything shaped like a ConnectError
   * (and a subclass inherits it): this class is told apart by its
   * prototype, as `instanceof` normally does. (Its `name` stays
   * "ConnectError", which ConnectError's check needs to accept it.)
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  constructor(
    readonly index: number,
    readonly detail: string,
  ) {
    super(`requests[${index}]: ${detail}`, Code.InvalidArgument);
  }
}
