/**
 * The API's check of API keys (ApiKeyring). The keys' syntax, parser and
 * scopes are in api-key-list.ts (re-exported here), which the config
 * schema checks in every role without loading @connectrpc/connect.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import { Code } from "../protocol/status-codes.js";
import type { ApiKey } from "./api-key-list.js";

export { API_KEY_SCOPES, MAX_API_KEY_LENGTH, MIN_API_KEY_LENGTH, parseApiKeys, type ApiKey } from "./api-key-list.js";

/**
 * The keys the API accepts, and the one decision it makes with them:
 * may the caller that sent `authorization` call `method`?
 */
export class ApiKeyring {
  constructor(readonly keys: readonly ApiKey[]) {}

  /** True when at least one key is configured (otherwise nothing is checked). */
  get enabled(): boolean {
    return this.keys.length > 0;
  }

  /**
   * Throws ConnectError UNAUTHENTICATED when `authorization` is missing, is
   * not `Bearer <key>`, or holds no configured key; PERMISSION_DENIED when
   * the key may not call `method` (its name as in the proto). Returns the
   * matching key (for logs), or undefined when no keys are configured.
   */
  authorize(authorization: string | null | undefined, method: string): ApiKey | undefined {
    if (!this.enabled) return undefined;
    if (!authorization) {
      throw new ConnectError(
        "missing API key: send the header (metadata) authorization: Bearer <key>",
        Code.Unauthenticated,
      );
    }
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!m) throw new ConnectError('malformed authorization: expected "Bearer <key>"', Code.Unauthenticated);
    const digest = createHash("sha256").update(m[1]!).digest();
    let found: ApiKey | undefined;
    // Every key is compared, whatever matched: constant time in the key set.
    for (const key of this.keys) if (timingSafeEqual(key.digest, digest) && !found) found = key;
    if (!found) throw new ConnectError("invalid API key", Code.Unauthenticated);
    if (found.methods && !found.methods.has(method)) {
      throw new ConnectError(
        `this API key may not call ${method} (its scopes allow ${[...found.methods].join(", ")})`,
        Code.PermissionDenied,
      );
    }
    return found;
  }
}
