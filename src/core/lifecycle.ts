/**
 * The lifecycle sequence: what happens to the service's channels and
 * connections, for backends (realtime.v1.Realtime.WatchLifecycle):
 * channel occupied and vacated, member joined and left (and why),
 * connection opened and closed, edge lost.
 *
 * Each is a realtime.v1.LifecycleEvent, carried as the binary payload of
 * an event named LIFECYCLE_EVENT on LIFECYCLE_CHANNEL, an internal channel
 * (its "#" is a character client channel names cannot hold, as the control
 * plane's: no client can join, watch or publish to it) that keeps history
 * (history-rules.ts), so that the events have positions in one sequence
 * for the whole service and a watch resumes after the last it received.
 * No edge subscribes to it: only the API's watchers receive it.
 *
 * Who publishes: the membership room (membership.ts) of the node that made
 * the change, the one place that announces membership, in the order it
 * made them: a connection's edge for its own joins, leaves, opening and
 * closing; the node that gave up on an edge (the hub, the Redis sweep's
 * lock holder) for that edge's members and the edge itself. Occupied and
 * vacated come from the presence write that filled or emptied the channel
 * (core/presence.ts, Transition), with presence's clock.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import { LifecycleEventSchema, type LifecycleEvent } from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication } from "./broker.js";
import { encodeEventBinary, type ApplicationEvent } from "../wire/event-codec.js";
import { nowUnixUs } from "./presence.js";
import type { IdGenerator } from "./publication.js";

/** The internal channel of the lifecycle sequence. */
export const LIFECYCLE_CHANNEL = "#lifecycle";
/** The event name its publications carry. */
export const LIFECYCLE_EVENT = "lifecycle";
/**
 * Lifecycle events kept for resuming (the most a channel may keep,
 * MAX_HISTORY_SIZE): a watcher that was away for up to this many events,
 * and up to LIFECYCLE_HISTORY_TTL_MS, resumes without a resync.
 */
export const LIFECYCLE_HISTORY_SIZE = 10_000;
/** How long a lifecycle event is kept for resuming: five minutes, a backend's restart or redeploy. */
export const LIFECYCLE_HISTORY_TTL_MS = 300_000;

/** What a lifecycle event says, without its time (lifecyclePublication stamps it). */
export type LifecycleKind = MessageInitShape<typeof LifecycleEventSchema>["kind"];

/**
 * The publication of one lifecycle event on LIFECYCLE_CHANNEL. at: its
 * time in microseconds since the Unix epoch (default: now, this process's
 * clock); occupied and vacated carry presence's (Transition).
 */
export function lifecyclePublication(ids: IdGenerator, kind: LifecycleKind, at: bigint = nowUnixUs()): Publication {
  const payload = toBinary(LifecycleEventSchema, create(LifecycleEventSchema, { atUnixUs: at, kind }));
  const event = create(EventSchema, {
    id: ids.next(),
    channel: LIFECYCLE_CHANNEL,
    event: LIFECYCLE_EVENT,
    payload: { case: "binary", value: payload },
  }) as ApplicationEvent;
  // Binary only: no client receives it (only the API's watchers, which
  // decode the bytes), so its JSON is never built, as the control plane's.
  // The event codec every application event takes (publication.ts).
  return {
    channel: LIFECYCLE_CHANNEL,
    event: encodeEventBinary(event),
    eventJson: "",
    origin: "",
    skipOrigin: false,
  };
}

/**
 * The LifecycleEvent a publication of LIFECYCLE_CHANNEL carries, and its
 * event's id, read from its event bytes (realtime.client.v1.Event, binary
 * payload); throws on bytes that are not one.
 */
export function lifecycleOf(pub: Publication): { id: string; event: LifecycleEvent } {
  const event = fromBinary(EventSchema, pub.event);
  if (event.event !== LIFECYCLE_EVENT || event.payload.case !== "binary")
    throw new Error(`a publication of ${LIFECYCLE_CHANNEL} that is not a lifecycle event`);
  return { id: event.id, event: fromBinary(LifecycleEventSchema, event.payload.value) };
}

/** The channel a lifecycle event is about; undefined for a connection event (opened, closed, edge lost). */
export function channelOfLifecycle(event: LifecycleEvent): string | undefined {
  switch (event.kind.case) {
    case "channelOccupied":
    case "channelVacated":
    case "memberJoined":
    case "memberLeft":
      return event.kind.value.channel;
    default:
      return undefined;
  }
}
