/**
 * The idempotency store over Redis (core/idempotency.ts), so that a retry
 * that reaches another API node is deduplicated too: one string per key,
 * `P idem:<scope>:<key>` under the prefix P (REALTIME_REDIS_PREFIX), where
 * scope is the caller's API key fingerprint ("" without API keys).
 *
 * A claim is one script: the key is read and, when absent, set to a marker
 * in flight, `p|<token>|<fingerprint>`, with PX IDEMPOTENCY_CLAIM_TTL_MS
 * (atomic: of two nodes claiming at once, one sets it and the other reads
 * it). A success replaces the marker with `d|<fingerprint>|<edges>|<message
 * id>` with PX the window; a failure deletes it; both only while the marker
 * is still the claimer's (or, for a success, gone: a claim that outlived its
 * TTL still records its result, unless another attempt holds the key by
 * then).
 *
 * Bound: Redis holds one key per keyed publish within the window (about 150
 * bytes each with the default prefix), each expiring on its own; there is
 * no count limit here. With Redis's maxmemory-policy noeviction a full Redis
 * refuses the claim (UNAVAILABLE: not delivered); an evicting policy may
 * drop a key early, after which a retry is delivered again.
 *
 * Failure: every Redis error is UNAVAILABLE (redis/connection.ts). A claim
 * that fails delivers nothing. A result that cannot be written (Redis went
 * away after the publish) leaves the marker until its TTL: retries wait
 * until then, and are then delivered again.
 */
import type { RedisCommands } from "./connection.js";
import {
  IDEMPOTENCY_CLAIM_TTL_MS,
  type ClaimState,
  type IdempotencyStore,
  type IdempotentResult,
} from "../core/idempotency.js";
import { redisUnavailable } from "./connection.js";

/** KEYS: the key; ARGV: the marker, its TTL. Returns the value held, or nil once claimed. */
const CLAIM = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`;

/** KEYS: the key; ARGV: the marker, the result, the window. */
const COMPLETE = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or not v then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`;

/** KEYS: the key; ARGV: the marker. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

type Script = (...args: (string | number)[]) => Promise<unknown>;
interface Scripts {
  rtIdemClaim: Script;
  rtIdemComplete: Script;
  rtIdemRelease: Script;
}

export interface RedisIdempotencyOptions {
  /** The command connection (shared with the broker and presence). */
  command: RedisCommands;
  /** REALTIME_REDIS_PREFIX. */
  prefix: string;
  /** REALTIME_IDEMPOTENCY_WINDOW_MS. */
  windowMs: number;
  /** This node's part of every claim token (unique per process). */
  node: string;
  /** How long a claim in flight holds its key; default IDEMPOTENCY_CLAIM_TTL_MS (tests shorten it). */
  claimTtlMs?: number;
}

export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly scripts: Scripts;
  private readonly keyPrefix: string;
  private tokens = 0;

  constructor(private readonly options: RedisIdempotencyOptions) {
    if (options.node.includes("|")) throw new Error('a node id must have no "|"');
    const { command } = options;
    command.defineCommand("rtIdemClaim", { numberOfKeys: 1, lua: CLAIM });
    command.defineCommand("rtIdemComplete", { numberOfKeys: 1, lua: COMPLETE });
    command.defineCommand("rtIdemRelease", { numberOfKeys: 1, lua: RELEASE });
    this.scripts = command as unknown as Scripts;
    this.keyPrefix = `${options.prefix}idem:`;
  }

  async claim(key: string, fingerprint: string): Promise<ClaimState> {
    const token = `${this.options.node}.${++this.tokens}`;
    let held: unknown;
    try {
      held = await this.scripts.rtIdemClaim(
        this.keyPrefix + key,
        marker(token, fingerprint),
        this.options.claimTtlMs ?? IDEMPOTENCY_CLAIM_TTL_MS,
      );
    } catch (err) {
      throw redisUnavailable(err, "claiming the idempotency key");
    }
    if (held === null) return { state: "claimed", token };
    return parse(String(held));
  }

  async complete(key: string, token: string, fingerprint: string, result: IdempotentResult): Promise<void> {
    const done = `d|${fingerprint}|${result.edges}|${result.messageId}`;
    try {
      await this.scripts.rtIdemComplete(this.keyPrefix + key, marker(token, fingerprint), done, this.options.windowMs);
    } catch (err) {
      throw redisUnavailable(err, "recording the idempotency key's result");
    }
  }

  async release(key: string, token: string, fingerprint: string): Promise<void> {
    try {
      await this.scripts.rtIdemRelease(this.keyPrefix + key, marker(token, fingerprint));
    } catch (err) {
      throw redisUnavailable(err, "releasing the idempotency key");
    }
  }
}

function marker(token: string, fingerprint: string): string {
  return `p|${token}|${fingerprint}`;
}

/** A value held under a key: in flight, or done. */
function parse(value: string): ClaimState {
  const parts = value.split("|");
  if (parts[0] === "p" && parts.length === 3) return { state: "pending", fingerprint: parts[2]! };
  if (parts[0] === "d" && parts.length === 4) {
    return { state: "done", fingerprint: parts[1]!, result: { messageId: parts[3]!, edges: Number(parts[2]) } };
  }
  // Not ours (written by another version?): treat as another request's.
  return { state: "pending", fingerprint: "" };
}
