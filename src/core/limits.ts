/**
 * Every limit of the service, each a named constant with its default. The
 * config schema (src/config.ts) reads overrides and checks them; the core
 * takes a Limits object so that tests can lower them.
 */

/** Longest channel name, in characters. */
export const MAX_CHANNEL_NAME_LENGTH = 128;
/** Longest user id: a token's sub, and a user target of the server API. */
export const MAX_USER_ID_LENGTH = 256;
/** Longest reason of a server API Disconnect, in bytes of UTF-8 (a WebSocket close reason holds 123). */
export const MAX_DISCONNECT_REASON_BYTES = 120;
/**
 * How long the API waits for the nodes a control command reached
 * (Disconnect, Subscribe, Unsubscribe, Info, GetConnections) to answer; one that has not
 * answered by then is counted as unanswered.
 */
export const CONTROL_REPLY_TIMEOUT_MS = 2_000;
/**
 * Most connections one GetConnections answer describes, and one edge sends
 * back for it: the oldest first; the answer says how many matched
 * (truncated). A user with more is an automation, not a person.
 */
export const MAX_CONNECTIONS_LISTED = 100;
/**
 * Most channels GetConnections lists of one connection, by name; the answer
 * says how many it is in (channel_count). The default channel limit
 * (DEFAULT_MAX_CHANNELS_PER_CONNECTION), so that by default every channel
 * is listed. With the profile limit, one answer is at most about
 * 100 x (100 x 128 B + 4 KiB) = 1.7 MB, under gRPC's default 4 MiB.
 */
export const MAX_CHANNELS_LISTED = 100;
/** Largest REALTIME_WRITE_DELAY_MS: past it a delay is a stall, not batching. */
export const MAX_WRITE_DELAY_MS = 1_000;
/**
 * Most events one events frame lists (REALTIME_WRITE_BATCH): a client
 * handles a frame's events in one go, so this bounds that. More events of
 * one write delay go in further frames.
 */
export const MAX_EVENTS_FRAME_EVENTS = 256;
/**
 * Largest events frame, in bytes of its payload (REALTIME_WRITE_BATCH), and
 * never more than the edge's own frame limit (maxFrameBytes: no client is
 * sent a frame larger than it may send): an event that would take the frame
 * past it starts the next one; an event frame larger by itself goes alone,
 * as an event frame, as without batching.
 */
export const MAX_EVENTS_FRAME_BYTES = 64 * 1024;
/** Longest event name, in characters. */
export const MAX_EVENT_NAME_LENGTH = 64;
/**
 * Largest event, in bytes of its protobuf encoding without its id: the
 * channel, event name and payload fields, what the publisher sends (the id
 * is the service's, at most MAX_EVENT_ID_BYTES of publication.ts).
 */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024;
/** Largest profile, in bytes of its protobuf encoding. */
export const DEFAULT_MAX_PROFILE_BYTES = 4 * 1024;
/** Most channels one connection may be in at once. */
export const DEFAULT_MAX_CHANNELS_PER_CONNECTION = 100;
/**
 * Largest client frame. A binary payload at the limit is a third larger once
 * base64-encoded in the JSON encoding, plus the frame's own fields.
 */
export const FRAME_OVERHEAD_BYTES = 4 * 1024;
/**
 * Most frames one client message may arrive in (ws's maxFragments); more
 * close the connection with 1008. Clients of ours never fragment
 * (docs/protocol.md), but some libraries split a large message at their
 * write buffer (Go's gorilla/websocket at 4 KiB): 32 admits the default
 * frame limit in 4 KiB fragments. ws's own default, 16,384, let an
 * unfinished message of one-byte fragments hold 1.8 MiB of buffer objects.
 */
export const MAX_MESSAGE_FRAGMENTS = 32;
/**
 * The smallest average network read a frame may arrive in: an edge holds
 * at most maxFrameBytes / this reads of a frame it has not completely
 * received (ws's maxBufferedChunks), and closes with 1008 past it. Each
 * read held costs ~125 bytes of bookkeeping whatever its size, so a frame
 * trickled in one-byte TCP writes cost 117x its size (ws's default allows
 * 262,144 reads); 256 keeps that under half the frame limit, and is far
 * below any real TCP segment (IPv4's smallest MSS is 536).
 */
