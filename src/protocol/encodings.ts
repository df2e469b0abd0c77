/**
 * The client protocol's two encodings, each named by its WebSocket
 * subprotocol (proto/realtime/client/v1/client.proto, docs/protocol.md).
 * Shared by the edge and the SDK: one list, so that both always agree.
 */
export const Encoding = {
  /** Text frames: protobuf's JSON mapping of ClientFrame / ServerFrame. */
  Json: "realtime.v1.json",
  /** Binary frames: protobuf binary of ClientFrame / ServerFrame. */
  Proto: "realtime.v1.proto",
} as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];
