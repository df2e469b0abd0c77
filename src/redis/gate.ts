import type { SubscriberConnection } from "./cluster-subscriber.js";
import type { RedisCommands } from "./connection.js";
import type { Broker } from "../core/broker.js";
import type { PresenceDirectory } from "../core/presence.js";
import { Code, RealtimeError } from "../protocol/errors.js";

/**
 * How often a node re-reads the registrations while its gate is open. It
 * bounds how stale the node's memory of the live edges is when Redis
 * restarts: an edge that registered within this time before a restart
 * without persistence may not be waited for.
 */
export const REDIS_GATE_REFRESH_MS = 1_000;
/**
 * The least time a node waits, after Redis came back, for an edge it saw
 * alive before (one TTL, but at least this): a live edge comes back within
 * its reconnect backoff (REDIS_RECONNECT_MAX_MS), connect timeout and
 * re-registration, which a short TTL need not cover on a busy machine.
 */
export const REDIS_GATE_MIN_WAIT_MS = 10_000;
/** How often a node re-reads the registrations while its gate is closed. */
export const REDIS_GATE_CLOSED_REFRESH_MS = 100;
/** Redis counts as stalled when it does not answer a PING within this (readiness, fail-fast calls). */
export const REDIS_STALL_MS = 1_000;
/** How often a node PINGs Redis to see whether it stalled. */
export const REDIS_STALL_CHECK_MS = 500;

/**
 * The registrations and whether each edge is alive, and the edges some node
 * remembers from before a restart (KEYS: registrations, expected; ARGV: edge
 * key prefix, how long the expected set lives (ms), then the ids this node
 * remembers, added to it). Returns {flat: edge id, run id, 1 if alive else
 * 0; the expected ids}.
 */
const REGISTRATIONS = `
if #ARGV > 2 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local all = redis.call('HGETALL', KEYS[1])
local rows = {}
for i = 1, #all, 2 do
  rows[#rows + 1] = all[i]
  rows[#rows + 1] = all[i + 1]
  rows[#rows + 1] = redis.call('EXISTS', ARGV[1] .. all[i])
end
return {rows, redis.call('SMEMBERS', KEYS[2])}`;

export interface RedisGateOptions {
  command: RedisCommands;
  /** The node's subscriber connection (an edge's registration needs its subscriptions in effect). */
  subscriber: SubscriberConnection;
  /**
   * The run id of the Redis each connection reaches now (INFO server): the
   * one Redis, or on Redis Cluster the master of the presence keys' slot,
   * which holds the registrations. Called on each 'ready' of the
   * connection, before the broker re-subscribes anything on it.
   */
  runIds: { command(): Promise<string | undefined>; subscriber(): Promise<string | undefined> };
  /** Prefix of every Redis key (REALTIME_REDIS_PREFIX). */
  prefix: string;
  /** This edge's id; undefined on an API node (it registers nothing). */
  edgeId?: string;
  /** Liveness TTL of an edge (REALTIME_REDIS_EDGE_TTL_MS). */
  ttlMs: number;
  /** Redis stopped (true) or started again (false) answering PINGs within REDIS_STALL_MS. */
  onStall?: (stalled: boolean) => void;
  onError?: (err: unknown, context: string) => void;
}

type Script = (...args: (string | Buffer | number)[]) => Promise<unknown>;

