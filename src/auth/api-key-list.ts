/**
 * API keys: how a backend proves it may call realtime.v1.Realtime.
 *
 * A backend sends `authorization: Bearer <key>` (gRPC metadata or HTTP
 * header). REALTIME_API_KEYS holds the keys the API accepts, several at once
 * so that a key can be rotated without downtime (add the new key, move the
 * backends, remove the old key). Each key may be limited to some methods.
 *
 * Syntax of REALTIME_API_KEYS: entries separated by commas (and/or
 * whitespace); each entry is `KEY` (every method) or `KEY:SCOPE+SCOPE...`.
 *   KEY    16 to 256 characters from A-Z a-z 0-9 and - _ . ~ / = (no ":" or ",")
 *   SCOPE  `publish`  Send, Broadcast, SendBatch and Publish
 *          `presence` GetMembers, PresenceStats, ListChannels, WatchChannel,
 *                     GetHistory, Info, WatchStats, WatchLifecycle,
 *                     GetConnections and WatchMessages (reading who is where
 *                     and what happened)
 *          `control`  Disconnect, Subscribe and Unsubscribe (acting on connections)
 *          `*`        every method
 *          or the name of one method of realtime.v1.Realtime, e.g. `Send`
 * Example: REALTIME_API_KEYS="k3Yf...old, 9Qx...new, Zt1...ro:presence"
 *
 * Guarantees: a presented key is compared with every configured key in
 * constant time (SHA-256 digests compared with timingSafeEqual, all keys
 * tried whatever matches), so the time taken says nothing about how much of
 * a key was right, nor which key matched. Keys are never logged: only a
 * short fingerprint (first 8 hex of the SHA-256) is.
 *
 * This file is the list's syntax and parser, which the config schema
 * (src/config.ts) checks at start in every role; the decision made with the
 * keys (ApiKeyring, api-keys.ts) is the API's alone, and imports
 * @connectrpc/connect, which an edge then does not load.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { GENERATE_SECRET_COMMAND } from "./secret-command.js";

/** Shortest key accepted: a guessable key is no key. */
export const MIN_API_KEY_LENGTH = 16;
/** Longest key accepted. */
export const MAX_API_KEY_LENGTH = 256;

/** The scopes and the methods of realtime.v1.Realtime each one allows. */
export const API_KEY_SCOPES: Readonly<Record<string, readonly string[]>> = {
  publish: ["Send", "Broadcast", "SendBatch", "Publish"],
  presence: [
    "GetMembers",
    "PresenceStats",
    "ListChannels",
    "WatchChannel",
    "GetHistory",
    "Info",
    "WatchStats",
    "WatchLifecycle",
    "GetConnections",
    "WatchMessages",
  ],
  control: ["Disconnect", "Subscribe", "Unsubscribe"],
};

const KEY_RE = /^[A-Za-z0-9\-_.~/=]+$/;

/** The methods of realtime.v1.Realtime, for scope names. */
const DEFAULT_METHODS = [
  "Send",
  "Broadcast",
  "SendBatch",
  "Publish",
  "GetMembers",
  "PresenceStats",
  "ListChannels",
  "WatchChannel",
  "GetHistory",
  "Disconnect",
  "Subscribe",
  "Unsubscribe",
  "Info",
  "WatchStats",
  "WatchLifecycle",
  "GetConnections",
  "WatchMessages",
] as const;

/** One configured key. */
export interface ApiKey {
  /** SHA-256 of the key: what is compared. */
  readonly digest: Buffer;
  /** First 8 hex digits of the digest, safe to log; unique among the configured keys. */
  readonly fingerprint: string;
  /** The method names (as in the proto) this key may call; undefined = all. */
  readonly methods: ReadonlySet<string> | undefined;
}

/**
 * Parses REALTIME_API_KEYS. Throws an Error saying which entry is wrong and
 * why (never quoting the key itself). `knownMethods` are the method names a
 * scope may name directly.
 */
export function parseApiKeys(raw: string, knownMethods: readonly string[] = DEFAULT_METHODS): ApiKey[] {
  const keys: ApiKey[] = [];
  const entries = raw.split(/[\s,]+/).filter(Boolean);
  entries.forEach((entry, i) => {
    const where = `entry ${i + 1} of ${entries.length}`;
    const colon = entry.indexOf(":");
    const key = colon < 0 ? entry : entry.slice(0, colon);
    if (key.length < MIN_API_KEY_LENGTH || key.length > MAX_API_KEY_LENGTH) {
      throw new Error(
        `${where}: a key must be ${MIN_API_KEY_LENGTH} to ${MAX_API_KEY_LENGTH} characters (it has ${key.length}); generate one with: ${GENERATE_SECRET_COMMAND}`,
      );
    }
    if (!KEY_RE.test(key)) throw new Error(`${where}: a key may only use A-Z a-z 0-9 - _ . ~ / =`);
    let methods: Set<string> | undefined;
    if (colon >= 0) {
      const scopes = entry.slice(colon + 1).split("+");
      methods = new Set();
      for (const [j, scope] of scopes.entries()) {
        if (scope === "*") {
          methods = undefined;
          break;
        }
        const group = API_KEY_SCOPES[scope.toLowerCase()];
        const method = knownMethods.find((m) => m.toLowerCase() === scope.toLowerCase());
        if (group) group.forEach((m) => methods!.add(m));
        else if (method) methods.add(method);
        else {
          // Not quoted: what follows a colon may be a key (KEY1:KEY2 for KEY1,KEY2).
          throw new Error(
            `${where}: scope ${j + 1} after the colon is unknown; use publish, presence, control, * or a method name (${knownMethods.join(", ")}), joined with +, and separate keys with commas`,
          );
        }
      }
    }
    const digest = createHash("sha256").update(key).digest();
    if (keys.some((k) => timingSafeEqual(k.digest, digest))) throw new Error(`${where}: the same key appears twice`);
    const fingerprint = digest.toString("hex").slice(0, 8);
    // The fingerprint names a key in logs, per-key bounds and the scope of
    // idempotency keys: two keys must not share one (odds 1 in 2^32 a pair).
    if (keys.some((k) => k.fingerprint === fingerprint)) {
      throw new Error(
        `${where}: its fingerprint (the first 8 hex of its SHA-256) is another key's; generate another key with: ${GENERATE_SECRET_COMMAND}`,
      );
    }
    keys.push({ digest, fingerprint, methods });
  });
  return keys;
}
