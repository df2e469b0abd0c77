import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { ErrorCode } from "../../gen/realtime/client/v1/client_pb.js";
import type {
  Control,
  ControlReplySchema,
  ControlTarget,
  ConnectionStateSchema,
} from "../../gen/realtime/link/v1/link_pb.js";
import { CloseCode } from "../protocol/close-codes.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { decodePublication } from "../wire/publication.js";
import type { NodeTotals } from "./node-counters.js";
import type { Broker, Publication } from "./broker.js";
import { controlOf, controlPublication, EDGES_CHANNEL, edgeChannel, userChannel } from "./control-channels.js";
import { MAX_CHANNELS_LISTED, MAX_CONNECTIONS_LISTED } from "./limits.js";
import type { Tap } from "./tap.js";

/** Who an edge is, for the control plane: its id (its connection ids' prefix), version and start. */
export interface EdgeNode {
  readonly id: string;
  readonly version: string;
  readonly startedUnixMs: number;
  /** Its running totals since it started (node-counters.ts); undefined: it counts nothing (all 0). */
  readonly totals?: () => NodeTotals;
}

/** What GetConnections tells of one connection, as its edge holds it now. */
export interface ConnectionFacts {
  readonly id: string;
  /** "" for an anonymous connection. */
  readonly userId: string;
  readonly channels: ReadonlySet<string>;
  /** When the edge accepted it, by the edge's clock. */
  readonly connectedUnixMs: number;
  /** Its subprotocol (protocol/encodings.ts). */
  readonly encoding: string;
  /** undefined when it set none. */
  readonly profile: Value | undefined;
}

/** What the control plane asks of the edge (core/edge.ts implements it). */
export interface ControlledEdge<S> {
  /** The open connections of this edge that target names. */
  targets(target: ControlTarget | undefined): S[];
  /** Hands pub (channel "") to every open connection of user here. */
  deliverToUser(userId: string, pub: Publication): void;
  /** The connection joins channel as by its own join (echo off); true when it joined now, false when it was a member. */
  serverJoin(session: S, channel: string): Promise<boolean>;
  /** The connection leaves channel; true when it left now, false when it was not a member. */
  serverLeave(session: S, channel: string): Promise<boolean>;
  /** Closes the connection with code and reason. */
  close(session: S, code: number, reason: string): void;
  /** What the connection is, for GetConnections. */
  facts(session: S): ConnectionFacts;
  stats(): { connections: number; channels: number };
}

/** The close codes a Disconnect may carry. */
const DISCONNECT_CODES = new Set<number>([CloseCode.Disconnected, CloseCode.DisconnectedFinal]);

/**
 * The edge's side of the control plane (core/control-channels.ts): it
 * carries out what the API asks of its connections, and answers. Every
 * question gets exactly one answer from this edge (when it names where),
 * the count of what it did, or the first failure.
 */
export class EdgeControl<S> {
  constructor(
    private readonly edge: ControlledEdge<S>,
    private readonly broker: Broker,
    private readonly node: EdgeNode,
    private readonly onError: (err: unknown) => void,
    /** This edge's message tap, told when an API node announces it (Control.tap). */
    private readonly tap?: Tap,
  ) {}

  /** The control channels this edge is always subscribed to (users' come and go with their connections). */
  channels(): string[] {
    return [edgeChannel(this.node.id), EDGES_CHANNEL];
  }

  /** Subscribes them; a broker that is not up yet subscribes them once it is (or the link re-sends them). */
  start(): void {
    for (const channel of this.channels()) this.broker.subscribe(channel).catch((err: unknown) => this.onError(err));
  }

