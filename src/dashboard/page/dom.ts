/**
 * The few DOM helpers every part of the dashboard uses: finding and making
 * elements, times and durations, and showing a live state or a stale one
 * the same way everywhere (main.ts, overview.ts, connection-details.ts).
 */

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export const el = <K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

/** A time of day as the page shows it: "14:05:09". */
export const clock = (d: Date) => d.toLocaleTimeString([], { hour12: false });

/** A duration as its two largest units: "42 s", "3 m 5 s", "2 h 10 m", "4 d 1 h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} m`;
  if (m > 0) return `${m} m ${s % 60} s`;
  return `${s} s`;
}

/** Marks what an element shows as possibly out of date (dimmed, and said so to screen readers). */
export function markStale(e: HTMLElement, stale: boolean) {
  e.dataset.stale = String(stale);
  if (stale) e.setAttribute("aria-description", "may be out of date: the API is not answering");
  else e.removeAttribute("aria-description");
}

/** Shows a stream's or a poll's state ("live", "error", "connecting") and its text. */
export function setLiveState(s: HTMLElement, state: string, text: string) {
  s.dataset.state = state;
  s.textContent = text;
}
