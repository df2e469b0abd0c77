/**
 * Latency histograms: one per client process and phase, shipped to the
 * coordinator compressed (HdrHistogram's standard base64 encoding) and merged
 * there, so percentiles are exact over every delivery of every process and
 * never an average of per-process percentiles.
 *
 * Values are microseconds. The pure-JS build is used: the WASM build needs
 * explicit initialisation and explicit destroy(), and recording is not the
 * bottleneck next to JSON parsing of the frame.
 */
import * as hdr from "hdr-histogram-js";

export type Histogram = hdr.Histogram;

/** Lowest recordable latency: 1 µs (anything faster is recorded as 1). */
export const LOWEST_MICROS = 1;
/** Highest recordable latency: 120 s (anything slower is recorded as 120 s). */
export const HIGHEST_MICROS = 120_000_000;
/** Three significant digits: a 0.1% error at every magnitude. */
export const SIGNIFICANT_DIGITS = 3;

export function createHistogram(): Histogram {
  return hdr.build({
    bitBucketSize: 32,
    autoResize: false,
    lowestDiscernibleValue: LOWEST_MICROS,
    highestTrackableValue: HIGHEST_MICROS,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
    useWebAssembly: false,
  });
}

/** Records micros clamped into the trackable range. */
export function recordMicros(h: Histogram, micros: number): void {
  const v = micros < LOWEST_MICROS ? LOWEST_MICROS : micros > HIGHEST_MICROS ? HIGHEST_MICROS : Math.round(micros);
  h.recordValue(v);
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

/** Merges encoded histograms (empty strings are skipped) into a new one. */
export function mergeEncoded(encoded: readonly string[]): Histogram {
  const merged = createHistogram();
  for (const e of encoded) {
    if (e) merged.add(hdr.decodeFromCompressedBase64(e, 32, false));
  }
  return merged;
}

/** Percentiles in milliseconds; all zero when nothing was recorded. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: 0, p99: 0, p999: 0, max: 0, mean: 0 };
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}
