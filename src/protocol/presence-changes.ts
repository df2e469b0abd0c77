/**
 * The events a presence frame carries, in either form (client.proto,
 * Presence): the list of events (presence=batch), or the compact form's
 * changes (presence=compact) expanded into the events they stand for,
 * each exactly as its own event frame would carry it (channel, event name,
 * member, id, offset, epoch). Shared by the SDK, which emits one event per
 * change, and the tests. Builds plain objects: nothing of the protobuf
 * runtime is loaded (the SDK's JSON path bundles without it).
 */
import type { Event, Member, Presence } from "../../gen/realtime/client/v1/client_pb.js";
import { SystemEvent } from "./system-events.js";

const EVENT_OF = { join: SystemEvent.Join, leave: SystemEvent.Leave, update: SystemEvent.Update } as const;

/** The events of a presence frame, in the channel's order. */
export function presenceEvents(presence: Presence): Event[] {
  if (presence.changes.length === 0) return presence.events;
  const { channel, epoch, firstOffset } = presence;
  const events: Event[] = [];
  for (let i = 0; i < presence.changes.length; i++) {
    const change = presence.changes[i]!;
    if (change.change.case === undefined) continue; // a kind from a newer edge: not an event this SDK knows
    const offset = firstOffset === 0n ? 0n : firstOffset + BigInt(i);
    events.push({
      $typeName: "realtime.client.v1.Event",
      channel,
      event: EVENT_OF[change.change.case],
      payload: { case: "member", value: change.change.value as Member },
      id: change.id,
      offset,
      epoch: offset === 0n ? "" : epoch,
    });
  }
  return events;
}
