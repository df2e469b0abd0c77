/**
 * The Idempotency seam: how a publish with an idempotency key is made safe
 * to retry. A request that carries a key (SendRequest.idempotency_key,
 * BroadcastRequest.idempotency_key) claims the key before its event is
 * handed to the broker; a retry of it (the same key, the same request) then
 * finds the first attempt's result and is answered with it instead of being
 * delivered again.
 *
 * Implementations of the store: idempotency-memory.ts (the API process
 * remembers: embedded mode, one API node) and src/redis/idempotency-redis.ts
 * (Redis remembers, so that a retry on another API node is deduplicated too).
 * `Idempotency` below is the part both share: the rules of a key, the
 * fingerprint of a request, and the claim loop (waiting for an attempt in
 * flight, a failed attempt leaving no trace).
 *
 * Contract, for one key in one scope, within the window:
 * - at most one attempt delivers: a retry that comes while the first is in
 *   flight waits for its outcome; one that comes after its success gets its
 *   result (the same message id and edges count) and `duplicate`;
 * - an attempt that failed (its publish rejected) releases the key: the next
 *   attempt is tried afresh, as if the first had never been;
 * - the same key with a different request (another channel, event name,
 *   payload, or a Broadcast for a Send) is FAILED_PRECONDITION, never
 *   delivered and never answered with the other request's result;
 * - when the store cannot take another key, the request is refused
 *   (RESOURCE_EXHAUSTED, or UNAVAILABLE when Redis is away) and not
 *   delivered: the store never forgets a key early to make room, so it
 *   never delivers twice silently.
 * Not guaranteed: deduplication once the window has passed (a retry then is
 * a new event), across API keys (each has its own keys), or, in Redis mode,
 * when the node that claimed a key dies between publishing and recording
 * the result: the claim then expires after IDEMPOTENCY_CLAIM_TTL_MS and a
 * retry after that is delivered again.
 */
import { createHash } from "node:crypto";
import { Code, RealtimeError } from "../protocol/errors.js";
import { varintSize } from "../wire/varint.js";

/** Longest idempotency key, in characters (a UUID is 36). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
/**
 * How long a successful publish is remembered by its key, from its success:
 * retries within it are answered with its result. 5 minutes covers a
 * client's retries with backoff through a deploy or a failover.
 */
export const DEFAULT_IDEMPOTENCY_WINDOW_MS = 5 * 60_000;
export const MIN_IDEMPOTENCY_WINDOW_MS = 100;
export const MAX_IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60_000;
/**
 * Most keys the API process remembers at once (in flight and done within
 * the window), in embedded mode: about 300 bytes each with a UUID key
 * (measured), so the default holds at most about 60 MB; it sustains 660
 * keyed publishes per second with the default window. Past it new keys are
 * refused (RESOURCE_EXHAUSTED).
 */
export const DEFAULT_IDEMPOTENCY_MAX_KEYS = 200_000;
/**
 * How long a claim in flight holds its key in Redis when the node that made
 * it does not finish (it died): then another attempt may claim it. Longer
 * than a publish can take (each of its Redis commands times out after 3 s).
 */
export const IDEMPOTENCY_CLAIM_TTL_MS = 15_000;
/** A retry waiting for an attempt in flight on another node looks again after this, doubling. */
export const IDEMPOTENCY_POLL_INITIAL_MS = 5;
/** ...up to this. */
export const IDEMPOTENCY_POLL_MAX_MS = 100;

/** What a successful publish answered, and a retry of it is answered with. */
export interface IdempotentResult {
  readonly messageId: string;
  readonly edges: number;
}

/** What the store knows of a key when a request claims it. */
export type ClaimState =
  /** The key was free: the caller holds it (in flight) with this token. */
  | { readonly state: "claimed"; readonly token: string }
  /** Another attempt holds it, in flight, for a request of this fingerprint. */
  | { readonly state: "pending"; readonly fingerprint: string }
  /** An attempt with this fingerprint succeeded within the window, with this result. */
  | { readonly state: "done"; readonly fingerprint: string; readonly result: IdempotentResult };

