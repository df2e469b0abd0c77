/**
 * WatchLifecycle: the lifecycle sequence (core/lifecycle.ts) as a stream,
 * filtered for one watcher. The API attaches one broker node per watcher,
 * as WatchChannel does (watch.ts), subscribes it to LIFECYCLE_CHANNEL, and
 * only then reads the history after since, so no event between the two is
 * lost.
 */
import { create } from "@bufbuild/protobuf";
import { WatchLifecycleResponseSchema, type WatchLifecycleResponse } from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication, StreamPosition } from "../core/broker.js";
import { channelOfLifecycle, LIFECYCLE_CHANNEL, lifecycleOf } from "../core/lifecycle.js";
import { MAX_HISTORY_LIMIT } from "../core/limits.js";
import { decodedOnce, followChannel, type WatchResume, type WatchSource } from "./watch.js";

/** Which events one watcher wants (WatchLifecycleRequest). */
export interface LifecycleFilter {
  /** Channel events of channels whose name starts with it ("" for all). */
  readonly channelPrefix: string;
  /** Also the connection events (opened, closed, edge lost). */
  readonly connections: boolean;
}

/**
 * The response for a publication of LIFECYCLE_CHANNEL, with its offset and
 * epoch, decoded once for every watcher of this node; null for bytes that
 * are not a lifecycle event.
 */
const lifecycleResponse = decodedOnce((pub: Publication): WatchLifecycleResponse => {
  const { id, event } = lifecycleOf(pub);
  return create(WatchLifecycleResponseSchema, { id, event, offset: pub.offset ?? 0n, epoch: pub.epoch ?? "" });
});

/**
 * The responses of one WatchLifecycle call: with resume, the kept events
 * after since that pass the filter, in order (when they are not all kept
 * any more, or the sequence's epoch changed, a message with resync = true
 * and no event instead of those missed); then each live event that passes, each with its
 * offset and epoch, until signal aborts. Bounded and ended as every watch
 * is (watch.ts followChannel). A publication that does not decode is
 * skipped (only the service publishes on LIFECYCLE_CHANNEL).
 */
export function watchLifecycle(
  filter: LifecycleFilter,
  source: WatchSource,
  signal: AbortSignal,
  resume?: WatchResume,
): AsyncGenerator<WatchLifecycleResponse> {
  const respond = (pub: Publication): WatchLifecycleResponse | undefined => {
    const response = lifecycleResponse(pub);
    if (!response) return undefined;
    const channel = channelOfLifecycle(response.event!);
    if (channel === undefined ? !filter.connections : !channel.startsWith(filter.channelPrefix)) return undefined;
    return response;
  };
  return followChannel(LIFECYCLE_CHANNEL, source, signal, respond, async function* () {
    if (!resume) return { offset: 0n, epoch: "" };
    // Page by page (the sequence keeps up to LIFECYCLE_HISTORY_SIZE, more
    // than one read's MAX_HISTORY_LIMIT), each page checked complete.
    let cursor: StreamPosition = resume.since;
    for (;;) {
      const res = await resume.history.history(LIFECYCLE_CHANNEL, { since: cursor, limit: MAX_HISTORY_LIMIT });
      if (!res.complete || res.position.epoch !== cursor.epoch) {
        yield create(WatchLifecycleResponseSchema, { resync: true });
        return cursor;
      }
      for (const pub of res.publications) {
        if (pub.offset === undefined || pub.offset <= cursor.offset) continue;
        cursor = { offset: pub.offset, epoch: pub.epoch! };
        const response = respond(pub);
        if (response) yield response;
      }
      if (res.publications.length === 0 || cursor.offset >= res.position.offset) return cursor;
    }
  });
}
