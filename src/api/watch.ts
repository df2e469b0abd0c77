/**
 * WatchChannel: a channel's members, then its events, as a stream. The API
 * attaches one broker node per watcher (not an edge: it counts for no
 * delivery and receives no broadcasts), subscribes it to the channel, and
 * only then reads the members, so no event between the two is lost.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import {
  MemberSchema,
  WatchChannelResponseSchema,
  type WatchChannelResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication, PublicationHandler } from "../core/broker.js";
import { Code, RealtimeError } from "../core/errors.js";
import { SystemEvent } from "../core/names.js";
import type { Member, Presence } from "../core/presence.js";

/** Most members in one WatchSnapshot message (the proto documents it). */
export const WATCH_SNAPSHOT_CHUNK = 500;
/**
 * Events queued for one watcher that reads too slowly; past this the watch
 * ends with RESOURCE_EXHAUSTED at its next read (the queue is dropped: the
 * watcher must watch again for a fresh snapshot anyway) instead of growing
 * the API's memory.
 */
export const WATCH_MAX_QUEUED_EVENTS = 10_000;

/** One watcher's subscription: MemoryNode (broker-memory.ts) is one. */
export interface WatchNode {
  /** Resolves once the channel's publications reach the node's handler. */
  subscribe(channel: string): Promise<void>;
  /** Stops delivery to the handler for good. */
  close(): void;
}

/**
 * Where watchers subscribe: attach a node whose handler receives the
 * publications of the channels it subscribes to, and no broadcasts.
 * `(h) => memoryBroker.attach(h, false)` in the embedded mode.
 */
export type WatchSource = (handler: PublicationHandler) => WatchNode;

/** Each publication is decoded once, whatever the number of watchers. */
const decoded = new WeakMap<Publication, WatchChannelResponse | null>();

/**
 * The responses of one WatchChannel call: the snapshot (members by id, in
 * parts of {@link WATCH_SNAPSHOT_CHUNK}), then each event in the order the
 * broker delivered it, until `signal` aborts (then it throws the reason).
 */
export async function* watchChannel(
  channel: string,
  source: WatchSource,
  presence: Presence,
  signal: AbortSignal,
): AsyncGenerator<WatchChannelResponse> {
  const queue: WatchChannelResponse[] = [];
  let overflow = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const node = source((pub) => {
    if (overflow) return;
    const response = toResponse(pub);
    if (!response) return;
    if (queue.length >= WATCH_MAX_QUEUED_EVENTS) overflow = true;
    else queue.push(response);
    notify();
  });
  signal.addEventListener("abort", notify);
  try {
    await node.subscribe(channel);
    const members = [...(await presence.members(channel))].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 0; i === 0 || i < members.length; i += WATCH_SNAPSHOT_CHUNK) {
      const part = members.slice(i, i + WATCH_SNAPSHOT_CHUNK).map(member);
      yield create(WatchChannelResponseSchema, {
        update: { case: "members", value: { members: part, complete: i + WATCH_SNAPSHOT_CHUNK >= members.length } },
      });
    }
    for (;;) {
      signal.throwIfAborted();
      if (overflow) {
        queue.length = 0;
        throw new RealtimeError(
          Code.ResourceExhausted,
          `the watcher fell ${WATCH_MAX_QUEUED_EVENTS} events behind the channel; watch again to get a fresh snapshot`,
        );
      }
      const next = queue.shift();
      if (next) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    signal.removeEventListener("abort", notify);
    node.close();
  }
}

function member(m: Member) {
  return create(MemberSchema, { id: m.id, data: m.data, userId: m.userId });
}

/** The response for a publication, or null for one that is not a channel event. */
function toResponse(pub: Publication): WatchChannelResponse | null {
  let response = decoded.get(pub);
  if (response !== undefined) return response;
  response = null;
  try {
    const event = fromBinary(EventSchema, pub.event);
    const p = event.payload;
    if (p.case === "member") {
      const m = member(p.value);
      if (event.event === SystemEvent.Join)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "join", value: m } });
      else if (event.event === SystemEvent.Leave)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "leave", value: m } });
      else if (event.event === SystemEvent.Update)
        response = create(WatchChannelResponseSchema, { id: event.id, update: { case: "profileUpdate", value: m } });
    } else if (p.case === "json" || p.case === "binary") {
      response = create(WatchChannelResponseSchema, {
        id: event.id,
        update: { case: "message", value: { event: event.event, payload: p, origin: pub.origin } },
      });
    }
  } catch {
    // Not an Event: the publisher is broken, not the watcher; skip it.
  }
  decoded.set(pub, response);
  return response;
}