/**
 * Where keys are remembered. `key` is already scoped (see Idempotency) and
 * valid; the store may use it in a name as it is.
 */
export interface IdempotencyStore {
  /**
   * Claims key for a request of `fingerprint` if it is free (never held,
   * released, or its window passed), atomically: of two concurrent claims,
   * one gets "claimed" and the other sees it. Rejects with
   * RealtimeError(ResourceExhausted) when the store is full, or
   * RealtimeError(Unavailable) when it cannot be reached.
   */
  claim(key: string, fingerprint: string): Promise<ClaimState>;
  /**
   * The claimed attempt succeeded: remember its result for the window from
   * now. May reject (Redis away): the claim then stays until it expires.
   */
  complete(key: string, token: string, fingerprint: string, result: IdempotentResult): Promise<void>;
  /** The claimed attempt failed: forget the key (only if this token still holds it). */
  release(key: string, token: string, fingerprint: string): Promise<void>;
}

/** A key this caller holds: finish it with complete or release, exactly once. */
export interface HeldKey {
  readonly duplicate: false;
  /** The publish succeeded with result: remember it. Never throws. */
  complete(result: IdempotentResult): void;
  /** The publish failed: forget the key. Never throws. */
  release(): void;
}

/** A key whose first attempt succeeded: answer with its result. */
export interface DoneKey {
  readonly duplicate: true;
  readonly result: IdempotentResult;
}

/** Characters a key may use: those of a channel name. */
const KEY_RE = /^[A-Za-z0-9_\-.:@/=+]+$/;

/**
 * Throws INVALID_ARGUMENT unless key is a valid idempotency key (1 to
 * MAX_IDEMPOTENCY_KEY_LENGTH characters of A-Z a-z 0-9 _ - . : @ / = +).
 * "" means no key: check it before calling.
 */
