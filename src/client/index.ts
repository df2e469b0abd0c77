/**
 * @switchboard/client (packages/client/; also the server package's
 * switchboard/client): the browser and Node SDK for Switchboard's edges.
 * Runtime-free: nothing here imports `ws` or `node:*`; in Node 20 pass the
 * `ws` package's WebSocket as the `WebSocket` option. Nor protobuf-es: the
 * JSON encoding (the default) is written by hand; the binary one is
 * `@switchboard/client/proto` (./proto.ts), imported only by who uses it.
 *
 * @example
 * const rt = new RealtimeClient({ url: "wss://edge.example.com" });
 * rt.on("chat", ({ channel, message }) => render(channel, message));
 * await rt.join("room-1");
 * await rt.send("room-1", "chat", { text: "hi" });
 */
export {
  GET_MEMBERS_PAGE_SIZE,
  RealtimeClient,
  type ClientState,
  type PublishResult,
  type Unsubscribe,
} from "./realtime-client.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_ENCODING,
  DEFAULT_MAX_QUEUED_REQUESTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  type RealtimeClientOptions,
  type ReconnectOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./options.js";
export {
  DEFAULT_RECONNECT_INITIAL_DELAY_MS,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
  backoffDelay,
  type BackoffOptions,
} from "./backoff.js";
export { ErrorCode, RealtimeClientError, codeName } from "./errors.js";
export {
  RESYNC_EVENT,
  SystemEvent,
  type ConnectInfo,
  type DisconnectInfo,
  type HistoryEvent,
  type HistoryOptions,
  type HistoryPage,
  type JoinOptions,
  type JoinResult,
  type JsonValue,
  type Member,
  type MemberEvent,
  type MembersPage,
  type Message,
  type MessageEvent,
  type ReconnectAttemptInfo,
  type ResyncEvent,
  type ResyncReason,
  type StreamPosition,
  type SubscribedInfo,
  type SystemEventName,
  type UnsubscribedInfo,
} from "./events.js";
export type { ClientEncoding, EncodingName } from "./codec.js";
/** The edge's close codes and whether each allows a reconnect (docs/protocol.md). */
export { CloseCode, shouldReconnect } from "../protocol/close-codes.js";
