/** A grpc-js client of realtime.v1.Realtime built from gen/, for tests. */
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Realtime,
  type BroadcastRequestSchema,
  type BroadcastResponse,
  type DisconnectRequestSchema,
  type DisconnectResponse,
  type GetConnectionsRequestSchema,
  type GetConnectionsResponse,
  type InfoResponse,
  type SubscribeRequestSchema,
  type SubscribeResponse,
  type UnsubscribeRequestSchema,
  type UnsubscribeResponse,
  type GetMembersRequestSchema,
  type GetHistoryRequestSchema,
  type GetHistoryResponse,
  type GetMembersResponse,
  type ListChannelsRequestSchema,
  type ListChannelsResponse,
  type PresenceStatsRequestSchema,
  type PresenceStatsResponse,
  PublishRequestSchema,
  type PublishRequest,
  type PublishResponse,
  type SendBatchRequestSchema,
  type SendBatchResponse,
  type SendRequestSchema,
  type SendResponse,
  type WatchChannelRequestSchema,
  type WatchChannelResponse,
  type WatchStatsRequestSchema,
  type WatchStatsResponse,
  type WatchLifecycleRequestSchema,
  type WatchLifecycleResponse,
  type WatchMessagesRequestSchema,
  type WatchMessagesResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import { create } from "@bufbuild/protobuf";
import { serviceDefinition } from "../../src/api/grpc/adapter.js";

