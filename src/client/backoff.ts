/**
 * Reconnect delays: exponential backoff with "full jitter" (AWS Architecture
 * Blog, "Exponential Backoff And Jitter", 2015): the delay before attempt n
 * is uniform in [0, min(maxDelayMs, initialDelayMs * 2^n)). Full jitter
 * spreads the clients of an edge that went away, so that they do not return
 * to its replacement at the same instant.
 */

/** The first attempt's delay ceiling, in milliseconds. */
export const DEFAULT_RECONNECT_INITIAL_DELAY_MS = 500;
/** No delay is longer than this, in milliseconds. */
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 30_000;

/** How the SDK paces its reconnect attempts. */
export interface BackoffOptions {
  /** The ceiling of the first delay, in ms; doubles each attempt. Default 500. */
  initialDelayMs: number;
  /** The largest ceiling, in ms. Default 30 000. */
  maxDelayMs: number;
}

/**
 * Returns the delay before reconnect attempt `attempt` (0 for the first), in
 * whole milliseconds, in [0, min(maxDelayMs, initialDelayMs * 2^attempt)).
 * `random` must return values in [0, 1), like Math.random; tests pass their own.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  // 2^attempt overflows to Infinity past attempt 1023, and min() caps it.
  const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}

/** Throws a TypeError naming the option unless options make sense. */
export function checkBackoffOptions(options: BackoffOptions): void {
  if (!Number.isFinite(options.initialDelayMs) || options.initialDelayMs < 0) {
    throw new TypeError(`reconnect.initialDelayMs must be a finite number >= 0, got ${options.initialDelayMs}`);
  }
  if (!Number.isFinite(options.maxDelayMs) || options.maxDelayMs < options.initialDelayMs) {
    throw new TypeError(`reconnect.maxDelayMs must be a finite number >= initialDelayMs, got ${options.maxDelayMs}`);
  }
}
