/**
 * The one clock every bench process stamps and reads latencies with.
 *
 * `process.hrtime` counts from an arbitrary point in each process, so a
 * timestamp taken by the publisher means nothing to a client process.
 * `performance.timeOrigin + performance.now()` is wall-clock based at process
 * start and monotonic after it, hence comparable across processes of one
 * machine to within a few microseconds (processes must not live across a
 * clock step; the bench runs are minutes long).
 */

/** Microseconds since the Unix epoch, with sub-microsecond fraction. */
export function nowMicros(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/** Resolves after ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
