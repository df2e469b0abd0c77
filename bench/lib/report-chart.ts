/**
 * The chart: one panel per throughput scenario, p99 delivery latency (log)
 * against delivered rate (log), one series per system, every measured window
 * of every repetition (filled: passed, hollow: failed), and the p99 limit as
 * a dashed line. Plain SVG, no library.
 */
import type { PointResult, RawResults } from "./results.js";

const PANEL_W = 520;
const PANEL_H = 330;
const HEADER_H = 46;
const MARGIN = { left: 62, right: 18, top: 44, bottom: 46 };
const COLORS: Record<string, string> = { ws: "#1f77b4", socketio: "#d62728", switchboard: "#2ca02c" };
const FALLBACK_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
/** Latencies below this are drawn at it (log axis). */
const MIN_MS = 0.1;

const f1 = (v: number) => v.toFixed(1);
const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function niceTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

function label(v: number): string {
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e3) return `${v / 1e3}k`;
  return String(v);
}

function panel(
  title: string,
  series: Map<string, PointResult[]>,
  limitMs: number,
  x0: number,
  y0: number,
  colorOf: (s: string) => string,
): string {
  const all = [...series.values()].flat();
  const xs = all.map((p) => p.deliveredPerSec).filter((v) => v > 0);
  const ys = all.map((p) => Math.max(MIN_MS, p.latency.p99));
  const xLo = 10 ** Math.floor(Math.log10(Math.min(...xs)));
  const xHi = 10 ** Math.ceil(Math.log10(Math.max(...xs)));
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...ys, limitMs)));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...ys, limitMs) * 1.01));
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const sx = (v: number) => x0 + MARGIN.left + (w * Math.log10(v / xLo)) / Math.log10(xHi / xLo);
  const sy = (v: number) => y0 + MARGIN.top + h - (h * Math.log10(Math.max(MIN_MS, v) / yLo)) / Math.log10(yHi / yLo);
  const o: string[] = [];
  o.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  o.push(`<rect x="${x0 + MARGIN.left}" y="${y0 + MARGIN.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (const t of niceTicks(xLo, xHi)) {
    o.push(
      `<line x1="${f1(sx(t))}" x2="${f1(sx(t))}" y1="${y0 + MARGIN.top}" y2="${y0 + MARGIN.top + h}" stroke="#eee"/>`,
    );
    o.push(
      `<text x="${f1(sx(t))}" y="${y0 + MARGIN.top + h + 16}" text-anchor="middle" font-size="11">${label(t)}</text>`,
    );
  }
  for (const t of niceTicks(yLo, yHi)) {
    o.push(
      `<line x1="${x0 + MARGIN.left}" x2="${x0 + MARGIN.left + w}" y1="${f1(sy(t))}" y2="${f1(sy(t))}" stroke="#eee"/>`,
    );
    o.push(
      `<text x="${x0 + MARGIN.left - 6}" y="${f1(sy(t) + 4)}" text-anchor="end" font-size="11">${label(t)}</text>`,
    );
  }
  o.push(
    `<text x="${x0 + MARGIN.left + w / 2}" y="${y0 + PANEL_H - 8}" text-anchor="middle" font-size="12">delivered / s</text>`,
  );
  o.push(
    `<text transform="translate(${x0 + 14},${y0 + MARGIN.top + h / 2}) rotate(-90)" text-anchor="middle" font-size="12">p99 latency, ms</text>`,
  );
  o.push(
    `<line x1="${x0 + MARGIN.left}" x2="${x0 + MARGIN.left + w}" y1="${f1(sy(limitMs))}" y2="${f1(sy(limitMs))}" stroke="#555" stroke-dasharray="5,4"/>`,
  );
  o.push(
    `<text x="${x0 + MARGIN.left + w - 4}" y="${f1(sy(limitMs) - 4)}" text-anchor="end" font-size="10" fill="#555">p99 limit ${limitMs} ms</text>`,
  );
  let legendX = x0 + MARGIN.left;
  for (const [system, points] of series) {
    const c = colorOf(system);
    const sorted = points.filter((p) => p.deliveredPerSec > 0).sort((a, b) => a.deliveredPerSec - b.deliveredPerSec);
    o.push(
      `<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${sorted.map((p) => `${sx(p.deliveredPerSec).toFixed(1)},${sy(p.latency.p99).toFixed(1)}`).join(" ")}"/>`,
    );
    for (const p of sorted) {
      const tip = `${system} ${p.label}: ${p.deliveredPerSec}/s delivered, p99 ${p.latency.p99} ms, ${(p.completeness * 100).toFixed(2)}% complete${p.pass ? "" : " (failed: " + p.failReasons.join("; ") + ")"}`;
      o.push(
        `<circle cx="${sx(p.deliveredPerSec).toFixed(1)}" cy="${sy(p.latency.p99).toFixed(1)}" r="3.5" stroke="${c}" stroke-width="1.5" fill="${p.pass ? c : "white"}"><title>${esc(tip)}</title></circle>`,
      );
    }
    o.push(
      `<rect x="${legendX}" y="${y0 + 28}" width="10" height="10" fill="${c}"/><text x="${legendX + 14}" y="${y0 + 37}" font-size="11">${esc(system)}</text>`,
    );
    legendX += 24 + system.length * 7;
  }
  return o.join("\n");
}

export function renderChart(raw: RawResults, limitMs: number): string {
  const palette = new Map<string, string>();
  const colorOf = (s: string) => {
    if (!palette.has(s)) palette.set(s, COLORS[s] ?? FALLBACK_COLORS[palette.size % FALLBACK_COLORS.length]!);
    return palette.get(s)!;
  };
  const panels: Array<{ title: string; series: Map<string, PointResult[]> }> = [];
  for (const sc of [...new Set(raw.runs.map((r) => r.scenario))]) {
    const series = new Map<string, PointResult[]>();
    let title = sc;
    for (const r of raw.runs.filter((x) => x.scenario === sc)) {
      title = r.title;
      const pts = [r.step, ...(r.ramp?.points ?? [])].filter((p): p is PointResult => !!p && p.latency.count > 0);
      if (pts.length) series.set(r.system, [...(series.get(r.system) ?? []), ...pts]);
    }
    if (series.size) panels.push({ title, series });
  }
  const cols = panels.length > 1 ? 2 : 1;
  const rows = Math.max(1, Math.ceil(panels.length / cols));
  const W = cols * PANEL_W;
  const H = rows * PANEL_H + HEADER_H;
  const body = panels.map((p, i) =>
    panel(p.title, p.series, limitMs, (i % cols) * PANEL_W, HEADER_H + Math.floor(i / cols) * PANEL_H, colorOf),
  );
  const heading = raw.quick ? "QUICK smoke run — not final figures" : `Benchmark ${raw.startedAt}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="20" font-size="13" font-weight="bold">${esc(heading)}</text>`,
    `<text x="8" y="38" font-size="11">p99 delivery latency against delivered rate; filled = window passed, hollow = failed</text>`,
    panels.length ? body.join("\n") : `<text x="20" y="60">no throughput windows measured</text>`,
    `</svg>`,
    "",
  ].join("\n");
}
