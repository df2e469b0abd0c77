/**
 * The activity log: what happens across every channel, live, from two
 * streams: WatchLifecycle (channel occupied and vacated, members joined and
 * left with why, connections opened and closed, edges lost) and
 * WatchMessages (the application messages sent, with a preview), filtered
 * on the API by channel prefix and on the page by kind.
 *
 * Contract: entries are drawn at most once per animation frame (a burst of
 * thousands costs one layout, and of those queued meanwhile only the last
 * MAX_ACTIVITY_ENTRIES are built); the list keeps at most
 * MAX_ACTIVITY_ENTRIES. When the stream fails it is opened again every
 * `retryMs` with since = the last position received, so nothing is missed
 * while the lifecycle sequence still keeps it; when it no longer does, the
 * log says so ("missed events") instead of pretending to be complete.
 * Messages are not kept by the service: a message stream opened again
 * goes on from then, and the messages the service did not copy (past its
 * rate, TAP_COPIES_PER_SECOND a second per node) are said as a count. A
 * new prefix starts new streams from now.
 */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  LeaveReason,
  type LifecycleEvent,
  type Realtime,
  type TappedMessage,
} from "../../../gen/realtime/v1/realtime_pb.js";
import { $, clock, el } from "./dom.js";
import { follow } from "./follow.js";

/** Entries kept in the log; older ones scroll away. */
export const MAX_ACTIVITY_ENTRIES = 500;
/** Characters of a message's payload preview shown in its entry (the API sends up to 1 KiB). */
export const MAX_PREVIEW_CHARS = 160;

export interface ActivityDeps {
  readonly client: Client<typeof Realtime>;
  /** The error as the page says it. */
  readonly describe: (err: unknown) => string;
  /** Wait before watching again after the stream failed. */
  readonly retryMs: number;
}

/** One entry: its group (the kind filter), its class and label, and its text (a message's: with its event and sender). */
interface Entry {
  readonly at: Date;
  readonly group: "channel" | "member" | "connection" | "message" | "info";
  readonly cls: string;
  readonly label: string;
  readonly body: string;
  readonly event?: string;
  readonly from?: string;
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

async function watch(deps: ActivityDeps, prefix: string) {
  stop?.abort();
  const controller = new AbortController();
  stop = controller;
  // For tests and scripts: the prefix of the streams from now on (those before are ended).
  $("activity-log").dataset.prefix = prefix;
  await Promise.all([watchLifecycle(deps, prefix, controller.signal), watchMessages(deps, prefix, controller.signal)]);
}

async function watchMessages({ client, describe, retryMs }: ActivityDeps, prefix: string, signal: AbortSignal) {
  await follow(signal, {
    state: $("activity-messages-state"),
    // While this stream is down the log may lack messages: it is dimmed (the lifecycle's dims the whole panel).
    view: $("activity-log"),
    describe,
    retryMs,
    open: (signal) => client.watchMessages({ channelPrefix: prefix }, { signal }),
    waiting: "watching…",
    message: (r) => {
      if (r.message) add(messageEntry(r.message));
      else if (r.skipped > 0n)
        add(info(`${r.skipped} messages not shown: a node sent more than the tap copies a second`));
    },
  });
}

async function watchLifecycle({ client, describe, retryMs }: ActivityDeps, prefix: string, signal: AbortSignal) {
  /** The position of the last event received: a stream opened again resumes after it. */
  let since: { offset: bigint; epoch: string } | undefined;
  await follow(signal, {
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

/** The log entry of one message: where it went, its event, its size and the start of its payload, who sent it. */
export function messageEntry(m: TappedMessage): Entry {
  const to = m.channel || (m.userId ? `user ${m.userId}` : "broadcast");
  const p = m.preview;
  let preview = p.case === "json" ? p.value : p.case === "binary" ? "binary" : "";
  const cut = m.truncated || preview.length > MAX_PREVIEW_CHARS;
  if (preview.length > MAX_PREVIEW_CHARS) preview = preview.slice(0, MAX_PREVIEW_CHARS);
  return {
    at: new Date(Number(m.acceptedUnixUs / 1000n)),
    group: "message",
    cls: "message",
    label: "message",
    body: `${to}: ${preview}${cut ? "…" : ""} (${m.size} B)`,
    event: m.event,
    from: m.origin ? `from ${m.origin}` : "from a backend",
  };
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
    const body = el("span", "body");
    if (e.event) body.append(el("span", "ev", e.event));
    body.append(e.body);
    if (e.from) body.append(el("span", "from", e.from));
    li.append(el("time", "", clock(e.at)), el("span", "kind", e.label), body);
    fragment.append(li);
  }
  pending = [];
  list.append(fragment);
  while (list.childElementCount > MAX_ACTIVITY_ENTRIES) list.firstElementChild!.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}
