/**
 * How the page follows a server stream (the overview's WatchStats, the
 * activity log's WatchLifecycle): one state element says "connecting…" (or
 * the caller's waiting text), "● live" from the first message, or
 * "disconnected since …" with the error once it fails, and the view is
 * marked stale meanwhile; the stream is opened again every retryMs, until
 * the signal aborts (a failure then is not reported: the caller ended it).
 */
import { clock, markStale, setLiveState } from "./dom.js";

export interface Follow<T> {
  /** Shows the stream's state (setLiveState). */
  readonly state: HTMLElement;
  /** What the stream feeds: marked stale while it is down. */
  readonly view: HTMLElement;
  /** The error as the page says it. */
  readonly describe: (err: unknown) => string;
  /** Wait before opening it again after it failed. */
  readonly retryMs: number;
  /** Opens the stream (again). */
  readonly open: (signal: AbortSignal) => AsyncIterable<T>;
  /** Each message, first = the first of its stream; after the state says live. */
  readonly message: (m: T, first: boolean) => void;
  /** Said from the opening until the first message; default "connecting…". */
  readonly waiting?: string;
  /** After the state says the stream failed (the overview draws a gap). */
  readonly failed?: () => void;
  /** A failure that opening again cannot mend: the state's text then, and the stream is not opened again. */
  readonly final?: (err: unknown) => string | undefined;
}

export async function follow<T>(signal: AbortSignal, f: Follow<T>): Promise<void> {
  let lostSince: Date | undefined;
  while (!signal.aborted) {
    if (lostSince === undefined) setLiveState(f.state, "connecting", f.waiting ?? "connecting…");
    try {
      let first = true;
      for await (const m of f.open(signal)) {
        if (lostSince !== undefined || f.state.dataset.state !== "live") {
          lostSince = undefined;
          setLiveState(f.state, "live", "● live");
          markStale(f.view, false);
        }
        f.message(m, first);
        first = false;
      }
      throw new Error("the stream ended");
    } catch (err) {
      if (signal.aborted) return;
      const final = f.final?.(err);
      if (final !== undefined) {
        setLiveState(f.state, "error", final);
        return;
      }
      lostSince ??= new Date();
      setLiveState(f.state, "error", `disconnected since ${clock(lostSince)}: ${f.describe(err)}`);
      markStale(f.view, true);
      f.failed?.();
    }
    await new Promise((r) => setTimeout(r, f.retryMs));
  }
}