export const MIN_AVERAGE_READ_BYTES = 256;
/** Largest gRPC/Connect request: the payload limit plus room for the names. */
export const REQUEST_OVERHEAD_BYTES = 4 * 1024;
/** Most events in one SendBatch. */
export const MAX_BATCH_EVENTS = 1_000;
/**
 * Requests a Publish stream reads ahead of the acknowledgements it has
 * written; then it stops reading until one is written, and HTTP/2 flow
 * control holds the publisher back.
 */
export const MAX_PUBLISH_UNACKNOWLEDGED = 4_096;
/**
 * WatchChannel, WatchStats and WatchLifecycle streams open at once with one API key, over every connection
 * and both ports (REALTIME_WATCH_MAX_STREAMS_PER_KEY); a new one past it is
 * RESOURCE_EXHAUSTED. With a watcher's queue bound (WATCH_MAX_QUEUED_BYTES
 * in src/api/watch.ts, 1 MiB) a key's watchers pin at most 1 GiB of events.
 */
export const DEFAULT_WATCH_MAX_STREAMS_PER_KEY = 1_000;
/** Largest SendBatch request, in bytes; every event in it is held to the payload limit too. */
export const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;

/**
 * The largest request the API reads, on gRPC and Connect alike: room for
 * one event at the payload limit, or for a batch. A larger request is
 * RESOURCE_EXHAUSTED before it is decoded; an event inside it over the
 * payload limit is RESOURCE_EXHAUSTED from the service, naming the limit.
 */
export function maxRequestBytes(maxPayloadBytes: number, maxBatchBytes: number): number {
  return Math.max(maxPayloadBytes + REQUEST_OVERHEAD_BYTES, maxBatchBytes);
}
/**
 * How long the hub keeps the members of an edge whose link dropped, waiting
 * for it to come back, before it removes them and sends channel:leave.
 * Meanwhile GetMembers of their channels is UNAVAILABLE, never partial.
 */
export const DEFAULT_EDGE_GRACE_MS = 5_000;
/** How long an edge waits for the hub to answer a request on the link. */
export const LINK_REQUEST_TIMEOUT_MS = 5_000;
/** Bytes the hub lets queue towards one edge before it drops that link. */
export const LINK_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
/**
 * Largest page of members, in bytes of its encoding: a client's getMembers
 * reply (in the connection's encoding) and a page on the link (protobuf
 * binary) stop before it, with at least one member. A quarter of the
 * default outbound queue (DEFAULT_MAX_OUTBOUND_BYTES), so that a page never
 * closes a client that reads, even behind a backlog of events; far below
 * the link's frame limit.
 */
export const MAX_MEMBERS_PAGE_BYTES = 256 * 1024;

/** Events a history read returns when the caller names no limit (GetHistory, the getHistory command). */
export const DEFAULT_HISTORY_LIMIT = 100;
/** Most events one history read may ask for. */
export const MAX_HISTORY_LIMIT = 1_000;
/**
 * Largest history reply, in bytes of its events (both encodings of each,
 * as the hub and Redis hold them): a read stops before it, with at least
 * one event, and says so only by returning fewer than asked (ask again
 * after the last one). As MAX_MEMBERS_PAGE_BYTES, it keeps a client's reply
 * within its outbound queue and a link reply far below the frame limit.
 */
export const MAX_HISTORY_REPLY_BYTES = 256 * 1024;
/**
 * Most events an edge replays to recover one connection's channel (a join
 * with since, after a resync): a client that missed more is told
 * recovered = false and resynchronises instead.
 */
export const MAX_RECOVERY_EVENTS = 1_000;

// --- Client-facing limits of an edge (docs/security.md explains each) ---

/** Most client connections one edge holds; more are refused with HTTP 503 before the upgrade. */
export const DEFAULT_MAX_CONNECTIONS_PER_EDGE = 10_000;
/** Commands per second one connection may send, on average (token bucket refill). */
export const DEFAULT_RATE_LIMIT_PER_SECOND = 50;
/** Commands one connection may send in a burst (token bucket size). */
export const DEFAULT_RATE_LIMIT_BURST = 100;
/**
 * Error replies one connection may earn in a burst (rate-limited commands,
 * malformed frames, denials...) before it is closed with 4503; the budget
 * refills at ERROR_BUDGET_REFILL_PER_SECOND.
 */
