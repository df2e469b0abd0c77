import { create } from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { EventSchema } from "../../gen/realtime/client/v1/client_pb.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ChannelSummarySchema,
  ConnectionDetailsSchema,
  ConnectionEncoding,
  type ConnectionDetails,
  GetConnectionsResponseSchema,
  type GetConnectionsResponse,
  InfoResponseSchema,
  MemberSchema,
  NodeInfoSchema,
  NodeRole,
  type Realtime,
  type BroadcastRequest,
  type InfoResponse,
  type NodeInfo,
  type SendRequest,
  type Target,
  type UserMembers,
  UserMembersSchema,
  type Member as MemberMessage,
} from "../../gen/realtime/v1/realtime_pb.js";
import type { ConnectionState, ControlTarget, NodeState } from "../../gen/realtime/link/v1/link_pb.js";
import { CloseCode } from "../protocol/close-codes.js";
import type { Answers, ControlPlane } from "../core/control.js";
import { controlPublication, edgeChannel, edgeOfConnection, userChannel } from "../core/control-channels.js";
import { olderFirst } from "../core/edge-control.js";
import { Encoding } from "../protocol/encodings.js";
import { encodePublication } from "../wire/publication.js";
import type { Broker, Delivery, Publication } from "../core/broker.js";
import {
  checkIdempotencyKey,
  DEFAULT_IDEMPOTENCY_MAX_KEYS,
  DEFAULT_IDEMPOTENCY_WINDOW_MS,
  fingerprintOf,
  Idempotency,
  keyMismatch,
  type DoneKey,
  type HeldKey,
} from "../core/idempotency.js";
import { MemoryIdempotencyStore } from "../core/idempotency-memory.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import {
  MAX_BATCH_EVENTS,
  MAX_CONNECTIONS_LISTED,
  MAX_DISCONNECT_REASON_BYTES,
  MAX_PUBLISH_UNACKNOWLEDGED,
  MAX_USER_ID_LENGTH,
  type Limits,
} from "../core/limits.js";
import { checkChannel, checkEvent } from "../core/names.js";
import type { Member, PresenceDirectory } from "../core/presence.js";
import { acceptedNow, checkPayload, createPublication, type IdGenerator } from "../core/publication.js";
import { publishStream, type PublishEvent } from "./publish.js";
import { DEFAULT_CHANNEL_PAGE_SIZE, decodePageToken, encodePageToken, membersScope, pageSize } from "../core/pages.js";
import { API_KEY, CONNECTION } from "./call-context.js";
import { getHistory } from "./history.js";
import { statsInterval, watchStats } from "./stats.js";
import { watchChannel, WatchStreams, type WatchSource, type WatchStreamLimits } from "./watch.js";
import { watchLifecycle } from "./lifecycle-watch.js";
import { watchMessages } from "./message-watch.js";
import type { Tap, TapDemand, TapFacts } from "../core/tap.js";

export interface RealtimeServiceDeps {
  broker: Broker;
  presence: PresenceDirectory;
  limits: Limits;
  eventIds: IdGenerator;
  /** Where WatchChannel subscribes: `(h) => memoryBroker.attach(h, false)`. */
  watchers: WatchSource;
  /** WatchChannel streams open at once per connection and per API key. Default: WatchStreams' defaults. */
  watchLimits?: WatchStreamLimits;
  /**
   * Where idempotency keys are claimed (roles/seams.ts: this process's
   * memory, or Redis). Default: this process's memory, with the default
   * window and bound.
   */
  idempotency?: Idempotency;
  /**
   * How Disconnect, Subscribe, Unsubscribe, Info and GetConnections reach the nodes
   * (core/control.ts). Undefined: those methods answer UNAVAILABLE.
   */
  control?: ControlPlane;
  /**
   * Whether the service keeps the lifecycle sequence (REALTIME_LIFECYCLE,
   * core/lifecycle.ts). Default true; false: WatchLifecycle is
   * FAILED_PRECONDITION.
   */
  lifecycle?: boolean;
  /**
   * This node's message tap (core/tap.ts): what it publishes for backends
   * is copied while the tap is wanted; and its watchers, counted in demand,
   * announce it. Undefined: nothing copied, WatchMessages UNAVAILABLE.
   */
  tap?: { readonly copier: Tap; readonly demand: TapDemand };
}

