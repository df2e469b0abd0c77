/**
 * Every limit of the service, each a named constant with its default. The
 * config schema (src/config.ts) reads overrides and checks them; the core
 * takes a Limits object so that tests can lower them.
 */

/** Longest channel name, in characters. */
export const MAX_CHANNEL_NAME_LENGTH = 128;
/** Longest event name, in characters. */
export const MAX_EVENT_NAME_LENGTH = 64;
/** Largest event, in bytes of its protobuf encoding (payload and names). */
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
/** Largest gRPC/Connect request: the payload limit plus room for the names. */
export const REQUEST_OVERHEAD_BYTES = 4 * 1024;
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
