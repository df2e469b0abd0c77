/**
 * A channel's events as the API shows them (WatchChannel's events and
 * GetHistory's): a publication decoded once into a WatchChannelResponse
 * (join, leave, profile_update or message, with its id and position). The
 * one place this decoding is done, so that a watcher and a history reader
 * see the same event the same way.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  MemberSchema,
  WatchChannelResponseSchema,
  type Member as MemberMessage,
  type WatchChannelResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication } from "../core/broker.js";
import type { Member } from "../core/presence.js";
import { SystemEvent } from "../protocol/system-events.js";

/**
 * Each publication is decoded once, whatever the number of watchers: the
 * response is shared, and must not be changed by its readers.
 */
const decoded = new WeakMap<Publication, WatchChannelResponse | null>();

/** A member as the API shows it. */
export function memberMessage(m: Member): MemberMessage {
  return create(MemberSchema, { id: m.id, data: m.data, userId: m.userId });
}

/**
 * The response for a publication, with its offset and epoch (0 and "" when
 * it has no position); null for one that is not a channel event (a broken
 * publisher's bytes: skipped, not the reader's fault). Shared: do not change it.
 */
export function eventResponse(pub: Publication): WatchChannelResponse | null {
  let response = decoded.get(pub);
  if (response !== undefined) return response;
  response = null;
  const position = { offset: pub.offset ?? 0n, epoch: pub.epoch ?? "" };
  try {
    const event = fromBinary(EventSchema, pub.event);
    const p = event.payload;
    const id = event.id;
    if (p.case === "member") {
      const m = memberMessage(p.value);
      if (event.event === SystemEvent.Join)
        response = create(WatchChannelResponseSchema, { id, ...position, update: { case: "join", value: m } });
      else if (event.event === SystemEvent.Leave)
        response = create(WatchChannelResponseSchema, { id, ...position, update: { case: "leave", value: m } });
      else if (event.event === SystemEvent.Update)
        response = create(WatchChannelResponseSchema, {
          id,
          ...position,
          update: { case: "profileUpdate", value: m },
        });
    } else if (p.case === "json" || p.case === "binary") {
      response = create(WatchChannelResponseSchema, {
        id,
        ...position,
        update: { case: "message", value: { event: event.event, payload: p, origin: pub.origin } },
      });
    }
  } catch {
    // Not an Event: the publisher is broken, not the reader; skip it.
  }
  decoded.set(pub, response);
  return response;
}