/** An event checked and encoded, ready to be handed to the broker; what the message tap copies of it (TapFacts). */
interface Prepared extends TapFacts {
  readonly id: string;
  readonly pub: Publication;
  /** Its idempotency key; "" for none. */
  readonly key: string;
  /** What its idempotency fingerprint is taken of (fingerprintOf: the event's bytes, its id last). */
  readonly print: Uint8Array;
}

/** Longest connection id accepted in a request (ours are far shorter: an edge prefix, a dot, a counter). */
const MAX_CONNECTION_ID_LENGTH = 256;

/** What a publish reads of its call: the API key's fingerprint (API_KEY) and the cancellation. */
type Call = Pick<HandlerContext, "values" | "signal">;

/** What Send and Broadcast answer. */
interface Ack {
  messageId: string;
  edges: number;
  duplicate: boolean;
}

/**
 * The one implementation of realtime.v1.Realtime. The gRPC adapter (and the
 * Connect adapter) serve it unchanged; it throws ConnectError, whose codes
 * are gRPC's.
 */
export function createRealtimeService(deps: RealtimeServiceDeps): ServiceImpl<typeof Realtime> {
  const { broker, presence, limits, eventIds, watchers } = deps;
  const watchStreams = new WatchStreams(deps.watchLimits);
  const idempotency =
    deps.idempotency ??
    new Idempotency({
      store: new MemoryIdempotencyStore({
        windowMs: DEFAULT_IDEMPOTENCY_WINDOW_MS,
        maxKeys: DEFAULT_IDEMPOTENCY_MAX_KEYS,
      }),
    });

  /** Info's answer: the API nodes, then the edges, each sorted by id. */
  async function askInfo(): Promise<InfoResponse> {
    const control = controlPlane();
    const [apis, edges] = await Promise.all([control.apiNodes(), control.edgeNodes()]);
    const nodes = (a: Answers): NodeInfo[] =>
      a.replies
        .flatMap((r) => (r.node ? [nodeInfo(r.node)] : []))
        .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    return create(InfoResponseSchema, {
      nodes: [...nodes(apis), ...nodes(edges)],
      unanswered: apis.unanswered + edges.unanswered,
    });
  }

  /**
   * GetConnections' answer: the target's connections as their edges
   * describe them, merged, the oldest MAX_CONNECTIONS_LISTED. Like a
   * command's: NOT_FOUND when none matched, UNAVAILABLE when an edge that
   * received the question did not answer (never a silently partial list).
   */
  async function askConnections(target: Target | undefined): Promise<GetConnectionsResponse> {
    const { channel, control, description } = targetOf(target);
    const answers = await controlPlane().ask(channel, { case: "connections", value: { target: control } });
    const failed = answers.replies.find((r) => r.error !== undefined);
    if (failed?.error) throw new RealtimeError(failed.error.code as number as Code, failed.error.message);
    if (answers.unanswered > 0) {
      throw new RealtimeError(
        Code.Unavailable,
        `${answers.unanswered} edge(s) holding ${description} did not answer in time: the list would be incomplete`,
      );
    }
    let matched = 0;
    const details: ConnectionState[] = [];
    for (const r of answers.replies) {
      matched += r.connections;
      details.push(...r.details);
    }
    if (matched === 0) throw notFound(description);
    const connections = details.sort(olderFirst).slice(0, MAX_CONNECTIONS_LISTED).map(connectionDetails);
    return create(GetConnectionsResponseSchema, { connections, matched, truncated: matched > connections.length });
  }

  /**
   * Checks the key and encodes the event: throws INVALID_ARGUMENT or
   * RESOURCE_EXHAUSTED. The event is accepted here: its publication carries
   * this moment (acceptedUnixMs), from which the edges measure its delivery
   * latency, so that latency includes the idempotency claim and the broker.
   */
  function prepare(
    channel: string,
    event: string,
    payload: Parameters<typeof checkPayload>[0],
    key: string,
    exclude: string,
    user = "",
  ): Prepared {
    if (key !== "") checkIdempotencyKey(key);
    if (exclude !== "") checkConnectionId(exclude, "exclude_connection_id");
    const id = eventIds.next();
    const ev = create(EventSchema, { id, channel, event, payload });
    const pub = createPublication(ev, limits.maxPayloadBytes, exclude, exclude !== "", acceptedNow());
    // The same event for another user, or without the same connection, is another request.
    const print =
      user === "" && exclude === "" ? pub.event : Buffer.concat([Buffer.from(`${user}\0${exclude}\0`), pub.event]);
    // With what the tap copies (TapFacts): a backend's message (origin ""), as the request gave it.
    if (user === "") return { channel, userId: user, event, payload, origin: "", id, pub, key, print };
    // To a user: the event rides the user's control channel (core/control-channels.ts).
    const carrier = controlPublication(userChannel(user), {
      command: { case: "deliver", value: encodePublication(pub) },
    });
    return { channel, userId: user, event, payload, origin: "", id, pub: carrier, key, print };
  }

  /** Send (alone, in a batch or in a Publish stream), checked: throws INVALID_ARGUMENT for a bad name or a missing payload. */
  function prepareSend(req: SendRequest): Prepared {
    // (Defaults read as absent: a request built by hand may lack the newer fields.)
    const userId = req.userId ?? "";
    if (userId !== "") {
      if (req.channel !== "")
        throw new RealtimeError(
          Code.InvalidArgument,
          "set channel or user_id, not both: a Send goes to one channel or to one user",
        );
      checkUserId(userId, "user_id");
    } else if (req.channel === "") {
      throw new RealtimeError(
        Code.InvalidArgument,
        "channel is required (or user_id, to send to every connection of one user)",
      );
    } else checkChannel(req.channel);
    checkEvent(req.event);
    checkPayload(req.payload);
    return prepare(req.channel, req.event, req.payload, req.idempotencyKey, req.excludeConnectionId ?? "", userId);
  }

  /** Broadcast (alone or in a Publish stream), checked. */
  function prepareBroadcast(req: BroadcastRequest): Prepared {
    checkEvent(req.event);
    checkPayload(req.payload);
    return prepare("", req.event, req.payload, req.idempotencyKey, req.excludeConnectionId ?? "");
  }

  /** Subscribe or Unsubscribe: the channel checked, then the command to the target's edges. */
  function channelCommand(kind: "subscribe" | "unsubscribe", req: { target?: Target; channel: string }) {
    checkChannel(req.channel);
    return command(kind, req.target, (target) => ({ case: kind, value: { target, channel: req.channel } }));
  }

  /** The control plane, or UNAVAILABLE. */
  function controlPlane(): ControlPlane {
    if (!deps.control) throw new RealtimeError(Code.Unavailable, "this API node has no control plane");
    return deps.control;
  }

  /**
   * Asks the edges that hold target's connections to do a command, and sums
   * their answers: the first failure is the call's (saying what the others
   * did), no connection at all is NOT_FOUND, and an edge that did not
   * answer makes it UNAVAILABLE (it may have done it).
   */
  async function command(
    what: string,
    target: Target | undefined,
    make: (t: ControlTarget) => Parameters<ControlPlane["ask"]>[1],
  ): Promise<{ connections: number; changed: number }> {
    const { channel, control, description } = targetOf(target);
    const answers = await controlPlane().ask(channel, make(control));
    let connections = 0;
    let changed = 0;
    for (const r of answers.replies) {
      connections += r.connections;
      changed += r.changed;
    }
    const failed = answers.replies.find((r) => r.error !== undefined);
    if (failed?.error) {
      throw new RealtimeError(
        failed.error.code as number as Code,
        `${failed.error.message} (${what}: done for ${changed} of the ${connections} connections of ${description})`,
      );
    }
    if (answers.unanswered > 0) {
      throw new RealtimeError(
        Code.Unavailable,
        `${answers.unanswered} edge(s) holding ${description} did not answer in time: the ${what} may have taken effect there (done for ${changed} of ${connections} connections elsewhere)`,
      );
    }
    if (connections === 0) throw notFound(description);
    return { connections, changed };
  }

  /**
   * One watch stream (WatchChannel, WatchStats, WatchLifecycle,
   * WatchMessages): start checks the request (throwing what is wrong with
   * it) and returns its responses, which run only once read; then the
   * stream takes its place in the bounds (watchStreams: RESOURCE_EXHAUSTED
   * past them) until it ends, however it ends. Errors as ConnectErrors.
   */
  async function* watchStream<R>(ctx: HandlerContext, start: () => AsyncIterable<R>): AsyncGenerator<R> {
    let close: (() => void) | undefined;
    try {
      const responses = start();
      close = watchStreams.open(ctx.values.get(CONNECTION), ctx.values.get(API_KEY));
      yield* responses;
    } catch (err) {
      throw toConnectError(err);
    } finally {
      close?.();
    }
  }

  /** Hands the event to the broker, the one place every backend's event is; the tap copies it while wanted. */
  function hand(p: Prepared): Promise<Delivery> {
    const tap = deps.tap?.copier;
    if (tap?.wanted) tap.copy(p);
    return broker.publish(p.pub);
  }

  /**
   * Hands the event to the broker; with a key, once per key: a retry gets
   * the first attempt's answer with duplicate. `started` is called once
   * the event is handed to the broker, or known not to be (a duplicate, an
   * error): what the Publish stream orders its next requests by.
   */
  async function publish(p: Prepared, call: Call, started?: () => void): Promise<Ack> {
    if (p.key === "") {
      const delivery = hand(p);
      started?.();
      return { messageId: p.id, edges: (await delivery).edges, duplicate: false };
    }
    const scope = call.values.get(API_KEY);
    const claim = await idempotency.claim(scope, p.key, fingerprintOf(p.print, p.id), call.signal);
    if (claim.duplicate) return { ...claim.result, duplicate: true };
    return publishHeld(p, claim, started);
  }

  /** Publishes an event whose key this call holds: remembers its result, or forgets the key if it failed. */
  async function publishHeld(p: Prepared, held: HeldKey, started?: () => void): Promise<Ack> {
    let edges: number;
    try {
      const publishing = hand(p);
      started?.();
      edges = (await publishing).edges;
    } catch (err) {
      held.release();
      throw err;
    }
    held.complete({ messageId: p.id, edges });
    return { messageId: p.id, edges, duplicate: false };
  }

  /**
   * SendBatch's events with keys: every key is claimed before anything is
   * sent (if one cannot be, the claimed ones are released, nothing is sent,
   * and the call fails naming its index); then the events are handed to the
   * broker in batch order, those already delivered answered from their
   * first result. A key twice in one batch: the second is a duplicate of
   * the first (the same request) or FAILED_PRECONDITION.
   */
  async function publishKeyedBatch(prepared: Prepared[], call: Call): Promise<Ack[]> {
    const scope = call.values.get(API_KEY);
    const fingerprints = prepared.map((p) => (p.key === "" ? "" : fingerprintOf(p.print, p.id)));
    const firstOf = new Map<string, number>();
    const copyOf: (number | undefined)[] = [];
    prepared.forEach((p, i) => {
      if (p.key === "") return;
      const first = firstOf.get(p.key);
      if (first === undefined) firstOf.set(p.key, i);
      else if (fingerprints[first] !== fingerprints[i])
        indexed(i, () => {
          throw keyMismatch(p.key, true);
        });
      else copyOf[i] = first;
    });
    const firsts = [...firstOf.values()];
    const settled = await Promise.allSettled(
      firsts.map((i) => idempotency.claim(scope, prepared[i]!.key, fingerprints[i]!, call.signal)),
    );
    const claims = new Map(firsts.map((i, k) => [i, settled[k]!]));
    const refused = firsts.find((i) => claims.get(i)!.status === "rejected");
    if (refused !== undefined) {
      for (const c of claims.values()) if (c.status === "fulfilled" && !c.value.duplicate) c.value.release();
      const reason = (claims.get(refused) as PromiseRejectedResult).reason;
      indexed(refused, () => {
        throw reason;
      });
    }
    const acks: Promise<Ack>[] = [];
    prepared.forEach((p, i) => {
      const copy = copyOf[i];
      if (copy !== undefined) {
        acks.push(acks[copy]!.then((a) => ({ ...a, duplicate: true })));
        return;
      }
      const claim = claims.get(i);
      if (claim === undefined) acks.push(publish(p, call));
      else {
        const c = (claim as PromiseFulfilledResult<HeldKey | DoneKey>).value;
        acks.push(c.duplicate ? Promise.resolve({ ...c.result, duplicate: true }) : publishHeld(p, c));
      }
    });
    return Promise.all(acks);
  }

  return {
    async send(req, ctx) {
      return guard(async () => publish(prepareSend(req), ctx));
    },
    async sendBatch(req, ctx) {
      return guard(async () => {
        const { requests } = req;
        if (requests.length === 0 || requests.length > MAX_BATCH_EVENTS) {
          throw new RealtimeError(
            Code.InvalidArgument,
            `requests holds ${requests.length} events; a batch holds 1 to ${MAX_BATCH_EVENTS}`,
          );
        }
        // Check and encode everything before sending anything.
        const prepared = requests.map((r, i) => indexed(i, () => prepareSend(r)));
        const keyed = prepared.some((p) => p.key !== "");
        return {
          responses: await (keyed
            ? publishKeyedBatch(prepared, ctx)
            : Promise.all(prepared.map((p) => publish(p, ctx)))),
        };
      });
    },
    async broadcast(req, ctx) {
      return guard(async () => publish(prepareBroadcast(req), ctx));
    },
    async *publish(requests, ctx) {
      // Stream order with keys: a keyed request is handed to the broker only
      // once its key is claimed (a Redis round trip in Redis mode), so the
      // requests after it wait until it was (or was found to be a
      // duplicate); without keys nothing waits.
      let gate: Promise<void> | undefined;
      const publishOne = (e: PublishEvent): Promise<unknown> => {
        const p = e.case === "send" ? prepareSend(e.value) : prepareBroadcast(e.value);
        if (gate === undefined && p.key === "") return hand(p);
        const before = gate;
        let open!: () => void;
        const mine = new Promise<void>((resolve) => (open = resolve));
        gate = mine;
        void mine.then(() => {
          if (gate === mine) gate = undefined;
        });
        return (async () => {
          try {
            if (before) await before;
            return await publish(p, ctx, open);
          } finally {
            open();
          }
        })();
      };
      try {
        yield* publishStream(requests, publishOne, MAX_PUBLISH_UNACKNOWLEDGED, ctx.signal);
      } catch (err) {
        throw toConnectError(err);
      }
    },
    async getMembers(req) {
      return guard(async () => {
        checkChannel(req.channel);
        const scope = membersScope(req.channel);
        const after = decodePageToken(req.pageToken, scope, "channel");
        let members: Member[];
        let nextPageToken = "";
        if (req.pageSize > 0 || after !== "") {
          // Keyset pages by member id (see core/pages.ts).
          const page = await presence.page(req.channel, after, pageSize(req.pageSize, Infinity));
          members = page.members;
          if (page.more) nextPageToken = encodePageToken(scope, members.at(-1)!.id);
        } else {
          members = await presence.members(req.channel);
        }
        const listed = members.map((m) => create(MemberSchema, { id: m.id, data: m.data, userId: m.userId }));
        return { members: listed, nextPageToken, users: req.groupByUser ? byUser(listed) : [] };
      });
    },
    async presenceStats(req) {
      return guard(async () => {
        checkChannel(req.channel);
        return presence.stats(req.channel);
      });
    },
    async listChannels(req) {
      return guard(async () => {
        const scope = `channels:${req.prefix}`;
        const after = decodePageToken(req.pageToken, scope, "prefix");
        const size = pageSize(req.pageSize, DEFAULT_CHANNEL_PAGE_SIZE);
        // One more than the page tells whether there is a next page.
        const found = await presence.channels(req.prefix, after, size + 1);
        const page = found.slice(0, size);
        return {
          channels: page.map((c) =>
            create(ChannelSummarySchema, { name: c.channel, members: c.members, users: c.users }),
          ),
          nextPageToken: found.length > size ? encodePageToken(scope, page[size - 1]!.channel) : "",
        };
      });
    },
    async getHistory(req) {
      return guard(async () => getHistory(broker, req));
    },
    async disconnect(req) {
      return guard(async () => {
        const reason = req.reason === "" ? "disconnected by the backend" : req.reason;
        const bytes = Buffer.byteLength(reason);
        if (bytes > MAX_DISCONNECT_REASON_BYTES) {
          throw new RealtimeError(
            Code.InvalidArgument,
            `reason is ${bytes} bytes of UTF-8; a close frame holds at most ${MAX_DISCONNECT_REASON_BYTES}`,
          );
        }
        const code = req.reconnect ? CloseCode.Disconnected : CloseCode.DisconnectedFinal;
        const { connections } = await command("disconnect", req.target, (target) => ({
          case: "disconnect",
          value: { target, code, reason },
        }));
        return { connections };
      });
    },
    async subscribe(req) {
      return guard(async () => {
        const { connections, changed } = await channelCommand("subscribe", req);
        return { connections, joined: changed };
      });
    },
    async unsubscribe(req) {
      return guard(async () => {
        const { connections, changed } = await channelCommand("unsubscribe", req);
        return { connections, left: changed };
      });
    },
    async info() {
      return guard(askInfo);
    },
    async getConnections(req) {
      return guard(async () => askConnections(req.target));
    },
    watchStats(req, ctx) {
      return watchStream(ctx, () => {
        const intervalMs = statsInterval(req.intervalMs);
        controlPlane();
        return watchStats(askInfo, intervalMs, ctx.signal);
      });
    },
    watchChannel(req, ctx) {
      return watchStream(ctx, () => {
        checkChannel(req.channel);
        const since = req.since && { offset: req.since.offset, epoch: req.since.epoch };
        return watchChannel(req.channel, watchers, presence, ctx.signal, since && { since, history: broker });
      });
    },
    watchLifecycle(req, ctx) {
      return watchStream(ctx, () => {
        if (deps.lifecycle === false) {
          throw new RealtimeError(
            Code.FailedPrecondition,
            "this service runs with REALTIME_LIFECYCLE=false, so it keeps no lifecycle events: set it to true on every node to watch them",
          );
        }
        // A prefix is held to a channel name's rules: one that breaks them could match nothing.
        if (req.channelPrefix !== "") checkChannel(req.channelPrefix, "channel_prefix");
        const since = req.since && { offset: req.since.offset, epoch: req.since.epoch };
        const filter = { channelPrefix: req.channelPrefix, connections: req.connections };
        return watchLifecycle(filter, watchers, ctx.signal, since && { since, history: broker });
      });
    },
    watchMessages(req, ctx) {
      return watchStream(ctx, () => {
        const tap = deps.tap;
        if (!tap) throw new RealtimeError(Code.Unavailable, "this API node has no message tap");
        if (req.channelPrefix !== "") checkChannel(req.channelPrefix, "channel_prefix");
        if (req.event !== "") checkEvent(req.event);
        const filter = { channelPrefix: req.channelPrefix, event: req.event };
        return watchMessages(filter, watchers, ctx.signal, () => tap.demand.open());
      });
    },
  };
}

