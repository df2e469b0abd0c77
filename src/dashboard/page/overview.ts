/**
 * The overview: three small live charts of the whole service over the last
 * OVERVIEW_WINDOW_S seconds (connections; messages in and deliveries per
 * second; drops and disconnects per second), fed by one WatchStats stream
 * (a snapshot every STATS_INTERVAL_MS) and drawn with uPlot on canvas.
 *
 * Contract: the charts are redrawn at most once per animation frame and
 * only when a snapshot came since the last draw, so a stream never costs
 * the page more than one setData per chart per snapshot. When the stream
 * fails it is opened again every `retryMs` (as the channel watch is); the
 * charts keep what they had, marked stale, with a gap for the outage.
 */
import type { Client } from "@connectrpc/connect";
import uPlot from "uplot";
import type { Realtime, WatchStatsResponse } from "../../../gen/realtime/v1/realtime_pb.js";
import { $, clock, el } from "./dom.js";
import { follow } from "./follow.js";

/** How much the charts show at the most. */
export const OVERVIEW_WINDOW_S = 300;
/** How much they show at the least: a page open for 10 s draws its 10 s across 30, not across 300. */
const MIN_SPAN_S = 30;
/** WatchStatsRequest.interval_ms the page asks for. */
export const STATS_INTERVAL_MS = 1000;
/** Chart height in CSS pixels (the width follows the panel). */
const CHART_HEIGHT = 120;

/** One line of a chart: its name, its colour (a custom property of style.css), and its value in a snapshot. */
interface Line {
  readonly label: string;
  readonly color: string;
  readonly value: (s: WatchStatsResponse) => number;
}

const disconnectsPerSecond = (s: WatchStatsResponse) =>
  Object.values(s.disconnectsPerSecondByReason).reduce((a, b) => a + b, 0);

/** The charts, by the id of their figure in index.html. */
const CHARTS: readonly { readonly id: string; readonly lines: readonly Line[]; readonly rate: boolean }[] = [
  {
    id: "chart-connections",
    rate: false,
    lines: [{ label: "connections", color: "--accent", value: (s) => s.connections }],
  },
  {
    id: "chart-messages",
    rate: true,
    lines: [
      { label: "in", color: "--accent", value: (s) => s.messagesInPerSecond },
      { label: "deliveries", color: "--good", value: (s) => s.deliveriesPerSecond },
    ],
  },
  {
    id: "chart-problems",
    rate: true,
    lines: [
      { label: "drops", color: "--bad", value: (s) => s.dropsPerSecond },
      { label: "disconnects", color: "--warn", value: disconnectsPerSecond },
    ],
  },
];

/** What the charts show: times in seconds, and per chart per line its values (null: a gap). */
const times: number[] = [];
const values: (number | null)[][][] = CHARTS.map((c) => c.lines.map(() => []));
/** The disconnects of each snapshot kept, by reason (rate x seconds since the one before). */
const disconnectCounts: Record<string, number>[] = [];
let plots: uPlot[] = [];
let last: WatchStatsResponse | undefined;
let dirty = false;
let frame = 0;

export interface OverviewDeps {
  readonly client: Client<typeof Realtime>;
  /** The error as the page says it (and what it does about it: main.ts asks for an API key). */
  readonly describe: (err: unknown) => string;
  /** Wait before watching again after the stream failed. */
  readonly retryMs: number;
}

/** Ends the stream being read (watchLoop opens another). */
let stop: AbortController | undefined;

/**
 * Builds the charts and starts the stream; runs for the life of the page.
 * Returns what opens the stream again now (the API key changed: the call in
 * flight with the old key is ended, not reported).
 */
export function startOverview(deps: OverviewDeps): () => void {
  build();
  // The colours come from the theme: follow it when it changes.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", build);
  new ResizeObserver(() => resize()).observe($("overview"));
  void watchLoop(deps);
  return () => void watchLoop(deps);
}

async function watchLoop({ client, describe, retryMs }: OverviewDeps) {
  stop?.abort();
  const controller = new AbortController();
  stop = controller;
  await follow(controller.signal, {
    state: $("stats-state"),
    view: $("overview"),
    describe,
    retryMs,
    open: (signal) => client.watchStats({ intervalMs: STATS_INTERVAL_MS }, { signal }),
    // The first snapshot of a stream has no rates yet: a gap, not a zero.
    message: add,
    failed: gap,
  });
}

/** Adds one snapshot; rates of the first of a stream are left out (none yet). */
function add(s: WatchStatsResponse, first: boolean) {
  // uPlot wants times in order: the API's clock, kept from going back (a gap's time is a guess).
  const t = Math.max(Number(s.atUnixMs) / 1000, (times[times.length - 1] ?? 0) + 0.001);
  const seconds = times.length > 0 ? t - times[times.length - 1]! : 0;
  times.push(t);
  CHARTS.forEach((c, i) => c.lines.forEach((l, j) => values[i]![j]!.push(first && c.rate ? null : l.value(s))));
  const counts: Record<string, number> = {};
  if (!first)
    for (const [reason, rate] of Object.entries(s.disconnectsPerSecondByReason)) counts[reason] = rate * seconds;
  disconnectCounts.push(counts);
  last = s;
  trim(t);
  changed();
}

