import { create } from "@bufbuild/protobuf";
import { ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import { MemberSchema, Realtime } from "../../gen/realtime/v1/realtime_pb.js";
import type { Broker } from "../core/broker.js";
import { asRealtimeError } from "../core/errors.js";
import type { Limits } from "../core/limits.js";
import { checkChannel, checkEvent } from "../core/names.js";
import type { Presence } from "../core/presence.js";
import { checkPayload, createPublication, type IdGenerator } from "../core/publication.js";

export interface RealtimeServiceDeps {
  broker: Broker;
  presence: Presence;
  limits: Limits;
  eventIds: IdGenerator;
}

/**
 * The one implementation of realtime.v1.Realtime. The gRPC adapter (and the
 * Connect adapter) serve it unchanged; it throws ConnectError, whose codes
 * are gRPC's.
 */
export function createRealtimeService(deps: RealtimeServiceDeps): ServiceImpl<typeof Realtime> {
  const { broker, presence, limits, eventIds } = deps;

  async function publish(channel: string, event: string, payload: Parameters<typeof checkPayload>[0]) {
    const id = eventIds.next();
    const pub = createPublication(create(EventSchema, { id, channel, event, payload }), limits.maxPayloadBytes);
    const edges = await broker.publish(pub);
    return { messageId: id, edges };
  }

  return {
    async send(req) {
      return guard(async () => {
        checkChannel(req.channel);
        checkEvent(req.event);
        checkPayload(req.payload);
        return publish(req.channel, req.event, req.payload);
      });
    },
    async broadcast(req) {
      return guard(async () => {
        checkEvent(req.event);
        checkPayload(req.payload);
        return publish("", req.event, req.payload);
      });
    },
    async getMembers(req) {
      return guard(async () => {
        checkChannel(req.channel);
        const members = await presence.members(req.channel);
        return { members: members.map((m) => create(MemberSchema, { id: m.id, data: m.data })) };
      });
    },
  };
}

/** Runs fn, turning any RealtimeError into the ConnectError of the same code. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    const e = asRealtimeError(err);
    throw new ConnectError(e.message, e.code as number);
  }
}