/**
 * The registration gate of the Redis mode: whether this node may say "done"
 * for what it hands to Redis now. Redis pub/sub keeps nothing: right after
 * a Redis restart, a publication reaches only the edges that re-subscribed
 * already, and presence holds only the members of the edges that
 * re-registered. So each edge, once it re-subscribed every channel and
 * re-wrote its members on the Redis it is connected to, records that in
 * `P registrations` (edge id -> the run id of that Redis). A node's gate is
 * open when Redis answers, and every live edge is registered with the
 * current run id: those Redis shows alive, and those this node saw alive
 * before Redis restarted (for up to one TTL, at least REDIS_GATE_MIN_WAIT_MS,
 * after Redis is back: one that
 * died during the outage is waited for that long, since nothing can tell it
 * from one that is slow to come back). Each node adds the edges it
 * remembers to `P registrations-expected` at its first read on a new Redis,
 * so that every node waits for an edge that any node remembers.
 *
 * Guarantees: while the gate is closed check() throws UNAVAILABLE, at once;
 * it is open only once every edge known alive is subscribed and registered
 * on the running Redis, so that a publish then reaches every edge that has
 * members in the channel (as far as this node can know: an edge that
 * registered within REDIS_GATE_REFRESH_MS of a restart without persistence
 * may be missed), and a presence read is complete. Cost: check() reads a
 * field; the registrations are read by one script per REDIS_GATE_REFRESH_MS
 * (REDIS_GATE_CLOSED_REFRESH_MS while closed), and at every reconnect.
 * Not covered: an edge whose subscriber connection alone dropped while
 * Redis kept running (it re-subscribes within its reconnect backoff; its
 * clients miss what was published meanwhile, as before).
 */
export class RedisGate {
  /** The run id of the Redis the command connection is connected to now. */
  private runId: string | undefined;
  /** The run id of the Redis the subscriber connection is connected to now. */
  private subscriberRunId: string | undefined;
  /** Counts the connections' sessions (each 'ready'). */
  private commandSession = 0;
  private subscriberSession = 0;
  /** The sessions in which this edge's presence was synced and its channels re-subscribed. */
  private syncedSession = -1;
  private subscribedSession = -1;
  /** Edges seen alive in `knownRun`. */
  private readonly known = new Set<string>();
  private knownRun: string | undefined;
  /** The ids of the expected set (another node's memory) already taken into `pending` in `knownRun`. */
  private readonly expectedSeen = new Set<string>();
  /** Edges known alive before a restart and not registered since, with the time past which they count as dead. */
  private readonly pending = new Map<string, number>();
  /** The edges the gate waits for, as of the last refresh; undefined: not refreshed in this session yet. */
  private waitingFor: string[] | undefined;
  private stalled = false;
  private refreshing = false;
  private pinging = false;
  private refreshTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly key: string;
  private readonly expectedKey: string;
  private readonly edgeKeyPrefix: string;
  private readonly script: { rtRegistrations: Script };
  private readonly onCommandReady = () => {
    const session = ++this.commandSession;
    this.runId = undefined;
    this.waitingFor = undefined;
    void this.readRunId(this.options.runIds.command).then((id) => {
      if (session !== this.commandSession || id === undefined) return;
      this.runId = id;
      this.record();
      void this.refresh();
    });
  };
  private readonly onCommandClose = () => {
    this.runId = undefined;
    this.waitingFor = undefined;
  };
  private readonly onSubscriberReady = () => {
    // Sent before the broker's re-subscription (its 'ready' listener is
    // registered after this one): a connection in subscriber mode can send
    // no INFO.
    const session = ++this.subscriberSession;
    this.subscriberRunId = undefined;
    void this.readRunId(this.options.runIds.subscriber).then((id) => {
      if (session !== this.subscriberSession) return;
      this.subscriberRunId = id;
      this.record();
    });
  };
  private readonly onSubscriberClose = () => {
    this.subscriberRunId = undefined;
  };

  constructor(private readonly options: RedisGateOptions) {
    this.key = `${options.prefix}registrations`;
    this.expectedKey = `${options.prefix}registrations-expected`;
    this.edgeKeyPrefix = `${options.prefix}edge:`;
    options.command.defineCommand("rtRegistrations", { numberOfKeys: 2, lua: REGISTRATIONS });
    this.script = options.command as unknown as { rtRegistrations: Script };
    options.command.on("ready", this.onCommandReady);
    options.command.on("close", this.onCommandClose);
    if (options.edgeId !== undefined) {
      options.subscriber.on("ready", this.onSubscriberReady);
      options.subscriber.on("close", this.onSubscriberClose);
    }
    if (options.command.status === "ready") this.onCommandReady();
  }

