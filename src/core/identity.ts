/**
 * Who a client connection is, and which private channels it may use. The
 * WebSocket edge builds an Identity from the connection's token at the
 * upgrade (tokens.ts); the core Edge only asks it questions.
 */

/**
 * Clock skew allowed between a token's issuer and the edge (docs/security.md):
 * a token is valid until its `exp` plus this, at the upgrade, on refresh
 * and on an open connection (closed with 4003 then); its `iat` and `nbf`
 * may be this far in the future, no further.
 */
export const TOKEN_CLOCK_SKEW_MS = 5_000;

/** Longest grant list a token may carry (more is refused as a bad token). */
export const MAX_CHANNEL_GRANTS = 1_000;

/**
 * The private channels a token grants, from its `channels` claim: a list of
 * strings, each either an exact channel name (`private:room-1`) or a prefix
 * pattern ending with `*` (`private:team-7:*` grants every channel whose
 * name starts with `private:team-7:`; `*` alone grants every channel).
 * `*` is only special at the end. Public channels need no grant.
 */
export class ChannelGrants {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];

  constructor(readonly patterns: readonly string[] = []) {
    for (const p of patterns) {
      if (p.endsWith("*")) this.prefixes.push(p.slice(0, -1));
      else this.exact.add(p);
    }
  }

  /** True when a grant names channel or a prefix of it. */
  allows(channel: string): boolean {
    return this.exact.has(channel) || this.prefixes.some((p) => channel.startsWith(p));
  }
}

/** One authenticated (or anonymous) connection's identity. */
export interface Identity {
  /** The token's subject; "" for an anonymous connection. */
  readonly userId: string;
  /** The token's `exp` (ms since the epoch; the edge allows TOKEN_CLOCK_SKEW_MS past it); undefined = never. */
  readonly expiresAt: number | undefined;
  /** The private channels it may join and read. */
  readonly grants: ChannelGrants;
}

/** A connection that presented no token, where anonymous connections are allowed. */
export const ANONYMOUS: Identity = Object.freeze({ userId: "", expiresAt: undefined, grants: new ChannelGrants() });
