/**
 * The one table of status codes: every gRPC status code, 0 to 16, with the
 * number and the canonical name gRPC gives it
 * (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). The core's
 * RealtimeError, the API's ports (gRPC, Connect), the metrics' `code` label
 * and the SDK all use it, so a code means one thing wherever it was decided.
 *
 * The same numbers are @connectrpc/connect's `Code`, @grpc/grpc-js's
 * `status` and, for the codes the edge sends, realtime.client.v1.ErrorCode
 * (the client protocol's wire form, proto/realtime/client/v1/client.proto);
 * test/status-codes.test.ts checks all three against this table.
 */
export const Code = {
  /** Not an error: the call succeeded. */
  Ok: 0,
  /** The caller cancelled (gRPC spells its name CANCELLED). */
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;

export type Code = (typeof Code)[keyof typeof Code];

/**
 * gRPC's canonical name of each code, indexed by its number: what the
 * metrics' `code` label and the SDK's `codeName` say. Indexing with a
 * number outside 0-16 gives undefined; each caller says what it shows then.
 */
export const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

export type CodeName = (typeof CODE_NAMES)[number];