  /** The key of the registrations, for presence's scripts (an edge swept or unregistered is removed). */
  get registrationsKey(): string {
    return this.key;
  }

  /** Starts the timers: refreshing the registrations, and watching for a stall. */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      void this.refresh();
      this.refreshTimer = setTimeout(tick, this.open ? REDIS_GATE_REFRESH_MS : REDIS_GATE_CLOSED_REFRESH_MS);
      this.refreshTimer.unref();
    };
    tick();
    this.stallTimer = setInterval(() => this.ping(), REDIS_STALL_CHECK_MS);
    this.stallTimer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    clearInterval(this.stallTimer);
    const { command, subscriber } = this.options;
    command.off("ready", this.onCommandReady);
    command.off("close", this.onCommandClose);
    subscriber.off("ready", this.onSubscriberReady);
    subscriber.off("close", this.onSubscriberClose);
  }

  /** Whether this node may acknowledge what it hands to Redis now. */
  get open(): boolean {
    return this.reason() === undefined;
  }

  /** Throws UNAVAILABLE, saying why and to retry, unless the gate is open. */
  check(what: string): void {
    const why = this.reason();
    if (why !== undefined)
      throw new RealtimeError(
        Code.Unavailable,
        `${what} refused: ${why}, so it might not reach or see every edge; try again shortly`,
      );
  }

  /** The broker re-subscribed every channel it wants on the subscriber's current connection. */
  subscribed(): void {
    this.subscribedSession = this.subscriberSession;
    this.record();
  }

  /** Presence wrote every member this edge holds on the command connection's current Redis. */
  synced(): void {
    this.syncedSession = this.commandSession;
    this.record();
  }

  private reason(): string | undefined {
    if (this.stalled) return `Redis does not answer within ${REDIS_STALL_MS} ms`;
    if (this.runId === undefined) return "Redis is unavailable";
    const waiting = this.waitingFor;
    if (waiting === undefined) return "Redis came back; checking that every edge is back too";
    if (waiting.length > 0)
      return `Redis came back and ${waiting.length} edge(s) have not re-subscribed yet (${waiting.slice(0, 3).join(", ")})`;
    return undefined;
  }

  /** An edge registers once subscribed and synced on the Redis both its connections reach. */
  private record(): void {
    const { edgeId, command } = this.options;
    const run = this.runId;
    if (edgeId === undefined || run === undefined || this.subscriberRunId !== run) return;
    if (this.syncedSession !== this.commandSession || this.subscribedSession !== this.subscriberSession) return;
    command.hset(this.key, edgeId, run).then(
      () => void this.refresh(),
      (err: unknown) => this.options.onError?.(err, "recording the edge's registration"),
    );
  }

  private async readRunId(read: () => Promise<string | undefined>): Promise<string | undefined> {
    try {
      return await read();
    } catch (err) {
      this.options.onError?.(err, "reading Redis's run id");
      return undefined;
    }
  }

  /** Re-reads the registrations; the gate's state follows them. */
  private async refresh(): Promise<void> {
    const run = this.runId;
    if (this.closed || this.refreshing || run === undefined) return;
    this.refreshing = true;
    const session = this.commandSession;
    // The first read on a new Redis: tell the others which edges this node
    // remembers, so that every node waits for an edge any node saw alive.
    const remembered = this.knownRun !== undefined && this.knownRun !== run ? [...this.known] : [];
    const wait = Math.max(this.options.ttlMs, REDIS_GATE_MIN_WAIT_MS);
    let flat: (string | number)[];
    let expected: string[];
    try {
      [flat, expected] = (await this.script.rtRegistrations(
        this.key,
        this.expectedKey,
        this.edgeKeyPrefix,
        wait,
        ...remembered,
      )) as [(string | number)[], string[]];
    } catch (err) {
      this.options.onError?.(err, "reading the edges' registrations");
      return;
    } finally {
      this.refreshing = false;
    }
    if (session !== this.commandSession || run !== this.runId) return;
    const now = Date.now();
    if (this.knownRun !== run) {
      // Redis restarted (or this is the first read): wait for the edges
      // seen alive before, for one TTL (at least REDIS_GATE_MIN_WAIT_MS)
      // from now. No edge could heartbeat while Redis was away, so the time
      // it was away says nothing about which edges are alive (the sweep's
      // grace after a stall, likewise).
      if (this.knownRun !== undefined) for (const id of this.known) this.pending.set(id, now + wait);
      this.known.clear();
      this.expectedSeen.clear();
      this.knownRun = run;
    }
    for (const id of expected) {
      if (this.expectedSeen.has(id)) continue;
      this.expectedSeen.add(id);
      if (!this.known.has(id) && !this.pending.has(id)) this.pending.set(id, now + wait);
    }
    const current = new Set<string>();
    const waiting: string[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const id = String(flat[i]);
      const alive = Number(flat[i + 2]) === 1;
      if (!alive) {
        this.known.delete(id);
        continue;
      }
      this.known.add(id);
      if (String(flat[i + 1]) === run) current.add(id);
      else waiting.push(id);
    }
    for (const [id, deadline] of this.pending) {
      if (current.has(id) || deadline <= now) this.pending.delete(id);
      else if (!waiting.includes(id)) waiting.push(id);
    }
    this.waitingFor = waiting;
  }

  /** PINGs Redis; it stalled when the answer takes longer than REDIS_STALL_MS. */
  private ping(): void {
    const { command } = this.options;
    if (this.pinging || this.closed || command.status !== "ready") {
      if (command.status !== "ready") this.setStalled(false);
      return;
    }
    this.pinging = true;
    let answered = false;
    const timer = setTimeout(() => {
      // Let the poll phase read an answer that came while this process was
      // busy, so that a late timer is not taken for a stall.
      setImmediate(() => {
        if (!answered) this.setStalled(true);
      });
    }, REDIS_STALL_MS);
    timer.unref();
    command.ping().then(
      () => {
        answered = true;
        clearTimeout(timer);
        this.pinging = false;
        this.setStalled(false);
      },
      () => {
        answered = true;
        clearTimeout(timer);
        this.pinging = false;
      },
    );
  }

  private setStalled(stalled: boolean): void {
    if (stalled === this.stalled) return;
    this.stalled = stalled;
    this.options.onStall?.(stalled);
  }
}