/** Throws INVALID_ARGUMENT unless id could be a connection's id. */
function checkConnectionId(id: string, field: string): void {
  if (id.length > MAX_CONNECTION_ID_LENGTH || edgeOfConnection(id) === undefined) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} ${JSON.stringify(id.slice(0, 64))} is not a connection id: ids look like "<edge>.<n>", as the client got it in its Connected frame`,
    );
  }
}

/** Throws INVALID_ARGUMENT unless id could be a user id. */
function checkUserId(id: string, field: string): void {
  if (id.length === 0 || id.length > MAX_USER_ID_LENGTH) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} must be 1 to ${MAX_USER_ID_LENGTH} characters (the sub of the user's tokens); it is ${id.length}`,
    );
  }
}

/** No open connection matches the target named by description. */
function notFound(description: string): RealtimeError {
  return new RealtimeError(
    Code.NotFound,
    `no open connection matches ${description}: it closed, or never existed (connection ids are as clients got them in their Connected frame)`,
  );
}

/** An edge's description of a connection, as GetConnections answers it. */
function connectionDetails(c: ConnectionState): ConnectionDetails {
  return create(ConnectionDetailsSchema, {
    id: c.id,
    userId: c.userId,
    edgeId: c.edgeId,
    channels: c.channels,
    channelCount: c.channelCount,
    connectedAt: timestampFromMs(Number(c.connectedUnixMs)),
    encoding:
      c.encoding === Encoding.Json
        ? ConnectionEncoding.JSON
        : c.encoding === Encoding.Proto
          ? ConnectionEncoding.PROTO
          : ConnectionEncoding.UNSPECIFIED,
    profile: c.profile,
  });
}