  /** Handles one publication of a control channel. Never throws. */
  handle(pub: Publication): void {
    let control: Control;
    try {
      control = controlOf(pub);
    } catch (err) {
      this.onError(err);
      return;
    }
    const command = control.command;
    switch (command.case) {
      case "deliver": {
        const user = userOf(pub.channel);
        if (user === undefined) return;
        let inner: Publication;
        try {
          inner = decodePublication(command.value);
        } catch (err) {
          this.onError(err);
          return;
        }
        this.edge.deliverToUser(user, inner);
        return;
      }
      case "disconnect": {
        const { target, code, reason } = command.value;
        if (!DISCONNECT_CODES.has(code)) {
          return this.fail(
            control,
            new RealtimeError(Code.InvalidArgument, `close code ${code} is not one of Disconnect's`),
          );
        }
        const sessions = this.edge.targets(target);
        for (const s of sessions) this.edge.close(s, code, reason);
        return this.reply(control, { connections: sessions.length, changed: sessions.length });
      }
      case "subscribe":
      case "unsubscribe": {
        const { target, channel } = command.value;
        const sessions = this.edge.targets(target);
        const joining = command.case === "subscribe";
        void Promise.allSettled(
          sessions.map((s) => (joining ? this.edge.serverJoin(s, channel) : this.edge.serverLeave(s, channel))),
        ).then((results) => {
          const changed = results.filter((r) => r.status === "fulfilled" && r.value).length;
          const failed = results.find((r) => r.status === "rejected");
          const error = failed && asRealtimeError(failed.reason);
          this.reply(control, {
            connections: sessions.length,
            changed,
            error: error && { code: error.code as number as ErrorCode, message: error.message },
          });
        });
        return;
      }
      case "connections": {
        const sessions = this.edge.targets(command.value.target);
        return this.reply(control, {
          connections: sessions.length,
          details: describeConnections(
            sessions.map((s) => this.edge.facts(s)),
            this.node.id,
          ),
        });
      }
      case "info": {
        const { connections, channels } = this.edge.stats();
        return this.reply(control, {
          node: {
            id: this.node.id,
            role: "edge",
            version: this.node.version,
            startedUnixMs: BigInt(this.node.startedUnixMs),
            connections,
            channels,
            ...this.node.totals?.(),
          },
        });
      }
      case "tap":
        this.tap?.want(command.value.forMs);
        return;
      default:
        // An answer (edges ask nothing), or a command of a newer version: nothing to do.
        return;
    }
  }

  private fail(control: Control, err: RealtimeError): void {
    this.reply(control, { error: { code: err.code as number as ErrorCode, message: err.message } });
  }

  private reply(control: Control, reply: Omit<MessageInitShape<typeof ControlReplySchema>, "id" | "$typeName">): void {
    if (control.replyTo === "") return;
    const pub = controlPublication(control.replyTo, {
      id: control.id,
      command: { case: "reply", value: { ...reply, id: control.id } },
    });
    this.broker.publish(pub).catch((err: unknown) => this.onError(err));
  }
}

/** The user whose channel this is; undefined for another channel. */
function userOf(channel: string): string | undefined {
  const prefix = userChannel("");
  return channel.startsWith(prefix) ? channel.slice(prefix.length) : undefined;
}

type ConnectionState = Omit<MessageInitShape<typeof ConnectionStateSchema>, "$typeName">;

/**
 * The connections as GetConnections lists them: the oldest first (by
 * connect time, then id), at most MAX_CONNECTIONS_LISTED, each with at most
 * MAX_CHANNELS_LISTED of its channels by name and the count of them all.
 */
export function describeConnections(facts: readonly ConnectionFacts[], edgeId: string): ConnectionState[] {
  return [...facts]
    .sort(olderFirst)
    .slice(0, MAX_CONNECTIONS_LISTED)
    .map((f) => ({
      id: f.id,
      userId: f.userId,
      edgeId,
      channels: [...f.channels].sort().slice(0, MAX_CHANNELS_LISTED),
      channelCount: f.channels.size,
      connectedUnixMs: BigInt(f.connectedUnixMs),
      encoding: f.encoding,
      profile: f.profile,
    }));
}

/** GetConnections' order: by connect time, then by id. */
export function olderFirst(
  a: { readonly id: string; readonly connectedUnixMs: number | bigint },
  b: { readonly id: string; readonly connectedUnixMs: number | bigint },
): number {
  return Number(a.connectedUnixMs) - Number(b.connectedUnixMs) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
