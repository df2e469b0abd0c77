import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { ControlSchema, type Control } from "../../gen/realtime/link/v1/link_pb.js";
import type { Publication } from "./broker.js";

/**
 * The internal channels of the control plane: how the API reaches the
 * connections of one edge or of one user, and how nodes answer (see
 * realtime.link.v1.Control). They travel through the same Broker as events
 * (the hub, or Redis), so that they need nothing the service does not
 * already run. Their names start with CONTROL_PREFIX, a character that a
 * client channel name cannot hold (core/names.ts): no client can join,
 * watch or publish to one, and they keep no history (history-rules.ts).
 *
 * Who subscribes to what:
 *   edgeChannel(id)   the edge whose connection ids start with "<id>."
 *   EDGES_CHANNEL     every edge
 *   userChannel(u)    every edge that holds a connection of user u, while it does
 *   apiChannel(id)    the API node id: the answers to its questions
 *   APIS_CHANNEL      every API node (Redis mode; the embedded mode has one)
 * A Publication on one of them carries a Control in protobuf binary as its
 * event bytes, and no JSON.
 */
export const CONTROL_PREFIX = "#";
export const EDGES_CHANNEL = "#edges";
export const APIS_CHANNEL = "#apis";

export function edgeChannel(edgeId: string): string {
  return `#edge:${edgeId}`;
}

export function userChannel(userId: string): string {
  return `#user:${userId}`;
}

export function apiChannel(nodeId: string): string {
  return `#api:${nodeId}`;
}

/** True for a channel of the control plane. */
export function isControlChannel(channel: string): boolean {
  return channel.charCodeAt(0) === 35; // "#"
}

/**
 * The id of the edge that holds a connection: its id up to the last "."
 * (IdGenerator, publication.ts); undefined when it has none.
 */
export function edgeOfConnection(connectionId: string): string | undefined {
  const dot = connectionId.lastIndexOf(".");
  return dot > 0 ? connectionId.slice(0, dot) : undefined;
}

/** The publication that carries control on channel. */
export function controlPublication(channel: string, control: MessageInitShape<typeof ControlSchema>): Publication {
  return {
    channel,
    event: toBinary(ControlSchema, create(ControlSchema, control)),
    eventJson: "",
    origin: "",
    skipOrigin: false,
  };
}

/** The Control a control channel's publication carries; throws on bytes that are not one. */
export function controlOf(pub: Publication): Control {
  return fromBinary(ControlSchema, pub.event);
}