export interface RealtimeTestClient {
  send(req: MessageInitShape<typeof SendRequestSchema>, metadata?: grpc.Metadata): Promise<SendResponse>;
  sendBatch(req: MessageInitShape<typeof SendBatchRequestSchema>, metadata?: grpc.Metadata): Promise<SendBatchResponse>;
  broadcast(req: MessageInitShape<typeof BroadcastRequestSchema>, metadata?: grpc.Metadata): Promise<BroadcastResponse>;
  getMembers(
    req: MessageInitShape<typeof GetMembersRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<GetMembersResponse>;
  presenceStats(
    req: MessageInitShape<typeof PresenceStatsRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<PresenceStatsResponse>;
  listChannels(
    req: MessageInitShape<typeof ListChannelsRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<ListChannelsResponse>;
  getHistory(
    req: MessageInitShape<typeof GetHistoryRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<GetHistoryResponse>;
  disconnect(
    req: MessageInitShape<typeof DisconnectRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<DisconnectResponse>;
  subscribe(req: MessageInitShape<typeof SubscribeRequestSchema>, metadata?: grpc.Metadata): Promise<SubscribeResponse>;
  unsubscribe(
    req: MessageInitShape<typeof UnsubscribeRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<UnsubscribeResponse>;
  info(req?: object, metadata?: grpc.Metadata): Promise<InfoResponse>;
  getConnections(
    req: MessageInitShape<typeof GetConnectionsRequestSchema>,
    metadata?: grpc.Metadata,
  ): Promise<GetConnectionsResponse>;
  /** Opens a WatchChannel stream: read WatchChannelResponses; cancel() ends it. */
  watchChannel(
    req: MessageInitShape<typeof WatchChannelRequestSchema>,
    metadata?: grpc.Metadata,
  ): grpc.ClientReadableStream<WatchChannelResponse>;
  /** Opens a WatchStats stream: read WatchStatsResponses; cancel() ends it. */
  watchStats(
    req: MessageInitShape<typeof WatchStatsRequestSchema>,
    metadata?: grpc.Metadata,
  ): grpc.ClientReadableStream<WatchStatsResponse>;
  /** Opens a WatchLifecycle stream: read WatchLifecycleResponses; cancel() ends it. */
  watchLifecycle(
    req: MessageInitShape<typeof WatchLifecycleRequestSchema>,
    metadata?: grpc.Metadata,
  ): grpc.ClientReadableStream<WatchLifecycleResponse>;
  /** Opens a WatchMessages stream: read WatchMessagesResponses; cancel() ends it. */
  watchMessages(
    req: MessageInitShape<typeof WatchMessagesRequestSchema>,
    metadata?: grpc.Metadata,
  ): grpc.ClientReadableStream<WatchMessagesResponse>;
  /** Opens a Publish stream: write PublishRequests, read PublishResponses. */
  publish(metadata?: grpc.Metadata): grpc.ClientDuplexStream<PublishRequest, PublishResponse>;
  close(): void;
}

const Client = grpc.makeGenericClientConstructor(serviceDefinition(Realtime), "Realtime");

export function realtimeClient(address: string): RealtimeTestClient {
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as Record<string, Function> &
    grpc.Client;
  const call =
    <Res>(name: string, schema: Parameters<typeof create>[0]) =>
    (req: object, metadata = new grpc.Metadata()) =>
      new Promise<Res>((resolve, reject) =>
        client[name]!.call(client, create(schema, req as never), metadata, (err: grpc.ServiceError | null, res: Res) =>
          err ? reject(err) : resolve(res),
        ),
      );
  const m = Realtime.method;
  return {
    send: call<SendResponse>("send", m.send.input),
    sendBatch: call<SendBatchResponse>("sendBatch", m.sendBatch.input),
    broadcast: call<BroadcastResponse>("broadcast", m.broadcast.input),
    getMembers: call<GetMembersResponse>("getMembers", m.getMembers.input),
    presenceStats: call<PresenceStatsResponse>("presenceStats", m.presenceStats.input),
    listChannels: call<ListChannelsResponse>("listChannels", m.listChannels.input),
    getHistory: call<GetHistoryResponse>("getHistory", m.getHistory.input),
    disconnect: call<DisconnectResponse>("disconnect", m.disconnect.input),
    subscribe: call<SubscribeResponse>("subscribe", m.subscribe.input),
    unsubscribe: call<UnsubscribeResponse>("unsubscribe", m.unsubscribe.input),
    info: (req = {}, metadata) => call<InfoResponse>("info", m.info.input)(req, metadata),
    getConnections: call<GetConnectionsResponse>("getConnections", m.getConnections.input),
    watchChannel: (req, metadata = new grpc.Metadata()) =>
      (
        client as unknown as {
          watchChannel(r: unknown, m: grpc.Metadata): grpc.ClientReadableStream<WatchChannelResponse>;
        }
      ).watchChannel(create(m.watchChannel.input, req), metadata),
    watchStats: (req, metadata = new grpc.Metadata()) =>
      (
        client as unknown as {
          watchStats(r: unknown, m: grpc.Metadata): grpc.ClientReadableStream<WatchStatsResponse>;
        }
      ).watchStats(create(m.watchStats.input, req), metadata),
    watchLifecycle: (req, metadata = new grpc.Metadata()) =>
      (
        client as unknown as {
          watchLifecycle(r: unknown, m: grpc.Metadata): grpc.ClientReadableStream<WatchLifecycleResponse>;
        }
      ).watchLifecycle(create(m.watchLifecycle.input, req), metadata),
    watchMessages: (req, metadata = new grpc.Metadata()) =>
      (
        client as unknown as {
          watchMessages(r: unknown, m: grpc.Metadata): grpc.ClientReadableStream<WatchMessagesResponse>;
        }
      ).watchMessages(create(m.watchMessages.input, req), metadata),
    publish: (metadata = new grpc.Metadata()) =>
      (
        client as unknown as { publish(m: grpc.Metadata): grpc.ClientDuplexStream<PublishRequest, PublishResponse> }
      ).publish(metadata),
    close: () => client.close(),
  };
}

/** What one Publish call answered: every response, and its status. */
export interface PublishOutcome {
  responses: PublishResponse[];
  status: grpc.StatusObject;
}

/** Writes every request on one Publish call, half-closes it, and collects what comes back. */
export function publishAll(
  stream: grpc.ClientDuplexStream<PublishRequest, PublishResponse>,
  requests: MessageInitShape<typeof PublishRequestSchema>[],
): Promise<PublishOutcome> {
  const responses: PublishResponse[] = [];
  const done = new Promise<PublishOutcome>((resolve) => {
    let status: grpc.StatusObject | undefined;
    stream.on("data", (r: PublishResponse) => responses.push(r));
    stream.on("status", (s: grpc.StatusObject) => {
      status = s;
      resolve({ responses, status });
    });
    stream.on("error", () => {
      // Reported through 'status'.
      if (status) resolve({ responses, status });
    });
  });
  for (const r of requests) stream.write(create(PublishRequestSchema, r));
  stream.end();
  return done;
}
