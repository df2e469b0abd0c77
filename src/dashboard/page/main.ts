/**
 * The dashboard: a browser client of realtime.v1.Realtime over Connect
 * (connect-web, same origin), built by src/dashboard/build.ts. It polls
 * ListChannels and Info, charts WatchStats (overview.ts), watches the
 * picked channel with WatchChannel (reconnecting with a fresh snapshot
 * when the stream ends), sends with
 * Send/Broadcast, shows a member's connection in detail (GetConnections,
 * connection-details.ts), and unsubscribes or disconnects a member it shows.
 * No framework: the page is small and the DOM is the state it shows.
 */
import { fromJsonString, toJson, toJsonString } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import {
  NodeRole,
  Realtime,
  type Member,
  type NodeInfo,
  type WatchChannelResponse,
} from "../../../gen/realtime/v1/realtime_pb.js";
import { CloseCode } from "../../protocol/close-codes.js";
import { startActivity } from "./activity.js";
import { connectionDetails } from "./connection-details.js";
import { $, clock, duration, el, markStale, setLiveState } from "./dom.js";
import { startOverview } from "./overview.js";

/** How often the channel list is refreshed. */
const CHANNEL_POLL_MS = 2000;
/** How long after Info answered the node panel asks again. */
const NODE_POLL_MS = 2000;
/** Channels per ListChannels page. */
const CHANNEL_PAGE_SIZE = 200;
/** Member rows drawn at the most (sorted by id); the count says how many there are. */
const MAX_MEMBER_ROWS = 500;
/** Entries kept in the event log; older ones scroll away. */
const MAX_LOG_ENTRIES = 500;
/** The longest the page works through stream messages before it lets the browser draw and take input. */
const WORK_SLICE_MS = 12;
/** Wait before watching again after the stream failed. */
const REWATCH_DELAY_MS = 2000;

/** sessionStorage key of the API key, when the API requires one (REALTIME_API_KEYS). */
const API_KEY_STORAGE = "switchboard.apiKey";

/** Sends the API key the user entered, if any, as authorization: Bearer <key>. */
const withApiKey: Interceptor = (next) => (req) => {
  const key = sessionStorage.getItem(API_KEY_STORAGE);
  if (key) req.header.set("authorization", `Bearer ${key}`);
  return next(req);
};

const client = createClient(Realtime, createConnectTransport({ baseUrl: location.origin, interceptors: [withApiKey] }));

let selected = "";
let watch: AbortController | undefined;
const members = new Map<string, Member>();

function setStatus(state: "ok" | "error" | "connecting", text: string) {
  setLiveState($("status"), state, text);
}

function describe(err: unknown): string {
  const e = ConnectError.from(err);
  // The API wants a key (or another one): let the user give it.
  if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) $("key-form").hidden = false;
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

function valueText(v: Value | undefined): string {
  return v === undefined ? "null" : toJsonString(ValueSchema, v);
}

// ---- channels ----

let pageTokens: string[] = [""];

async function refreshChannels() {
  const prefix = ($("filter") as HTMLInputElement).value.trim();
  try {
    const pages = [];
    for (const token of pageTokens)
      pages.push(await client.listChannels({ prefix, pageSize: CHANNEL_PAGE_SIZE, pageToken: token }));
    const channels = pages.flatMap((p) => p.channels);
    const next = pages[pages.length - 1]!.nextPageToken;
    $("more").hidden = next === "";
    $("more").dataset.token = next;
    renderChannels(
      channels.map((c) => ({ name: c.name, members: c.members })),
      next !== "",
    );
    lostSince = undefined;
    setStatus("ok", "connected");
    markStale($("channel-list"), false);
  } catch (err) {
    // One state for the whole outage, with when it began; what is shown is marked stale.
    lostSince ??= new Date();
    setStatus("error", `disconnected since ${clock(lostSince)}: ${describe(err)}`);
    markStale($("channel-list"), true);
  }
}

/** When the API stopped answering the channel list; undefined while it answers. */
let lostSince: Date | undefined;

