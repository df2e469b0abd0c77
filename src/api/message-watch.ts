/**
 * WatchMessages: the message tap (core/tap.ts) as a stream, filtered for
 * one watcher. The API attaches one broker node per watcher, as
 * WatchChannel does (watch.ts), and subscribes it to TAP_CHANNEL; while it
 * is open, the node's TapDemand announces the tap, so that every
 * publishing node copies its messages there.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { WatchMessagesResponseSchema, type WatchMessagesResponse } from "../../gen/realtime/v1/realtime_pb.js";
import type { Publication } from "../core/broker.js";
import { TAP_CHANNEL } from "../core/tap.js";
import { decodedOnce, followChannel, type WatchSource } from "./watch.js";

/** Which messages one watcher wants (WatchMessagesRequest). */
export interface MessageFilter {
  /** Messages to channels whose name starts with it; "" for all, broadcasts and Sends to users included. */
  readonly channelPrefix: string;
  /** Messages with this event name; "" for any. */
  readonly event: string;
}

/** The response a publication of TAP_CHANNEL carries, decoded once for every watcher of this node; null for bytes that are not one. */
const tapResponse = decodedOnce((pub: Publication) => fromBinary(WatchMessagesResponseSchema, pub.event));

/** Whether a response is for this watcher: a copy that passes the filter, or any skipped report. */
export function passes(filter: MessageFilter, response: WatchMessagesResponse): boolean {
  const m = response.message;
  // What was skipped is counted before any filter: every watcher is told.
  if (!m) return response.skipped > 0n;
  if (filter.event !== "" && m.event !== filter.event) return false;
  return filter.channelPrefix === "" || (m.channel !== "" && m.channel.startsWith(filter.channelPrefix));
}

/**
 * The responses of one WatchMessages call: each copy that passes the
 * filter, and every skipped report, in the order this node received them,
 * until signal aborts. open() counts the watcher in the node's TapDemand
 * (announcing the tap) and returns what ends it, called when the stream
 * ends. Bounded and ended as every watch is (watch.ts followChannel).
 */
export async function* watchMessages(
  filter: MessageFilter,
  source: WatchSource,
  signal: AbortSignal,
  open: () => () => void,
): AsyncGenerator<WatchMessagesResponse> {
  const respond = (pub: Publication) => {
    const response = tapResponse(pub);
    return response && passes(filter, response) ? response : undefined;
  };
  let close: (() => void) | undefined;
  try {
    // eslint-disable-next-line require-yield -- nothing comes before the live copies: no snapshot, no history
    yield* followChannel(TAP_CHANNEL, source, signal, respond, async function* () {
      // Subscribed: the copies announced from now on reach this watcher.
      close = open();
      return { offset: 0n, epoch: "" };
    });
  } finally {
    close?.();
  }
}