export function checkIdempotencyKey(key: string, field = "idempotency_key"): void {
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} is ${key.length} characters long; the limit is ${MAX_IDEMPOTENCY_KEY_LENGTH}`,
    );
  }
  if (!KEY_RE.test(key)) {
    throw new RealtimeError(
      Code.InvalidArgument,
      `${field} has a character outside A-Z a-z 0-9 _ - . : @ / = + (use e.g. a UUID)`,
    );
  }
}

/**
 * The fingerprint of a request, to tell a retry from another request under
 * the same key: 128 bits of the SHA-256 of its event as encoded without its
 * id (core/publication.ts: channel, event name and payload, in protobuf
 * binary; the id is field 6, written last, a one-byte-length ASCII string).
 * A Broadcast has no channel, so it never matches a Send. A retry must send
 * the same payload bytes: a JSON object whose keys come in another order is
 * another request.
 */
export function fingerprintOf(event: Uint8Array, id: string): string {
  const idField = id === "" ? 0 : 1 + varintSize(id.length) + id.length;
  return createHash("sha256")
    .update(event.subarray(0, event.length - idField))
    .digest("base64url")
    .slice(0, 22);
}

export interface IdempotencyOptions {
  store: IdempotencyStore;
  /** What complete and release could not do (Redis away); for logs. */
  onError?: (err: unknown, context: string) => void;
  /** Waits ms (tests make it instant); default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

/** An attempt of this process that holds or reads a key: what others of this process wait for. */
interface Local {
  readonly fingerprint: string;
  readonly settled: Promise<void>;
  /** Set when the attempt succeeded (or read a success): waiters take it from here. */
  done?: IdempotentResult;
}

/**
 * The claim loop over a store, for one process. Attempts of this process on
 * one key wait for each other here (no store round trip); attempts on other
 * nodes are seen through the store (Redis), where a waiter looks again
 * every IDEMPOTENCY_POLL_INITIAL_MS doubling to IDEMPOTENCY_POLL_MAX_MS.
 */
export class Idempotency {
  private readonly store: IdempotencyStore;
  private readonly onError: (err: unknown, context: string) => void;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly local = new Map<string, Local>();

  constructor(options: IdempotencyOptions) {
    this.store = options.store;
    this.onError = options.onError ?? (() => {});
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Claims `key` (valid, not "") in `scope` (the caller's API key
   * fingerprint, "" without API keys) for a request of `fingerprint`.
   * Resolves with the key held (publish, then complete or release it) or
   * with the first attempt's result, after waiting for an attempt in flight.
   * Rejects with FAILED_PRECONDITION when the key belongs to a different
   * request, with the store's error (RESOURCE_EXHAUSTED, UNAVAILABLE), or
   * with signal's reason once it aborts while waiting.
   */
  async claim(scope: string, key: string, fingerprint: string, signal?: AbortSignal): Promise<HeldKey | DoneKey> {
    // The scope is "" or 8 hex digits: never a ":", so the pair is unambiguous.
    const scoped = `${scope}:${key}`;
    let pause = IDEMPOTENCY_POLL_INITIAL_MS;
    for (;;) {
      signal?.throwIfAborted();
      const other = this.local.get(scoped);
      if (other) {
        if (other.fingerprint !== fingerprint) throw keyMismatch(key);
        await other.settled;
        if (other.done) return { duplicate: true, result: other.done };
        continue;
      }
      let settle!: () => void;
      const mine: Local = { fingerprint, settled: new Promise<void>((resolve) => (settle = resolve)) };
      this.local.set(scoped, mine);
      const finish = (done?: IdempotentResult) => {
        if (done) mine.done = done;
        this.local.delete(scoped);
        settle();
      };
      let state: ClaimState;
      try {
        state = await this.store.claim(scoped, fingerprint);
      } catch (err) {
        finish();
        throw err;
      }
      if (state.state === "claimed") return this.held(scoped, fingerprint, state.token, finish);
      if (state.fingerprint !== fingerprint) {
        finish();
        throw keyMismatch(key);
      }
      if (state.state === "done") {
        finish(state.result);
        return { duplicate: true, result: state.result };
      }
      // In flight on another node: look again shortly.
      finish();
      await this.sleep(pause);
      pause = Math.min(pause * 2, IDEMPOTENCY_POLL_MAX_MS);
    }
  }

  private held(scoped: string, fingerprint: string, token: string, finish: (done?: IdempotentResult) => void): HeldKey {
    let finished = false;
    return {
      duplicate: false,
      complete: (result) => {
        if (finished) return;
        finished = true;
        // Waiters of this process take the result at once; the store's copy
        // serves the others (and later retries).
        finish(result);
        this.store.complete(scoped, token, fingerprint, result).catch((err: unknown) => this.onError(err, "complete"));
      },
      release: () => {
        if (finished) return;
        finished = true;
        // Forget it in the store first, so that a waiter retrying finds it free.
        this.store.release(scoped, token, fingerprint).then(
          () => finish(),
          (err: unknown) => {
            this.onError(err, "release");
            finish();
          },
        );
      },
    };
  }
}

/**
 * The error of a key used by a different request: FAILED_PRECONDITION, not
 * ALREADY_EXISTS. The request cannot succeed as sent and was not delivered
 * (it must not be retried with this key: the caller has a bug, or two of
 * its events share a key); ALREADY_EXISTS would read as "your event exists
 * already", which is true only of a retry, and a caller treating it as
 * success would lose this event.
 */
export function keyMismatch(key: string, inBatch = false): RealtimeError {
  const where = inBatch
    ? "is also the key of an earlier request of this batch with a different event; nothing was sent"
    : "was used for a different request (another channel, event name, payload or method) within the idempotency window; this one was not delivered";
  return new RealtimeError(
    Code.FailedPrecondition,
    `idempotency_key ${JSON.stringify(key)} ${where}: use a new key for a new event`,
  );
}