function renderChannels(channels: { name: string; members: number }[], more: boolean) {
  const list = $("channel-list");
  const items = channels.map((c) => {
    const li = el("li");
    li.dataset.channel = c.name;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(c.name === selected));
    li.tabIndex = -1;
    li.append(el("span", "name", c.name), el("span", "n", String(c.members)));
    li.title = `${c.name}: ${c.members} member${c.members === 1 ? "" : "s"}`;
    return li;
  });
  if (items.length === 0)
    items.push(
      el(
        "li",
        "none",
        ($("filter") as HTMLInputElement).value
          ? "No channel with that prefix has members."
          : "No channel has members yet.",
      ),
    );
  list.replaceChildren(...items);
  rovingFocus();
  $("channel-total").textContent = `${channels.length}${more ? "+" : ""}`;
}

/** The channel list's options, in order. */
const channelOptions = () => Array.from($("channel-list").querySelectorAll<HTMLLIElement>("li[data-channel]"));

/**
 * The list is one stop for Tab (the selected channel, else the first), and
 * the arrow keys, Home and End move within it (the listbox pattern).
 */
function rovingFocus(focus?: HTMLLIElement) {
  const options = channelOptions();
  const current =
    focus ??
    options.find((li) => li === document.activeElement) ??
    options.find((li) => li.dataset.channel === selected) ??
    options[0];
  for (const li of options) li.tabIndex = li === current ? 0 : -1;
  if (focus) focus.focus();
}

function onListKey(e: KeyboardEvent) {
  const options = channelOptions();
  const at = options.indexOf(e.target as HTMLLIElement);
  if (at < 0) return;
  const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: options.length - 1 }[e.key];
  if (move !== undefined) {
    e.preventDefault();
    rovingFocus(options[Math.max(0, Math.min(options.length - 1, move))]);
  } else if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    select(options[at]!.dataset.channel!);
  }
}

// ---- nodes ----

/** When Info stopped answering; undefined while it answers. */
let nodesLostSince: Date | undefined;

async function refreshNodes() {
  try {
    const info = await client.info({});
    renderNodes(info.nodes, info.unanswered);
    nodesLostSince = undefined;
    setLiveState($("node-state"), "live", "");
    markStale($("nodes"), false);
  } catch (err) {
    // Like the channel list: the last answer stays, marked stale, with when the outage began.
    nodesLostSince ??= new Date();
    setLiveState($("node-state"), "error", `disconnected since ${clock(nodesLostSince)}: ${describe(err)}`);
    markStale($("nodes"), true);
  }
}

