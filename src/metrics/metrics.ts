/**
 * The Prometheus metrics of one process, with prom-client and a registry of
 * its own (never prom-client's global one, so that two roles in one test
 * process do not mix). Every label takes its values from a closed set: no
 * channel, connection, member or edge id is ever a label.
 *
 * Counters are driven by the core through the Observer seam; levels
 * (connections, channels, members, edges) are read from their owners when
 * /metrics is scraped, so they cannot drift.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import {
  DISCONNECT_REASONS,
  HOOK_NAMES,
  HOOK_OUTCOMES,
  REFUSAL_REASONS,
  type Backend,
  type Observer,
} from "../core/observer.js";
import { CODE_NAMES, type CodeName } from "../protocol/status-codes.js";

/** Metric names start with this. */
export const METRIC_PREFIX = "switchboard_";

/**
 * The `code` label of a status code: its gRPC name (status-codes.ts); a
 * number outside the table is UNKNOWN, so the label's values stay a closed
 * set.
 */
export function codeLabel(code: number): CodeName {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/**
 * How often the event-loop delay is sampled (prom-client's
 * eventLoopMonitoringPrecision, a libuv timer): its default, 10 ms, woke an
 * idle process 100 times a second, most of its idle CPU. Once a second
 * still shows any stall of the loop in the lag metrics (a blocked loop makes
 * that sample late by as much).
 */
export const EVENT_LOOP_MONITOR_MS = 1_000;

/** Latency buckets of RPCs, in seconds: 1 ms to 10 s. */
export const RPC_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Buckets of switchboard_delivery_latency_seconds, in seconds: 1 ms (the
 * clock's resolution: the accept time is in whole milliseconds) to 5 s,
 * with 250 ms, the alert's threshold (docs/operations.md), a bound of its
 * own so that its quantile is not interpolated across a wide bucket.
 */
export const DELIVERY_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Levels of an edge, read at scrape time. */
export interface EdgeLevels {
  connections: number;
  channels: number;
  members: number;
}

/** Levels of the hub (the API process of the embedded mode), read at scrape time. */
export interface HubLevels {
  /** Edges linked now. */
  edges: number;
  /** Channels at least one edge is subscribed to. */
  channels: number;
}

export interface Metrics {
  readonly role: string;
  readonly registry: Registry;
  /** The Observer the core reports to. */
  readonly observer: Observer;
  /** Records one finished RPC; `code` is the gRPC code name ("OK", "INVALID_ARGUMENT", ...). */
  rpc(service: string, method: string, code: string, seconds: number): void;
  /** Reads the edge's levels at scrape time. */
  edgeLevels(read: () => EdgeLevels): void;
  /** Reads the hub's levels at scrape time. */
  hubLevels(read: () => HubLevels): void;
  /** Shows a backend the process depends on as down (0) until it reports up: alerts see it from the start. */
  declareBackend(backend: Backend): void;
  /** Reads readiness at scrape time (switchboard_ready). */
  readiness(read: () => boolean): void;
  /** The text exposition of every metric. */
  scrape(): Promise<string>;
}

export interface MetricsOptions {
  /** "api" or "edge": the `role` label of every series. */
  role: string;
  /** The `version` label of switchboard_info. */
  version?: string;
  /** Whether to add prom-client's process and Node.js metrics. Default: true. */
  processMetrics?: boolean;
}

/** Creates the metrics of one process. */
export function createMetrics(options: MetricsOptions): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ role: options.role });
  if (options.processMetrics ?? true)
    collectDefaultMetrics({
      register: registry,
      prefix: METRIC_PREFIX,
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITOR_MS,
    });
  const registers = [registry];
  const name = (n: string) => METRIC_PREFIX + n;

  let readEdge: (() => EdgeLevels) | undefined;
  let readHub: (() => HubLevels) | undefined;
  let readReady: (() => boolean) | undefined;

  new Gauge({
    name: name("info"),
    help: "Always 1; its labels say which build runs.",
    labelNames: ["version"],
    registers,
  }).set({ version: options.version ?? "unknown" }, 1);
  new Gauge({
    name: name("ready"),
    help: "1 when the process is ready for traffic (/readyz answers 200), 0 while starting, draining or cut off.",
    registers,
    collect() {
      if (readReady) this.set(readReady() ? 1 : 0);
    },
  });

  const edge = options.role === "edge";
  const api = !edge;
  // Each role registers only the series it can move; the others' are left unregistered.
  const on = (yes: boolean) => (yes ? registers : []);

  // Edge levels, read at scrape time.
  const edgeLevel = (key: keyof EdgeLevels, help: string) =>
    new Gauge({
      name: name(key),
      help,
      registers: on(edge),
      collect() {
        if (readEdge) this.set(readEdge()[key]);
      },
    });
  edgeLevel("connections", "Client connections open on this edge.");
  edgeLevel("channels", "Channels with at least one member on this edge.");
  edgeLevel("members", "Channel memberships on this edge (a connection in 3 channels counts 3).");

  const opened = new Counter({
    name: name("connections_opened_total"),
    help: "Client connections accepted, by encoding.",
    labelNames: ["encoding"],
    registers: on(edge),
  });
  const refused = new Counter({
    name: name("connections_refused_total"),
    help: "WebSocket upgrades refused before the connection opened, by reason (auth, limit, shutdown, protocol, unavailable, origin).",
    labelNames: ["reason"],
    registers: on(edge),
  });
  const disconnects = new Counter({
    name: name("disconnects_total"),
    help: "Client connections that ended, by reason (client, abnormal, shutdown, slow_consumer, heartbeat, auth, limit, protocol, unavailable, error).",
    labelNames: ["reason"],
    registers: on(edge),
  });
  const messagesIn = new Counter({
    name: name("messages_in_total"),
    help: "Frames received from clients, by command (invalid: could not be decoded).",
    labelNames: ["kind"],
    registers: on(edge),
  });
  const commandErrors = new Counter({
    name: name("command_errors_total"),
    help: "Client commands answered with an error, by gRPC code name (RESOURCE_EXHAUSTED: a limit or the rate limit; PERMISSION_DENIED: auth; UNAVAILABLE: the backend).",
    labelNames: ["code"],
    registers: on(edge),
  });
  const messagesOut = new Counter({
    name: name("messages_out_total"),
    help: "Frames written to clients, by kind (event, reply).",
    labelNames: ["kind"],
    registers: on(edge),
  });
  const deliveries = new Counter({
    name: name("deliveries_total"),
    help: "Events written to client connections: one per recipient of each publication.",
    registers: on(edge),
  });
  const received = new Counter({
    name: name("publications_received_total"),
    help: "Publications this edge received from the hub to fan out.",
    registers: on(edge),
  });
  // Contract: one observation per publication the API accepted (Send,
  // SendBatch, Broadcast, Publish) and this edge wrote live to at least one
  // connection, however many it reached (switchboard_deliveries_total counts
  // those): the time from the API's accept to the last of those writes
  // (handed to the connections' outbound queues), by the two processes'
  // wall clocks. Across machines it includes their clocks' skew; negative
  // differences count as 0. Not observed: events clients sent, system
  // events, events read from history (a join's replay, a gap filled).
  const deliveryLatency = new Histogram({
    name: name("delivery_latency_seconds"),
    help: "Time from the API accepting an event (Send, SendBatch, Broadcast, Publish) to this edge writing it to its connections, once per event and edge, by scope (channel, broadcast). Across machines it includes clock skew.",
    labelNames: ["scope"],
    buckets: DELIVERY_LATENCY_BUCKETS,
    registers: on(edge),
  });
  // Bound once: observing skips building the labels (prom-client's observe
  // is most of the metric's cost on the hot path: under a microsecond a
  // publication, measured in-process; nothing per recipient).
  const latencyOf = {
    channel: deliveryLatency.labels({ scope: "channel" }),
    broadcast: deliveryLatency.labels({ scope: "broadcast" }),
  };
  const drops = new Counter({
    name: name("drops_total"),
    help: "Frames meant for clients (edge) or edges (api) that were not written, by reason (closed, slow_consumer, edge_backpressure).",
    labelNames: ["reason"],
    registers,
  });
  const published = new Counter({
    name: name("hub_publications_total"),
    help: "Publications the hub routed, by scope (channel, broadcast).",
    labelNames: ["scope"],
    registers: on(api),
  });
  const handoffs = new Counter({
    name: name("hub_handoffs_total"),
    help: "Publications handed to edges: one per edge that received each publication.",
    registers: on(api),
  });
  const backendUp = new Gauge({
    name: name("backend_up"),
    help: "1 while a shared backend (link: the edge's link to the API; redis) is reachable, else 0.",
    labelNames: ["backend"],
    registers,
  });
  const backendChanges = new Counter({
    name: name("backend_transitions_total"),
    help: "Times a shared backend went down or came back, by backend and state.",
    labelNames: ["backend", "state"],
    registers,
  });
  const rpcHandled = new Counter({
    name: name("rpc_handled_total"),
    help: "RPCs finished, by service, method and gRPC status code.",
    labelNames: ["service", "method", "code"],
    registers: on(api),
  });
  const rpcDuration = new Histogram({
    name: name("rpc_duration_seconds"),
    help: "Time from the start of an RPC to its status, by service, method and gRPC status code.",
    labelNames: ["service", "method", "code"],
    buckets: RPC_DURATION_BUCKETS,
    registers: on(api),
  });

  const hookCalls = new Counter({
    name: name("hook_calls_total"),
    help: "Calls of the backend's realtime.v1.Hooks, by hook (connect, join, send) and outcome (allow, deny, rewrite; error: failed or past the deadline; invalid: an answer that breaks the contract).",
    labelNames: ["hook", "outcome"],
    registers: on(edge),
  });
  const hookDuration = new Histogram({
    name: name("hook_duration_seconds"),
    help: "Time from a hook call to its answer or failure, by hook.",
    labelNames: ["hook"],
    buckets: RPC_DURATION_BUCKETS,
    registers: on(edge),
  });

  const tapCopies = new Counter({
    name: name("tap_copies_total"),
    help: "Messages the message tap (WatchMessages) copied to its channel, or skipped past its rate (TAP_COPIES_PER_SECOND), by outcome; both stay 0 while nobody watches.",
    labelNames: ["outcome"],
    registers,
  });
  for (const outcome of ["copied", "skipped"]) tapCopies.inc({ outcome }, 0);

  // Series that exist before the first event, so that rate() and alerts see 0, not nothing.
  if (edge) {
    for (const encoding of ["realtime.v1.json", "realtime.v1.proto"]) opened.inc({ encoding }, 0);
    for (const reason of DISCONNECT_REASONS) disconnects.inc({ reason }, 0);
    for (const reason of REFUSAL_REASONS) refused.inc({ reason }, 0);
    for (const reason of ["closed", "slow_consumer"]) drops.inc({ reason }, 0);
    for (const kind of ["event", "reply"]) messagesOut.inc({ kind }, 0);
    for (const scope of ["channel", "broadcast"]) deliveryLatency.zero({ scope });
    for (const hook of HOOK_NAMES) for (const outcome of HOOK_OUTCOMES) hookCalls.inc({ hook, outcome }, 0);
  } else {
    for (const scope of ["channel", "broadcast"]) published.inc({ scope }, 0);
    drops.inc({ reason: "edge_backpressure" }, 0);
  }

  const observer: Observer = {
    connectionOpened: (encoding) => opened.inc({ encoding }),
    connectionClosed: (reason) => disconnects.inc({ reason }),
    connectionRefused: (reason) => refused.inc({ reason }),
    messageIn: (kind) => messagesIn.inc({ kind }),
    commandFailed: (code) => commandErrors.inc({ code: codeLabel(code) }),
    messageOut(kind, count) {
      messagesOut.inc({ kind }, count);
      if (kind === "event") deliveries.inc(count);
    },
    publicationReceived: () => received.inc(),
    delivered: (broadcast, seconds) => (broadcast ? latencyOf.broadcast : latencyOf.channel).observe(seconds),
    dropped: (reason, count) => drops.inc({ reason }, count),
    published(broadcast, edges) {
      published.inc({ scope: broadcast ? "broadcast" : "channel" });
      handoffs.inc(edges);
    },
    backendState(backend, up) {
      backendUp.set({ backend }, up ? 1 : 0);
      backendChanges.inc({ backend, state: up ? "up" : "down" });
    },
    hookCalled: (hook, outcome) => hookCalls.inc({ hook, outcome }),
    hookTimed: (hook, seconds) => hookDuration.observe({ hook }, seconds),
    tapped: (outcome, count) => tapCopies.inc({ outcome }, count),
  };

  return {
    role: options.role,
    registry,
    observer,
    rpc(service, method, code, seconds) {
      rpcHandled.inc({ service, method, code });
      rpcDuration.observe({ service, method, code }, seconds);
    },
    declareBackend: (backend) => backendUp.set({ backend }, 0),
    edgeLevels: (read) => void (readEdge = read),
    hubLevels(read) {
      // Registered only where there is a hub (embedded mode): an API node in
      // the Redis mode has no such level, and a 0 would read as "no edges".
      if (readHub === undefined) {
        new Gauge({
          name: name("hub_edges"),
          help: "Edges linked to this API process now (embedded mode).",
          registers,
          collect() {
            this.set(readHub!().edges);
          },
        });
        new Gauge({
          name: name("hub_channels"),
          help: "Channels at least one edge is subscribed to (embedded mode).",
          registers,
          collect() {
            this.set(readHub!().channels);
          },
        });
      }
      readHub = read;
    },
    readiness: (read) => void (readReady = read),
    scrape: () => registry.metrics(),
  };
}
