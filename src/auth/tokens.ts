/**
 * Client tokens: JWTs (RFC 7519) in compact JWS form, verified with `jose`.
 *
 * Accepted algorithms, each only when its key is configured:
 *   HS256         a shared secret (REALTIME_JWT_SECRET, 32+ characters)
 *   RS256, ES256  a public key (REALTIME_JWT_PUBLIC_KEY_FILE, PEM SPKI)
 *                 or a JSON Web Key Set (REALTIME_JWT_JWKS_FILE, picked by `kid`)
 * Nothing else: `alg: none` and every other algorithm are refused, and a
 * token's algorithm must match its key (no HS256 signed with a public key).
 *
 * Claims:
 *   sub       required: the user id (1 to 256 characters), shown in GetMembers
 *   exp       optional: after it (and TOKEN_CLOCK_SKEW_MS) the edge closes
 *             the connection with 4003, unless a Refresh frame brought a
 *             newer token first; a token past it (and the skew) is refused
 *   nbf, iat  optional: refused when more than TOKEN_CLOCK_SKEW_MS ahead
 *   iss, aud  checked when REALTIME_JWT_ISSUER / REALTIME_JWT_AUDIENCE are set
 *   channels  optional: grants of private channels (identity.ts ChannelGrants)
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { MAX_CHANNEL_NAME_LENGTH, MAX_USER_ID_LENGTH } from "../core/limits.js";
import { ChannelGrants, MAX_CHANNEL_GRANTS, TOKEN_CLOCK_SKEW_MS, type Identity } from "../core/identity.js";
import { GENERATE_SECRET_COMMAND, MIN_HS256_SECRET_LENGTH } from "./secret-command.js";
import { TokenError } from "./token-error.js";

/** Largest token accepted, in characters: bigger is refused before parsing. */
export const MAX_TOKEN_LENGTH = 8 * 1024;
/** Shortest HS256 secret accepted: secret-command.ts's, beside the command that makes one. */
export { MIN_HS256_SECRET_LENGTH };
/** Longest user id (sub) accepted: core/limits.ts's, shared with the server API's user targets. */
export { MAX_USER_ID_LENGTH };

/** A token was refused (token-error.ts). */
export { TokenError };

export interface TokenVerifierOptions {
  /** HS256 shared secret. */
  secret?: string;
  /** RS256/ES256 public key, PEM (SPKI, "BEGIN PUBLIC KEY"). */
  publicKeyPem?: string;
  /** A JSON Web Key Set ({"keys": [...]}) of RS256/ES256 public keys. */
  jwks?: unknown;
  /** Required `iss`, if set. */
  issuer?: string;
  /** Required `aud` (one of), if set. */
  audience?: string;
}

export interface TokenVerifier {
  /** The algorithms accepted, for the start-up log. */
  readonly algorithms: readonly string[];
  /** Verifies token; resolves with its identity or rejects with TokenError. */
  verify(token: string): Promise<Identity>;
}

