/**
 * GetHistory: a channel's kept events, with their positions, as WatchChannel
 * shows them (channel-events.ts). The same read as a client's getHistory
 * command (core/edge.ts): the same limit rule (core/history.ts
 * historyLimit), the same reply bound (MAX_HISTORY_REPLY_BYTES: fewer
 * events than asked, never a partial event; read on after the last one),
 * and complete = false, with no events, for a since whose epoch is not the
 * channel's or whose events are no longer all kept. A broker that cannot be read rejects
 * (UNAVAILABLE): never a partial answer.
 */
import { create } from "@bufbuild/protobuf";
import {
  GetHistoryResponseSchema,
  type GetHistoryRequest,
  type GetHistoryResponse,
  type WatchChannelResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { Broker } from "../core/broker.js";
import { fitHistory, historyLimit } from "../core/history.js";
import { MAX_HISTORY_REPLY_BYTES } from "../core/limits.js";
import { checkChannel } from "../core/names.js";
import { eventResponse } from "./channel-events.js";

/** Where history is read: the API's broker (the hub's, or Redis). */
export type HistoryReader = Pick<Broker, "history">;

/** Answers one GetHistory: throws RealtimeError INVALID_ARGUMENT (name, limit) or UNAVAILABLE. */
export async function getHistory(reader: HistoryReader, req: GetHistoryRequest): Promise<GetHistoryResponse> {
  checkChannel(req.channel);
  const limit = historyLimit(req.limit);
  const read = await reader.history(req.channel, {
    since: req.since && { offset: req.since.offset, epoch: req.since.epoch },
    limit,
    newestFirst: req.reverse,
  });
  const { publications, position, complete } = fitHistory(read, MAX_HISTORY_REPLY_BYTES);
  // complete = false comes with no events (Broker.history): the caller starts over without since.
  const events: WatchChannelResponse[] = [];
  for (const pub of publications) {
    const response = eventResponse(pub);
    if (response) events.push(response);
  }
  return create(GetHistoryResponseSchema, {
    events,
    position: { offset: position.offset, epoch: position.epoch },
    complete,
  });
}
