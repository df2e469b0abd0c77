/**
 * What listeners receive. Application events and system events share one
 * namespace of event names; the system ones are reserved by the service
 * (senders cannot use the "channel:" prefix).
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { RealtimeClientError } from "./errors.js";

export type { JsonValue };

/** The system events' names (src/protocol/system-events.ts, shared with the edge); each carries a {@link MemberEvent}. */
export { SystemEvent, type SystemEventName } from "../protocol/system-events.js";

/**
 * An application message: a JSON value, or bytes. Bytes arrive as a
 * Uint8Array in both encodings, JSON values exactly as the sender's
 * JSON.stringify would have parsed back.
 */
export type Message = JsonValue | Uint8Array;

/**
 * A place in a channel's sequence of events (docs/protocol.md, "Positions,
 * recovery and history"). Offsets grow by one per event of the channel and
 * compare only within one epoch; the epoch changes when the channel's
 * history was lost. The offset is a bigint (a uint64 on the wire): write it
 * with String(offset) to keep it, read it back with BigInt(text).
 */
export interface StreamPosition {
  /** The offset of the event (or of the last event seen): 1 for the channel's first. */
  offset: bigint;
  /** The epoch the offset belongs to; never "" here. */
  epoch: string;
}

/** An application event, as its listeners get it. */
export interface MessageEvent<T = Message> {
  /** The channel it was sent to; "" for a broadcast. */
  channel: string;
  /** The payload. */
  message: T;
  /** The event id: unique per event, the same on every receiving connection. */
  id: string;
  /** The event's position in its channel; undefined for a broadcast and in a channel that keeps no history. */
  position?: StreamPosition;
}

/** A member of a channel: a connection and its profile. */
export interface Member {
  /** The connection id (what {@link RealtimeClient.getSocketId} returns on that client). */
  id: string;
  /** The connection's profile; null when it set none. */
  data: JsonValue;
  /** The user the connection authenticated as (its token's subject); "" when anonymous. */
  userId: string;
}

/** One page of a channel's members ({@link RealtimeClient.getMembersPage}). */
export interface MembersPage {
  /** Ordered by member id. */
  members: Member[];
  /** Pass as pageToken to read the next page; "" on the last page. */
  nextPageToken: string;
}

/** A system event (channel:join, channel:leave, channel:update). */
export interface MemberEvent {
  /** The channel the member joined, left, or is in (update). */
  channel: string;
  /** The member the event is about, with its profile at the time of the event. */
  message: Member;
  /** The event's position in its channel; undefined in a channel that keeps no history. */
  position?: StreamPosition;
}

/** What join resolves with. */
export interface JoinResult {
  /**
   * Where this client's stream of the channel starts: the position of its
   * own channel:join (it receives every event after it). Undefined when the
   * channel keeps no history, or when the edge could not publish the join's
   * event yet (it follows with its position once published).
   */
  position: StreamPosition | undefined;
  /**
   * With `since`: true when every event after it was delivered before the
   * join resolved (nothing was missed). False without `since`, and when the
   * edge could not replay (the epoch changed, the events are no longer kept,
   * or more than 1,000 were missed): what happened in between is lost.
   */
  recovered: boolean;
}

/** The options of join. */
export interface JoinOptions {
  /** Whether this client gets its own channel:join; default: the connection's echo. */
  echo?: boolean;
  /**
   * Recover from this position (one the app kept from an event, say across
   * a page reload): the edge first delivers, in order and once, every event
   * of the channel after it; JoinResult.recovered says whether it could.
   */
  since?: StreamPosition;
}

/** The options of getHistory. */
export interface HistoryOptions {
  /** Only the events after this position; undefined: from the oldest kept (the newest with reverse). */
  since?: StreamPosition;
  /** The most events: 1 to 1,000; undefined or 0: the edge's default, 100. More is INVALID_ARGUMENT. */
  limit?: number;
  /** Newest first. Default false: oldest first. */
  reverse?: boolean;
}

