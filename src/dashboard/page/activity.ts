/**
 * The activity log: what happens across every channel, live, from one
 * WatchLifecycle stream (channel occupied and vacated, members joined and
 * left with why, connections opened and closed, edges lost), filtered on
 * the API by channel prefix and on the page by kind.
 *
 * Contract: entries are drawn at most once per animation frame (a burst of
 * thousands costs one layout, and of those queued meanwhile only the last
 * MAX_ACTIVITY_ENTRIES are built); the list keeps at most
 * MAX_ACTIVITY_ENTRIES. When the stream fails it is opened again every
 * `retryMs` with since = the last position received, so nothing is missed
 * while the lifecycle sequence still keeps it; when it no longer does, the
 * log says so ("missed events") instead of pretending to be complete. A
 * new prefix starts a new stream from now.
 */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { LeaveReason, type LifecycleEvent, type Realtime } from "../../../gen/realtime/v1/realtime_pb.js";
import { $, clock, el } from "./dom.js";
import { follow } from "./follow.js";

/** Entries kept in the log; older ones scroll away. */
export const MAX_ACTIVITY_ENTRIES = 500;

export interface ActivityDeps {
  readonly client: Client<typeof Realtime>;
  /** The error as the page says it. */
  readonly describe: (err: unknown) => string;
  /** Wait before watching again after the stream failed. */
  readonly retryMs: number;
}

/** One entry: its group (the kind filter), its class and label, and its text. */
interface Entry {
  readonly at: Date;
  readonly group: "channel" | "member" | "connection" | "info";
  readonly cls: string;
  readonly label: string;
  readonly body: string;
}

let pending: Entry[] = [];
/** The ids of the last events shown (at most twice MAX_ACTIVITY_ENTRIES), to drop repeats. */
const seen = new Set<string>();
function remember(id: string) {
  seen.add(id);
  // A Set iterates in insertion order: the first is the oldest.
  if (seen.size > 2 * MAX_ACTIVITY_ENTRIES) seen.delete(seen.values().next().value!);
}
let frame = 0;
/** Ends the stream of the prefix being watched (a new prefix starts another). */
let stop: AbortController | undefined;

/**
 * Starts the stream, and the filters' handlers; runs for the life of the
 * page. Returns what opens it again now (the API key changed: the call in
 * flight with the old key is ended, not reported).
 */
export function startActivity(deps: ActivityDeps): () => void {
  let prefix = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  $("activity-prefix").addEventListener("input", () => {
    clearTimeout(timer);
    // Typing a prefix opens one stream when the typing pauses, not one per key.
    timer = setTimeout(() => {
      const next = ($("activity-prefix") as HTMLInputElement).value.trim();
      if (next === prefix) return;
      prefix = next;
      void watch(deps, prefix);
    }, 300);
  });
  $("activity-filter").addEventListener("submit", (e) => e.preventDefault());
  $("activity-kind").addEventListener("change", () => {
    $("activity-log").dataset.show = ($("activity-kind") as HTMLSelectElement).value;
  });
  $("activity-clear").addEventListener("click", () => {
    pending = [];
    $("activity-log").replaceChildren();
  });
  void watch(deps, prefix);
  return () => void watch(deps, prefix);
}

async function watch({ client, describe, retryMs }: ActivityDeps, prefix: string) {
  stop?.abort();
  const controller = new AbortController();
  stop = controller;
  // For tests and scripts: the prefix of the stream from now on (the one before is ended).
  $("activity-log").dataset.prefix = prefix;
  /** The position of the last event received: a stream opened again resumes after it. */
  let since: { offset: bigint; epoch: string } | undefined;
  await follow(controller.signal, {
    state: $("activity-state"),
    view: $("activity"),
    describe,
    retryMs,
    // Connection events belong to no channel: shown while no prefix narrows the log.
    open: (signal) => client.watchLifecycle({ channelPrefix: prefix, connections: prefix === "", since }, { signal }),
    // The API answers nothing until the first event.
    waiting: "watching…",
    message: (r) => {
      if (r.resync) add(info("missed events: the service no longer keeps all that happened while the log was away"));
      if (!r.event) return;
      // At least once (WatchLifecycleResponse.id): a repeat after an outage is shown once.
      if (seen.has(r.id)) return;
      remember(r.id);
      since = { offset: r.offset, epoch: r.epoch };
      add(entryOf(r.event));
    },
    // The service keeps no lifecycle (REALTIME_LIFECYCLE=false): asking again will not change that.
    final: (err) => (ConnectError.from(err).code === Code.FailedPrecondition ? `off: ${describe(err)}` : undefined),
  });
}

function info(body: string): Entry {
  return { at: new Date(), group: "info", cls: "info", label: "info", body };
}

/** The log entry of one lifecycle event. */
export function entryOf(e: LifecycleEvent): Entry {
  const at = new Date(Number(e.atUnixUs / 1000n));
  const k = e.kind;
  const user = (id: string) => (id ? ` (user ${id})` : "");
  switch (k.case) {
    case "channelOccupied":
      return { at, group: "channel", cls: "occupied", label: "occupied", body: k.value.channel };
    case "channelVacated":
      return { at, group: "channel", cls: "vacated", label: "vacated", body: k.value.channel };
    case "memberJoined":
      return {
        at,
        group: "member",
        cls: "join",
        label: "joined",
        body: `${k.value.channel}: ${k.value.connectionId}${user(k.value.userId)}${k.value.restored ? ", restored" : ""}`,
      };
    case "memberLeft":
      return {
        at,
        group: "member",
        cls: "leave",
        label: "left",
        body: `${k.value.channel}: ${k.value.connectionId}${user(k.value.userId)}, ${reasonText(k.value.reason)}`,
      };
    case "connectionOpened":
      return {
        at,
        group: "connection",
        cls: "opened",
        label: "connected",
        body: `${k.value.connectionId}${user(k.value.userId)} on edge ${k.value.edgeId}`,
      };
    case "connectionClosed":
      return {
        at,
        group: "connection",
        cls: "closed",
        label: "closed",
        body: `${k.value.connectionId}${user(k.value.userId)}: ${k.value.reason}`,
      };
    case "edgeLost":
      return {
        at,
        group: "connection",
        cls: "lost",
        label: "edge lost",
        body: `edge ${k.value.edgeId}: its connections are gone`,
      };
    default:
      return info("an event this page does not know");
  }
}

function reasonText(reason: LeaveReason): string {
  if (reason === LeaveReason.DISCONNECTED) return "disconnected";
  if (reason === LeaveReason.EDGE_LOST) return "its edge was lost";
  return "left";
}

function add(entry: Entry) {
  if (($("activity-pause") as HTMLInputElement).checked && entry.group !== "info") return;
  pending.push(entry);
  if (pending.length > 2 * MAX_ACTIVITY_ENTRIES) pending = pending.slice(-MAX_ACTIVITY_ENTRIES);
  if (frame === 0) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  if (pending.length === 0) return;
  const list = $("activity-log");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fragment = document.createDocumentFragment();
  for (const e of pending.slice(-MAX_ACTIVITY_ENTRIES)) {
    const li = el("li", e.cls);
    li.dataset.group = e.group;
    li.dataset.kind = e.label;
    li.append(el("time", "", clock(e.at)), el("span", "kind", e.label), el("span", "body", e.body));
    fragment.append(li);
  }
  pending = [];
  list.append(fragment);
  while (list.childElementCount > MAX_ACTIVITY_ENTRIES) list.firstElementChild!.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}