export const DEFAULT_ERROR_BUDGET = 20;
/** How fast the error budget refills, errors per second. */
export const ERROR_BUDGET_REFILL_PER_SECOND = 1;
/**
 * Bytes that may wait to be written to one client (the ws library's buffer
 * plus the socket's). A client whose queue would grow past it is closed with
 * 4001 (slow consumer): an edge's memory for queues is at most
 * connections x this.
 */
export const DEFAULT_MAX_OUTBOUND_BYTES = 1024 * 1024;
/**
 * After a slow consumer is sent its close frame, how long before its socket
 * is destroyed, when the edge runs no heartbeat (with one, the heartbeat
 * timeout is used: a client that cannot read for that long is dead anyway).
 */
export const SLOW_CONSUMER_TERMINATE_MS = 2_000;
/**
 * After the edge sends a close frame (any code but 4001), how long the
 * client has to answer it before its socket is destroyed. Meanwhile the
 * edge hands none of its frames to the core and stops reading at the first
 * one, so a client that ignores the close costs nothing but this wait.
 */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 2_000;
/** How often the edge pings every client. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 25_000;
/** How long a client has to answer a ping before it is terminated (and leaves its channels). */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 10_000;
/**
 * How long an edge keeps its clients while its backend (the link to the API,
 * or Redis) is down. Past it the edge closes them with 4004, spread like a
 * shutdown, so that they reconnect to an edge that still has the service,
 * and refuses upgrades with 503 until the backend is back. 30 s rides out a
 * restart of the API (a few seconds) without dropping anyone; meanwhile the
 * clients get UNAVAILABLE replies.
 */
export const DEFAULT_OUTAGE_CLOSE_MS = 30_000;
/** On shutdown, the window over which an edge spreads its clients' closes (no reconnect storm). */
export const DEFAULT_SHUTDOWN_SPREAD_MS = 2_000;
/** On shutdown, the deadline by which a process has exited, whatever is left. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
/** On shutdown, how long the API answers NOT_SERVING (and new calls UNAVAILABLE) before it stops listening. */
export const DEFAULT_SHUTDOWN_DRAIN_MS = 0;
/** How often the gRPC server pings a client connection that has been idle (grpc.keepalive_time_ms). */
export const DEFAULT_GRPC_KEEPALIVE_TIME_MS = 60_000;
/** How long the gRPC server waits for a keepalive ping's answer (grpc.keepalive_timeout_ms). */
export const DEFAULT_GRPC_KEEPALIVE_TIMEOUT_MS = 20_000;
/**
 * Streams one client connection may have open at once on the gRPC port
 * (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, grpc.max_concurrent_streams); a
 * stream past it is held back until one ends (Node 20's HTTP/2 server) or
 * reset with ENHANCE_YOUR_CALM (Node 24's). The RPCs that stream
 * are bounded per connection by WATCH_MAX_STREAMS_PER_CONNECTION; this
 * bounds the rest (unary calls in flight, grpc.health.v1 Watch, server
 * reflection), which were unbounded: 1,000 in flight is ten times what a
 * backend with 100 unary calls in flight on one connection needs.
 */
export const GRPC_MAX_CONCURRENT_STREAMS = 1_000;
/** Calls in flight on a connection closed for its age get this long to finish (grpc.max_connection_age_grace_ms). */
export const GRPC_MAX_CONNECTION_AGE_GRACE_MS = 30_000;

export interface Limits {
  maxPayloadBytes: number;
  maxProfileBytes: number;
  maxChannelsPerConnection: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES,
  maxProfileBytes: DEFAULT_MAX_PROFILE_BYTES,
  maxChannelsPerConnection: DEFAULT_MAX_CHANNELS_PER_CONNECTION,
};

/** The largest client frame an edge accepts for the given limits. */
export function maxFrameBytes(limits: Limits): number {
  return Math.ceil((limits.maxPayloadBytes * 4) / 3) + FRAME_OVERHEAD_BYTES;
}

/** The most network reads of one incomplete client frame an edge holds (see MIN_AVERAGE_READ_BYTES). */
export function maxBufferedReads(maxFrameBytes: number): number {
  return Math.ceil(maxFrameBytes / MIN_AVERAGE_READ_BYTES);
}
