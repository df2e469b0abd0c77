/**
 * The system events of the client protocol (client.proto, Event): what an
 * edge sends when a member joins, leaves or changes its profile. Shared by
 * the server and the SDK. Event names with the prefix are reserved: no one
 * may send them.
 */
export const SYSTEM_EVENT_PREFIX = "channel:";

export const SystemEvent = {
  Join: "channel:join",
  Leave: "channel:leave",
  Update: "channel:update",
} as const;

/** The names of the system events. */
export type SystemEventName = (typeof SystemEvent)[keyof typeof SystemEvent];
