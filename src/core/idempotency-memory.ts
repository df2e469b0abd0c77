/**
 * The idempotency store of one API process (embedded mode): keys in a Map,
 * bounded by count.
 *
 * Entries are kept in the order they will expire: a claim is added at the
 * end, and its completion moves it to the end again with its deadline (now
 * + window, the same window for all), so expired entries are always at the
 * front (after the claims in flight, which have no deadline) and each
 * claim removes them from there (amortised O(1); no timer). A claim in
 * flight stays until completed or released (a publish always settles).
 *
 * When maxKeys entries are held (in flight or within their window), a claim
 * of a new key is refused with RESOURCE_EXHAUSTED; nothing is evicted
 * early, since forgetting a key within its window would let its retry be
 * delivered twice. Keys already held are still answered.
 */
import { Code, RealtimeError } from "../protocol/errors.js";
import type { ClaimState, IdempotencyStore, IdempotentResult } from "./idempotency.js";

export interface MemoryIdempotencyOptions {
  windowMs: number;
  maxKeys: number;
  /** The clock, in ms (tests move it); default performance.now. */
  now?: () => number;
}

interface Entry {
  readonly fingerprint: string;
  /** The claim's token while in flight; "" once done. */
  readonly token: string;
  readonly result?: IdempotentResult;
  /** When a done entry expires (now() units); Infinity while in flight. */
  readonly expires: number;
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries = new Map<string, Entry>();
  private readonly windowMs: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  private tokens = 0;

  constructor(options: MemoryIdempotencyOptions) {
    this.windowMs = options.windowMs;
    this.maxKeys = options.maxKeys;
    this.now = options.now ?? (() => performance.now());
  }

  /** Keys held now (in flight or within their window), expired ones not yet dropped included. */
  get size(): number {
    return this.entries.size;
  }

  claim(key: string, fingerprint: string): Promise<ClaimState> {
    const now = this.now();
    this.dropExpired(now);
    const entry = this.entries.get(key);
    if (entry && entry.expires > now) {
      return Promise.resolve(
        entry.result
          ? { state: "done", fingerprint: entry.fingerprint, result: entry.result }
          : { state: "pending", fingerprint: entry.fingerprint },
      );
    }
    if (entry) this.entries.delete(key);
    if (this.entries.size >= this.maxKeys) {
      return Promise.reject(
        new RealtimeError(
          Code.ResourceExhausted,
          `the API remembers ${this.maxKeys} idempotency keys already (REALTIME_IDEMPOTENCY_MAX_KEYS), each for the window after its success; this request was not delivered: retry later, or without a key`,
        ),
      );
    }
    const token = String(++this.tokens);
    this.entries.set(key, { fingerprint, token, expires: Infinity });
    return Promise.resolve({ state: "claimed", token });
  }

  complete(key: string, token: string, fingerprint: string, result: IdempotentResult): Promise<void> {
    const entry = this.entries.get(key);
    if (entry?.token === token) {
      // Moved to the end: the entries stay in the order of their deadlines.
      this.entries.delete(key);
      this.entries.set(key, { fingerprint, token: "", result, expires: this.now() + this.windowMs });
    }
    return Promise.resolve();
  }

  release(key: string, token: string): Promise<void> {
    if (this.entries.get(key)?.token === token) this.entries.delete(key);
    return Promise.resolve();
  }

  /**
   * Drops the expired entries at the front, passing over claims in flight
   * (as many as publishes in flight), up to the first done entry that has
   * not expired.
   */
  private dropExpired(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.result === undefined) continue;
      if (entry.expires > now) return;
      this.entries.delete(key);
    }
  }
}
