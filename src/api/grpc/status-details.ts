/**
 * The grpc-status-details-bin trailer: a google.rpc.Status {code, message,
 * details} in protobuf binary, base64 in the trailer, each detail packed in
 * a google.protobuf.Any (https://grpc.github.io/grpc/core/md_doc_statuscodes.html,
 * https://google.aip.dev/193). It is how gRPC carries a ConnectError's
 * details (public: ConnectError.details), and what connect's gRPC clients
 * read them from (ConnectError.findDetails).
 *
 * The schema is proto/google/rpc/status.proto, generated like the rest of
 * gen/; the encoding is protobuf-es's (not a hand codec: only failures with
 * details pay it, it is no hot path).
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { encodeBinaryHeader, type ConnectError } from "@connectrpc/connect";
import { StatusSchema } from "../../../gen/google/rpc/status_pb.js";

/** The trailer key, one of the `grpc-` keys the adapter sends itself. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/**
 * The trailer value (base64) for `err`: its code, its message as sent (the
 * rawMessage) and its details, in order; undefined when it has no details,
 * for then the grpc-status and grpc-message trailers say it all. A detail
 * received from elsewhere (type name and bytes) is passed on as it came.
 */
export function statusDetailsBin(err: ConnectError): string | undefined {
  if (err.details.length === 0) return undefined;
  const status = create(StatusSchema, {
    code: err.code,
    message: err.rawMessage,
    details: err.details.map((detail) =>
      "desc" in detail
        ? anyPack(detail.desc, create(detail.desc, detail.value))
        : { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value },
    ),
  });
  return encodeBinaryHeader(status, StatusSchema);
}