/** One event of a channel's history: its name, and the payload its listeners got (position included). */
export interface HistoryEvent {
  /** The event name; channel:join, channel:leave and channel:update carry a MemberEvent. */
  event: string;
  payload: MessageEvent | MemberEvent;
}

/** What getHistory resolves with. */
export interface HistoryPage {
  /**
   * The events, oldest first (newest first with reverse), each with its
   * position; at most limit, and at most 256 KiB of them: read on with
   * since = the last one's position.
   */
  events: HistoryEvent[];
  /** The channel's position when the edge read it; undefined when the channel keeps no history. */
  position: StreamPosition | undefined;
  /** With since: true when every event after since is still kept (events holds the first of them). */
  complete: boolean;
}

/** The SDK's own event when a channel's events were lost; not an edge event, so onAny does not get it. */
export const RESYNC_EVENT = "channel:resync";

/**
 * Why channel:resync fired:
 *  - "not_recovered": after a reconnect, the SDK re-joined the channel with
 *    the last position it had seen, and the edge could not replay what was
 *    missed (the history no longer holds it, the channel's epoch changed,
 *    or more than 1,000 events were missed);
 *  - "resync": the edge lost events of the channel while this client was
 *    connected and could not fill the gap from its history (a Resync frame).
 */
export type ResyncReason = "not_recovered" | "resync";

/**
 * Passed to channel:resync listeners: events of the channel may have been
 * missed, so state built from them (a member list, a message log) must be
 * read again, e.g. with getMembers and getHistory. The SDK stays joined
 * and keeps delivering the channel's events.
 */
export interface ResyncEvent {
  channel: string;
  reason: ResyncReason;
  /**
   * The last position known good: for "resync", the last one the edge
   * delivered (events after it up to the next one delivered may be
   * missing); for "not_recovered", where the new stream starts. Undefined
   * when the edge gave none.
   */
  position: StreamPosition | undefined;
}

/** Passed to onConnect listeners once the client is ready for calls. */
export interface ConnectInfo {
  /** This connection's id, as other members see it. */
  id: string;
  /** False for the first connection after open(), true after a reconnect. */
  reconnected: boolean;
}

/** Passed to onDisconnect listeners. */
export interface DisconnectInfo {
  /** The WebSocket close code (src/core/close-codes.ts); 1006 when the connection just dropped. */
  code: number;
  /** The close reason the edge gave, or the SDK's own. */
  reason: string;
  /** Whether the SDK will try to reconnect; false means it stopped for good. */
  willReconnect: boolean;
}

/** Passed to onReconnectAttempt listeners, just before each attempt. */
export interface ReconnectAttemptInfo {
  /** 1 for the first attempt after a disconnect, then 2, 3, ... */
  attempt: number;
  /** How long the SDK waited before this attempt, in ms. */
  delayMs: number;
}

/**
 * Passed to "subscribed" listeners: the backend made this connection join a
 * channel (realtime.v1 Subscribe). The SDK treats it as joined: its events
 * arrive, and it is re-joined after a reconnect (as a client join, which
 * needs what a client join needs: a private channel's grant in the token).
 */
export interface SubscribedInfo {
  channel: string;
  /** The channel's position at the join; undefined when it keeps no history. */
  position: StreamPosition | undefined;
}

/**
 * Passed to "unsubscribed" listeners: the backend made this connection
 * leave a channel (realtime.v1 Unsubscribe). It is not re-joined.
 */
export interface UnsubscribedInfo {
  channel: string;
}

/** Lifecycle events, by name, with their payloads. */
export interface LifecycleEvents {
  connect: ConnectInfo;
  disconnect: DisconnectInfo;
  error: RealtimeClientError;
  reconnectAttempt: ReconnectAttemptInfo;
  [RESYNC_EVENT]: ResyncEvent;
  subscribed: SubscribedInfo;
  unsubscribed: UnsubscribedInfo;
}