/**
 * The broker as the service uses it: a publish is refused with UNAVAILABLE
 * while the gate is closed (it might not reach every edge); subscriptions
 * and history reads pass.
 */
export function gatedBroker(broker: Broker, gate: RedisGate): Broker {
  return {
    publish(pub) {
      try {
        gate.check(pub.channel === "" ? "Broadcast" : "Send");
      } catch (err) {
        return Promise.reject(err);
      }
      return broker.publish(pub);
    },
    subscribe: (channel) => broker.subscribe(channel),
    unsubscribe: (channel) => broker.unsubscribe(channel),
    // History is kept in Redis with each publication, whatever the edges' state.
    history: (channel, query) => broker.history(channel, query),
  };
}

/**
 * Presence as the service reads it: members, channels and counts are refused with
 * UNAVAILABLE while the gate is closed (some edge may not have re-written
 * its members yet); writes pass (an edge's own changes are retried by its
 * membership room, core/membership.ts).
 */
export function gatedPresence(presence: PresenceDirectory, gate: RedisGate): PresenceDirectory {
  return {
    add: (channel, member) => presence.add(channel, member),
    remove: (channel, memberId) => presence.remove(channel, memberId),
    departed: (channel, memberId) => presence.departed(channel, memberId),
    async members(channel) {
      gate.check("GetMembers");
      return presence.members(channel);
    },
    async page(channel, after, limit) {
      gate.check("GetMembers");
      return presence.page(channel, after, limit);
    },
    async channels(prefix, after, limit) {
      gate.check("ListChannels");
      return presence.channels(prefix, after, limit);
    },
    async stats(channel) {
      gate.check("PresenceStats");
      return presence.stats(channel);
    },
  };
}
