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

/** An application event, as its listeners get it. */
export interface MessageEvent<T = Message> {
  /** The channel it was sent to; "" for a broadcast. */
  channel: string;
  /** The payload. */
  message: T;
  /** The event id: unique per event, the same on every receiving connection. */
  id: string;
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

/** Lifecycle events, by name, with their payloads. */
export interface LifecycleEvents {
  connect: ConnectInfo;
  disconnect: DisconnectInfo;
  error: RealtimeClientError;
  reconnectAttempt: ReconnectAttemptInfo;
}
