/**
 * A token bucket: up to `burst` actions at once, refilled at `perSecond`.
 * Used per connection for the rate of client commands and for the error
 * budget (edge.ts).
 *
 * One TokenBucket is the policy, shared by every connection; each
 * connection's state is a single number, the time (ms) at which its bucket
 * would be full again (the "theoretical arrival time" of GCRA, the generic
 * cell rate algorithm). A fresh bucket is the state 0 (full).
 * This is exactly the classic bucket — tokens = burst − (max(state, now) −
 * now) / interval, an action needs one token and spends it — without an
 * object, or a timer, per connection: it refills lazily from the clock.
 */
export class TokenBucket {
  /** Milliseconds one token takes to refill. */
  private readonly interval: number;
  /** How far ahead of now a bucket's state may run: burst − 1 tokens spent. */
  private readonly tolerance: number;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.interval = 1000 / perSecond;
    // A hair of slack so that float rounding of repeated additions never
    // refuses the last token of a burst.
    this.tolerance = (burst - 1) * this.interval + this.interval * 1e-9;
  }

  /**
   * Takes one token from the bucket whose state is `state` (0: full).
   * Returns the new state, or undefined when the bucket is empty (the action
   * is over the rate; the state is then unchanged).
   */
  take(state: number): number | undefined {
    const now = this.now();
    const base = state > now ? state : now;
    if (base - now > this.tolerance) return undefined;
    return base + this.interval;
  }
}