/** Info waits up to 2 s for a stalled node: the next call is NODE_POLL_MS after the last answer, not on a clock. */
async function pollNodes() {
  await refreshNodes();
  setTimeout(() => void pollNodes(), NODE_POLL_MS);
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;

function renderNodes(nodes: NodeInfo[], unanswered: number) {
  const now = Date.now();
  const items = nodes.map((n) => {
    const edge = n.role === NodeRole.EDGE;
    const li = el("li");
    li.dataset.node = n.id;
    li.dataset.role = edge ? "edge" : "api";
    const head = el("div", "node-head");
    head.append(el("span", `role ${li.dataset.role}`, edge ? "edge" : "API"), el("span", "id", n.id));
    // Uptime is from this browser's clock: off by the skew between it and the node's.
    const facts = [`v${n.version}`, `up ${duration(now - Number(n.startedUnixMs))}`];
    if (edge) {
      li.dataset.connections = String(n.connections);
      li.dataset.channels = String(n.channels);
      facts.push(plural(n.connections, "connection"), plural(n.channels, "channel"));
    }
    li.append(head, el("div", "facts", facts.join(" · ")));
    return li;
  });
  if (items.length === 0) items.push(el("li", "none", "No node answered."));
  $("nodes").replaceChildren(...items);
  $("node-total").textContent = String(nodes.length);
  const line = $("node-unanswered");
  line.hidden = unanswered === 0;
  line.textContent = `${plural(unanswered, "node")} did not answer in time (up but stalled, or going away)`;
}

// ---- the watched channel ----

function select(channel: string) {
  if (!channel || channel === selected) return;
  selected = channel;
  for (const li of channelOptions()) li.setAttribute("aria-selected", String(li.dataset.channel === channel));
  $("empty").hidden = true;
  $("channel-view").hidden = false;
  $("channel-name").textContent = channel;
  $("target-label").textContent = `To ${channel}`;
  $("log").replaceChildren();
  pendingLog = [];
  $("action-result").textContent = "";
  history.replaceState(null, "", `#${encodeURIComponent(channel)}`);
  watch?.abort();
  watch = new AbortController();
  void watchLoop(channel, watch.signal);
}

/** When the watch of the selected channel was lost; undefined while it is live. */
let watchLostSince: Date | undefined;

async function watchLoop(channel: string, signal: AbortSignal) {
  watchLostSince = undefined;
  while (!signal.aborted) {
    // The members shown are kept through an outage (marked stale); the next snapshot replaces them.
    if (watchLostSince === undefined) members.clear();
    const snapshot = new Map<string, Member>();
    let snapshotDone = false;
    setWatchState("connecting", "connecting…");
    try {
      let slice = performance.now();
      for await (const r of client.watchChannel({ channel }, { signal })) {
        // A burst arrives as one long run of messages: yield to the page
        // (input, drawing) every WORK_SLICE_MS instead of holding it.
        if (performance.now() - slice > WORK_SLICE_MS) {
          await new Promise((resolve) => setTimeout(resolve, 0));
          slice = performance.now();
        }
        if (r.update.case === "members") {
          for (const m of r.update.value.members) snapshot.set(m.id, m);
          if (r.update.value.complete) {
            snapshotDone = true;
            members.clear();
            for (const [id, m] of snapshot) members.set(id, m);
            renderMembers();
            markStale($("members"), false);
            setWatchState("live", "● live");
            const back = watchLostSince
              ? ` (back after ${Math.round((Date.now() - watchLostSince.getTime()) / 1000)} s)`
              : "";
            watchLostSince = undefined;
            log("info", "watching", `${members.size} member${members.size === 1 ? "" : "s"} now${back}`);
          }
          continue;
        }
        apply(r);
        if (snapshotDone)
          renderMembers(r.update.case === "join" || r.update.case === "profileUpdate" ? r.update.value.id : undefined);
      }
    } catch (err) {
      if (signal.aborted) return;
      // Logged once when the watch is lost, not at every retry; the
      // members shown stay, marked stale, until a snapshot replaces them.
      if (watchLostSince === undefined) {
        watchLostSince = new Date();
        log("info", "stream", `lost (${describe(err)}); watching again every ${REWATCH_DELAY_MS / 1000} s`);
      }
      setWatchState("error", `disconnected since ${clock(watchLostSince)}`);
      markStale($("members"), true);
    }
    if (signal.aborted) return;
    await new Promise((r) => setTimeout(r, REWATCH_DELAY_MS));
  }
}

function setWatchState(state: string, text: string) {
  setLiveState($("watch-state"), state, text);
}

function apply(r: WatchChannelResponse) {
  switch (r.update.case) {
    case "join":
      members.set(r.update.value.id, r.update.value);
      log(
        "join",
        "join",
        `${r.update.value.id}${r.update.value.data ? ` ${valueText(r.update.value.data)}` : ""}`,
        r.update.value.userId ? `user ${r.update.value.userId}` : undefined,
      );
      break;
    case "leave":
      members.delete(r.update.value.id);
      log("leave", "leave", r.update.value.id, r.update.value.userId ? `user ${r.update.value.userId}` : undefined);
      break;
    case "profileUpdate":
      members.set(r.update.value.id, r.update.value);
      log("update", "update", `${r.update.value.id} ${valueText(r.update.value.data)}`);
      break;
    case "message": {
      const m = r.update.value;
      const body =
        m.payload.case === "json"
          ? valueText(m.payload.value)
          : m.payload.case === "binary"
            ? `<${m.payload.value.length} bytes>`
            : "";
      log("message", "message", body, m.origin ? `from ${m.origin}` : "from a backend", m.event);
      break;
    }
  }
}

function renderMembers(flash?: string) {
  pendingMembers = { flash: flash ?? pendingMembers?.flash };
  schedule();
}

/** The edge a connection is on: its id's prefix before the last "." (NodeInfo.id of that edge). */
const edgeOf = (connectionId: string) => connectionId.slice(0, Math.max(0, connectionId.lastIndexOf(".")));

function drawMembers(flash?: string) {
  const sorted = [...members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rows = sorted.slice(0, MAX_MEMBER_ROWS).map((m) => {
    const tr = el("tr");
    tr.dataset.member = m.id;
    if (m.id === flash) tr.className = "flash";
    // The buttons wrap in a div: a flex cell would stop being a table cell to screen readers.
    const actions = el("div");
    for (const action of ACTIONS) {
      const b = el("button", `act ${action}`, ACTION_LABEL[action]);
      b.type = "button";
      b.dataset.action = action;
      b.setAttribute("aria-label", `${ACTION_LABEL[action]} ${m.id}`);
      actions.append(b);
    }
    // The id opens the connection's details (so does a click anywhere else on the row).
    const open = el("button", "link member-id", m.id);
    open.type = "button";
    open.dataset.details = "";
    open.setAttribute("aria-haspopup", "dialog");
    open.setAttribute("aria-label", `Details of ${m.id}`);
    const id = el("td");
    id.append(open, el("span", "edge", `edge ${edgeOf(m.id)}`));
    const cell = el("td", "actions");
    cell.append(actions);
    tr.append(id, el("td", "", m.userId || "—"), el("td", "profile", m.data ? valueText(m.data) : "—"), cell);
    return tr;
  });
  if (sorted.length > rows.length) {
    const td = el(
      "td",
      "more",
      `${sorted.length - rows.length} more not shown (the first ${MAX_MEMBER_ROWS} by id are)`,
    );
    td.colSpan = 4;
    const tr = el("tr");
    tr.append(td);
    rows.push(tr);
  }
  // Redrawing replaces the buttons: keep the keyboard where it was.
  const focused = document.activeElement;
  const keep =
    focused instanceof HTMLButtonElement && $("members").contains(focused)
      ? { id: focused.closest("tr")!.dataset.member!, button: rowButton(focused) }
      : undefined;
  $("members").replaceChildren(...rows);
  if (keep) focusInRow(keep.id, keep.button);
  $("member-count").textContent = String(members.size);
  // The list polls; the watched channel's count is known now.
  const n = $("channel-list").querySelector<HTMLElement>(`li[data-channel="${CSS.escape(selected)}"] .n`);
  if (n) n.textContent = String(members.size);
}

/**
 * Log entries and the member table are drawn once per animation frame, not
 * once per event: a burst of thousands of events costs one layout per
 * frame, and of the entries queued meanwhile only the last MAX_LOG_ENTRIES
 * are built.
 */
let pendingLog: (() => HTMLLIElement)[] = [];
let pendingMembers: { flash?: string } | undefined;
let frame = 0;

function schedule() {
  if (frame === 0) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  if (pendingMembers) {
    const { flash } = pendingMembers;
    pendingMembers = undefined;
    drawMembers(flash);
  }
  if (pendingLog.length === 0) return;
  const list = $("log");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fragment = document.createDocumentFragment();
  for (const make of pendingLog.slice(-MAX_LOG_ENTRIES)) fragment.append(make());
  pendingLog = [];
  list.append(fragment);
  while (list.childElementCount > MAX_LOG_ENTRIES) list.firstElementChild!.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function log(kind: string, label: string, body: string, from?: string, event?: string) {
  if (($("pause") as HTMLInputElement).checked && kind !== "info" && kind !== "error") return;
  const at = new Date();
  pendingLog.push(() => logEntry(at, kind, label, body, from, event));
  if (pendingLog.length > 2 * MAX_LOG_ENTRIES) pendingLog = pendingLog.slice(-MAX_LOG_ENTRIES);
  schedule();
}

function logEntry(at: Date, kind: string, label: string, body: string, from?: string, event?: string): HTMLLIElement {
  const li = el("li", kind);
  li.dataset.kind = label;
  const time = el("time", "", at.toLocaleTimeString([], { hour12: false }));
  const text = el("span", "body");
  if (event) text.append(el("span", "ev", event));
  text.append(body);
  if (from) text.append(el("span", "from", from));
  li.append(time, el("span", "kind", label), text);
  return li;
}

// ---- member actions ----

const ACTIONS = ["unsubscribe", "disconnect"] as const;
type Action = (typeof ACTIONS)[number];
const ACTION_LABEL: Record<Action, string> = { unsubscribe: "Unsubscribe", disconnect: "Disconnect" };

/** What the confirmation dialog asks about; undefined while it is closed. */
let asking: { action: Action; member: Member; channel: string } | undefined;

/** Fills the one confirmation dialog for action on member and opens it (focus moves to its first control). */
function ask(action: Action, member: Member) {
  asking = { action, member, channel: selected };
  const dialog = $("confirm") as HTMLDialogElement;
  $("confirm-title").textContent =
    action === "disconnect" ? "Disconnect this member?" : `Unsubscribe this member from ${selected}?`;
  $("confirm-connection").textContent = member.id;
  $("confirm-user").textContent = member.userId || "— (anonymous)";
  $("confirm-channel").textContent = selected;
  $("confirm-note").textContent =
    action === "disconnect"
      ? "Closes the connection: it leaves every channel it is in, not only this one."
      : "The client is told with an unsubscribed frame; its connection stays open.";
  $("disconnect-options").hidden = action !== "disconnect";
  ($("confirm-reason") as HTMLInputElement).value = "";
  ($("confirm-reconnect") as HTMLInputElement).checked = false;
  dialog.returnValue = "";
  dialog.showModal();
}

/** Which of a row's buttons b is, as a selector: an action's, or the details'. */
function rowButton(b: HTMLButtonElement): string {
  return b.dataset.action ? `button[data-action="${b.dataset.action}"]` : "button[data-details]";
}

/** Focuses a button (rowButton) in the member's row, or the Members heading when the row is gone. */
function focusInRow(id: string, button: string) {
  const b = $("members").querySelector<HTMLButtonElement>(`tr[data-member="${CSS.escape(id)}"] ${button}`);
  (b ?? $("members-heading")).focus();
}

/** Focuses the action's button in the member's row, or the Members heading when the row is gone. */
function focusAction(id: string, action: Action) {
  focusInRow(id, `button[data-action="${action}"]`);
}

/** The dialog closed (Confirm, Cancel or Escape): focus goes back to the row, and Confirm calls the API. */
function answered() {
  const dialog = $("confirm") as HTMLDialogElement;
  const a = asking;
  asking = undefined;
  if (!a) return;
  focusAction(a.member.id, a.action);
  if (dialog.returnValue === "confirm") void act(a);
}

async function act(a: { action: Action; member: Member; channel: string }) {
  const target = { target: { case: "connectionId" as const, value: a.member.id } };
  const who = `${a.member.id}${a.member.userId ? ` (user ${a.member.userId})` : ""}`;
  try {
    if (a.action === "unsubscribe") {
      const r = await client.unsubscribe({ target, channel: a.channel });
      const text =
        r.left === 0
          ? `${who} was not in ${a.channel}: nothing to do`
          : `unsubscribed ${plural(r.left, "connection")} from ${a.channel}: ${who}`;
      actionResult("ok", a.action, text);
    } else {
      const reconnect = ($("confirm-reconnect") as HTMLInputElement).checked;
      const reason = ($("confirm-reason") as HTMLInputElement).value.trim();
      const r = await client.disconnect({ target, reconnect, reason });
      const code = reconnect ? CloseCode.Disconnected : CloseCode.DisconnectedFinal;
      actionResult("ok", a.action, `disconnected ${plural(r.connections, "connection")}: ${who}, close code ${code}`);
    }
  } catch (err) {
    actionResult("error", a.action, `${a.action} ${who} failed: ${describe(err)}`);
  }
}

/** Shows what an action did under the members (announced: role=status) and in the event log. */
function actionResult(state: "ok" | "error", action: Action, text: string) {
  const result = $("action-result");
  result.className = `result ${state}`;
  result.textContent = text;
  log(state === "ok" ? "info" : "error", action, text);
}

// ---- sending ----

async function send(e: SubmitEvent) {
  e.preventDefault();
  const result = $("result");
  const event = ($("event") as HTMLInputElement).value.trim();
  const target = document.querySelector<HTMLInputElement>("input[name=target]:checked")!.value;
  let value: Value;
  try {
    value = fromJsonString(ValueSchema, ($("payload") as HTMLTextAreaElement).value || "null");
  } catch (err) {
    result.className = "result error";
    result.textContent = `The payload is not valid JSON: ${(err as Error).message}`;
    return;
  }
  if (target === "channel" && !selected) {
    result.className = "result error";
    result.textContent = "Pick a channel first, or choose Broadcast.";
    return;
  }
  const button = document.querySelector<HTMLButtonElement>("#send-form button[type=submit]")!;
  button.disabled = true;
  try {
    const payload = { case: "json" as const, value };
    const res =
      target === "broadcast"
        ? await client.broadcast({ event, payload })
        : await client.send({ channel: selected, event, payload });
    result.className = "result ok";
    result.textContent = `${target === "broadcast" ? "Broadcast" : `Sent to ${selected}`}: id ${res.messageId}, handed to ${res.edges} edge${res.edges === 1 ? "" : "s"}`;
    // Broadcasts are not channel events, so the stream will not show them.
    if (target === "broadcast" && selected)
      log("info", "broadcast", valueText(value), `to everyone, ${res.edges} edge${res.edges === 1 ? "" : "s"}`, event);
  } catch (err) {
    result.className = "result error";
    result.textContent = describe(err);
  } finally {
    button.disabled = false;
  }
}

// ---- wiring ----

function start() {
  $("origin").textContent = location.host;
  $("channel-list").addEventListener("click", (e) => {
    const li = (e.target as HTMLElement).closest<HTMLLIElement>("li[data-channel]");
    if (li) select(li.dataset.channel!);
  });
  $("channel-list").addEventListener("keydown", onListKey);
  $("filter").addEventListener("input", () => {
    pageTokens = [""];
    void refreshChannels();
  });
  $("more").addEventListener("click", () => {
    pageTokens.push($("more").dataset.token!);
    void refreshChannels();
  });
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("open-name") as HTMLInputElement;
    select(input.value.trim());
    input.value = "";
  });
  $("clear").addEventListener("click", () => {
    pendingLog = [];
    $("log").replaceChildren();
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("api-key") as HTMLInputElement;
    if (input.value) sessionStorage.setItem(API_KEY_STORAGE, input.value.trim());
    else sessionStorage.removeItem(API_KEY_STORAGE);
    input.value = "";
    $("key-form").hidden = true;
    // Their calls in flight were made with the old key: their failures must not ask for a key again.
    rewatchActivity();
    rewatchOverview();
    void refreshChannels();
    void refreshNodes();
    const channel = selected;
    selected = "";
    if (channel) select(channel);
  });
  const showDetails = connectionDetails({
    client,
    describe,
    closed: (id) => focusInRow(id, "button[data-details]"),
  });
  $("members").addEventListener("click", (e) => {
    const target = e.target as HTMLElement;
    const b = target.closest<HTMLButtonElement>("button[data-action]");
    const member = members.get(target.closest("tr")?.dataset.member ?? "");
    if (!member) return;
    if (b) ask(b.dataset.action as Action, member);
    // Anywhere else on the row: the connection's details (its id's button, from the keyboard too),
    // except a click that ends selecting text in the row.
    else if (target.closest("button[data-details]") || window.getSelection()?.type !== "Range") showDetails(member.id);
  });
  $("confirm-cancel").addEventListener("click", () => ($("confirm") as HTMLDialogElement).close(""));
  $("confirm").addEventListener("close", answered);
  $("send-form").addEventListener("submit", (e) => void send(e as SubmitEvent));
  $("send-form").addEventListener("input", () => {
    $("result").className = "result";
    $("result").textContent = "";
  });
  void refreshChannels();
  setInterval(() => void refreshChannels(), CHANNEL_POLL_MS);
  void pollNodes();
  const rewatchOverview = startOverview({ client, describe, retryMs: REWATCH_DELAY_MS });
  const rewatchActivity = startActivity({ client, describe, retryMs: REWATCH_DELAY_MS });
  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash) select(fromHash);
}

// toJson is re-exported for the console: `sb.toJson(...)` while debugging.
(globalThis as Record<string, unknown>).sb = { client, toJson };
start();