/** A break in every line (the stream is down). */
function gap() {
  if (times.length === 0 || values[0]![0]![values[0]![0]!.length - 1] === null) return;
  // On the API's clock, as the snapshots' times are: one interval after the last.
  const t = times[times.length - 1]! + STATS_INTERVAL_MS / 1000;
  times.push(t);
  for (const chart of values) for (const line of chart) line.push(null);
  disconnectCounts.push({});
  trim(t);
  changed();
}

/** Forgets what is older than the window (one point before it, so that the lines reach the edge). */
function trim(now: number) {
  let n = 0;
  while (n + 1 < times.length && times[n + 1]! < now - OVERVIEW_WINDOW_S) n++;
  if (n === 0) return;
  times.splice(0, n);
  disconnectCounts.splice(0, n);
  for (const chart of values) for (const line of chart) line.splice(0, n);
}

function changed() {
  dirty = true;
  if (frame === 0) frame = requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  if (!dirty) return;
  dirty = false;
  // uPlot spans a lone time on its own terms, not xRange's: the charts start at the second snapshot.
  if (times.length >= 2) plots.forEach((p, i) => p.setData([times, ...values[i]!] as uPlot.AlignedData));
  const overview = $("overview");
  if (!last) return;
  const peak = Math.max(0, ...values[1]![1]!.map((v) => v ?? 0));
  // For tests and scripts: the last snapshot's sums and the peak deliveries shown.
  overview.dataset.connections = String(last.connections);
  overview.dataset.deliveriesPerSecond = String(last.deliveriesPerSecond);
  overview.dataset.deliveriesPeak = String(peak);
  overview.dataset.at = String(last.atUnixMs);
  CHARTS.forEach((c, i) => {
    const now = c.lines.map((l, j) => {
      const v = values[i]![j]![values[i]![j]!.length - 1];
      const text = v == null ? "–" : c.rate ? v.toFixed(1) : String(v);
      return el("span", `key ${l.label}`, c.lines.length > 1 ? `${l.label} ${text}` : text);
    });
    // A space between the values, so that they read apart (the gap itself is CSS).
    $(`${c.id}-now`).replaceChildren(...now.flatMap((e, k) => (k === 0 ? [e] : [" ", e])));
  });
  const byReason: Record<string, number> = {};
  for (const counts of disconnectCounts)
    for (const [reason, n] of Object.entries(counts)) byReason[reason] = (byReason[reason] ?? 0) + n;
  const reasons = Object.entries(byReason)
    .filter(([, n]) => Math.round(n) > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${reason} ${Math.round(n)}`);
  $("disconnect-reasons").textContent =
    reasons.length === 0
      ? "No disconnects in the last 5 minutes."
      : `Disconnects in the last 5 minutes: ${reasons.join(", ")}`;
}

/** (Re)creates the charts with the theme's colours, keeping their data. */
function build() {
  for (const p of plots) p.destroy();
  const css = getComputedStyle(document.documentElement);
  const color = (name: string) => css.getPropertyValue(name).trim();
  const axis: uPlot.Axis = {
    stroke: color("--muted"),
    grid: { stroke: color("--line"), width: 1 },
    ticks: { stroke: color("--line"), width: 1 },
    font: "11px system-ui, sans-serif",
  };
  plots = CHARTS.map((c, i) => {
    const host = $(c.id).querySelector<HTMLElement>(".plot")!;
    const opts: uPlot.Options = {
      width: widthOf(host),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { show: false },
      scales: {
        // Always the whole window, ending at the newest snapshot.
        x: { time: true, range: (_u, min, max) => xRange(min, max) },
        y: { range: (_u, _min, max) => [0, Math.max(c.rate ? 1 : 5, max * 1.15)] },
      },
      axes: [
        { ...axis, space: 70, values: (_u, splits) => splits.map((t) => clock(new Date(t * 1000))) },
        // Connections are whole: no 2.5 on their axis.
        {
          ...axis,
          size: 42,
          space: 24,
          ...(c.rate ? {} : { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 1e4, 1e5, 1e6] }),
        },
      ],
      series: [
        {},
        ...c.lines.map((l) => ({
          label: l.label,
          stroke: color(l.color),
          width: 1.5,
          // A line needs two values: the first second of a stream (or after an outage) shows its dots.
          points: { show: (_u: uPlot, si: number) => values[i]![si - 1]!.filter((v) => v !== null).length < 3 },
        })),
      ],
    };
    const plot = new uPlot(opts, (times.length >= 2 ? [times, ...values[i]!] : [[]]) as uPlot.AlignedData, host);
    // The figure's caption and its value say what the canvas shows.
    plot.root.setAttribute("aria-hidden", "true");
    return plot;
  });
}

/** The times shown: up to the newest, over what there is, at least MIN_SPAN_S, at most the window. */
function xRange(min: number | null, max: number | null): uPlot.Range.MinMax {
  const end = max ?? Date.now() / 1000;
  const from = Math.max(end - OVERVIEW_WINDOW_S, Math.min(min ?? end, end - MIN_SPAN_S));
  return [from, end];
}

function resize() {
  for (const p of plots) p.setSize({ width: widthOf(p.root.parentElement!), height: CHART_HEIGHT });
}

const widthOf = (host: HTMLElement) => Math.max(120, Math.floor(host.clientWidth));