/** Where a command for target goes, the target as the edges read it, and how messages name it. */
function targetOf(target: Target | undefined): { channel: string; control: ControlTarget; description: string } {
  const t = target?.target;
  if (t?.case === "connectionId") {
    checkConnectionId(t.value, "target.connection_id");
    return {
      channel: edgeChannel(edgeOfConnection(t.value)!),
      control: { $typeName: "realtime.link.v1.ControlTarget", target: { case: "connectionId", value: t.value } },
      description: `connection ${JSON.stringify(t.value)}`,
    };
  }
  if (t?.case === "userId") {
    checkUserId(t.value, "target.user_id");
    return {
      channel: userChannel(t.value),
      control: { $typeName: "realtime.link.v1.ControlTarget", target: { case: "userId", value: t.value } },
      description: `user ${JSON.stringify(t.value)}`,
    };
  }
  throw new RealtimeError(Code.InvalidArgument, "target is required: set target.connection_id or target.user_id");
}

/** members grouped by user id, users in order of their first member (GetMembersResponse.users). */
function byUser(members: readonly MemberMessage[]): UserMembers[] {
  const users = new Map<string, UserMembers>();
  for (const m of members) {
    let u = users.get(m.userId);
    if (!u) users.set(m.userId, (u = create(UserMembersSchema, { userId: m.userId })));
    u.connections.push(m);
  }
  return [...users.values()];
}

/** A node's answer, as Info lists it. */
function nodeInfo(n: NodeState): NodeInfo {
  return create(NodeInfoSchema, {
    id: n.id,
    role: n.role === "api" ? NodeRole.API : n.role === "edge" ? NodeRole.EDGE : NodeRole.UNSPECIFIED,
    version: n.version,
    startedUnixMs: n.startedUnixMs,
    connections: n.connections,
    channels: n.channels,
    messagesIn: n.messagesIn,
    deliveries: n.deliveries,
    drops: n.drops,
    disconnects: n.disconnects,
  });
}

/** Runs fn; an error it throws names the batch index it is about. */
function indexed<T>(index: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const e = asRealtimeError(err);
    throw new RealtimeError(e.code, `requests[${index}]: ${e.message}`);
  }
}

/** Runs fn, turning any RealtimeError into the ConnectError of the same code. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toConnectError(err);
  }
}

function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const e = asRealtimeError(err);
  return new ConnectError(e.message, e.code as number);
}