/** Builds a verifier; throws Error when a key is unusable (at start, not per token). */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const algorithms: string[] = [];
  let secret: Uint8Array | undefined;
  if (options.secret !== undefined) {
    if (options.secret.length < MIN_HS256_SECRET_LENGTH) {
      throw new Error(
        `the HS256 secret must be at least ${MIN_HS256_SECRET_LENGTH} characters; generate one with: ${GENERATE_SECRET_COMMAND}`,
      );
    }
    secret = new TextEncoder().encode(options.secret);
    algorithms.push("HS256");
  }
  let publicKey: KeyObject | undefined;
  let publicAlg: string | undefined;
  if (options.publicKeyPem !== undefined) {
    try {
      publicKey = createPublicKey(options.publicKeyPem);
    } catch (err) {
      throw new Error(`the public key is not a PEM public key: ${(err as Error).message}`);
    }
    if (publicKey.asymmetricKeyType === "rsa") publicAlg = "RS256";
    else if (publicKey.asymmetricKeyType === "ec" && publicKey.asymmetricKeyDetails?.namedCurve === "prime256v1")
      publicAlg = "ES256";
    else throw new Error(`the public key must be RSA (RS256) or EC P-256 (ES256), not ${publicKey.asymmetricKeyType}`);
    algorithms.push(publicAlg);
  }
  let jwks: JWTVerifyGetKey | undefined;
  if (options.jwks !== undefined) {
    try {
      jwks = createLocalJWKSet(options.jwks as Parameters<typeof createLocalJWKSet>[0]);
    } catch (err) {
      throw new Error(`the JWKS is not a JSON Web Key Set: ${(err as Error).message}`);
    }
    for (const alg of ["RS256", "ES256"]) if (!algorithms.includes(alg)) algorithms.push(alg);
  }
  if (algorithms.length === 0) throw new Error("no token key configured: set a secret, a public key or a JWKS");

  const getKey = async (header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
    if (header.alg === "HS256" && secret) return secret;
    if (header.alg === publicAlg && publicKey && (!jwks || header.kid === undefined)) return publicKey;
    if ((header.alg === "RS256" || header.alg === "ES256") && jwks) return jwks(header, token);
    throw new TokenError(`tokens signed with ${header.alg} are not accepted here (accepted: ${algorithms.join(", ")})`);
  };

  return {
    algorithms,
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH)
        throw new TokenError(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
      let payload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          algorithms,
          issuer: options.issuer,
          audience: options.audience,
          clockTolerance: TOKEN_CLOCK_SKEW_MS / 1000,
          requiredClaims: ["sub"],
        }));
      } catch (err) {
        throw new TokenError(describe(err));
      }
      // The skew, in milliseconds, as the expiry timer of an open connection
      // applies it (jose counts whole seconds); jose checks iat only against
      // a maximum age, so a token issued in the future is refused here.
      const now = Date.now();
      if (payload.exp !== undefined && payload.exp * 1000 + TOKEN_CLOCK_SKEW_MS <= now)
        throw new TokenError("the token has expired");
      if (payload.iat !== undefined && payload.iat * 1000 > now + TOKEN_CLOCK_SKEW_MS)
        throw new TokenError(
          `the token's iat claim is in the future (more than ${TOKEN_CLOCK_SKEW_MS / 1000} s ahead of the edge's clock): check the issuer's clock`,
        );
      const sub = payload.sub;
      if (typeof sub !== "string" || sub.length === 0 || sub.length > MAX_USER_ID_LENGTH) {
        throw new TokenError(`the token's sub (user id) must be a string of 1 to ${MAX_USER_ID_LENGTH} characters`);
      }
      const claim = (payload as Record<string, unknown>).channels;
      let patterns: string[] = [];
      if (claim !== undefined) {
        if (
          !Array.isArray(claim) ||
          claim.length > MAX_CHANNEL_GRANTS ||
          !claim.every((c) => typeof c === "string" && c.length > 0 && c.length <= MAX_CHANNEL_NAME_LENGTH + 1)
        ) {
          throw new TokenError(
            `the token's channels claim must be a list of at most ${MAX_CHANNEL_GRANTS} channel names or prefix* patterns`,
          );
        }
        patterns = claim as string[];
      }
      return {
        userId: sub,
        expiresAt: payload.exp === undefined ? undefined : payload.exp * 1000,
        grants: new ChannelGrants(patterns),
      };
    },
  };
}

/** Reads the key files named by the configuration and builds the verifier; undefined when no key is configured. */
export function loadTokenVerifier(config: {
  jwtSecret: string;
  jwtPublicKeyFile: string;
  jwtJwksFile: string;
  jwtIssuer: string;
  jwtAudience: string;
}): TokenVerifier | undefined {
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new Error(`cannot read ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const options: TokenVerifierOptions = {
    secret: config.jwtSecret || undefined,
    publicKeyPem: config.jwtPublicKeyFile ? read(config.jwtPublicKeyFile, "REALTIME_JWT_PUBLIC_KEY_FILE") : undefined,
    issuer: config.jwtIssuer || undefined,
    audience: config.jwtAudience || undefined,
  };
  if (config.jwtJwksFile) {
    const text = read(config.jwtJwksFile, "REALTIME_JWT_JWKS_FILE");
    try {
      options.jwks = JSON.parse(text);
    } catch (err) {
      throw new Error(`REALTIME_JWT_JWKS_FILE ${config.jwtJwksFile} is not JSON: ${(err as Error).message}`);
    }
  }
  if (!options.secret && !options.publicKeyPem && options.jwks === undefined) return undefined;
  return createTokenVerifier(options);
}

/** A reason a client's developer can act on, without echoing the token. */
function describe(err: unknown): string {
  if (err instanceof TokenError) return err.message;
  if (err instanceof errors.JWTExpired) return "the token has expired";
  if (err instanceof errors.JWTClaimValidationFailed)
    return `the token's ${err.claim} claim is not acceptable (${err.reason})`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (err instanceof errors.JWKSNoMatchingKey) return "no key of the JWKS matches the token's kid and alg";
  if (err instanceof errors.JOSEAlgNotAllowed) return "the token's alg is not accepted here";
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return "the token is not a well-formed JWT";
  return "the token could not be verified";
}
