/**
 * Authentication of a client's WebSocket upgrade request, before the
 * handshake completes: the edge answers HTTP 401 (and opens no connection)
 * when this rejects.
 *
 * Where the token comes from, first found wins:
 *   1. `Authorization: Bearer <token>` header: for servers, native apps and
 *      anything else that can set headers on the upgrade request;
 *   2. the `token` query parameter (`wss://edge/?token=<jwt>`): for browsers,
 *      whose WebSocket API cannot set headers. URLs can end up in proxy
 *      access logs, so such tokens should be short-lived (minutes) and
 *      renewed on the open connection with a Refresh frame.
 * Tokens are not taken from Sec-WebSocket-Protocol: that header negotiates
 * the encoding, and a token there would be echoed by proxies and logs of
 * the negotiated subprotocol just the same.
 */
import type { ConnectRequest } from "../core/admission.js";
import { ANONYMOUS, type Identity } from "../core/identity.js";
import { TokenError, type TokenVerifier } from "./tokens.js";

/** The upgrade is refused with `status` and a one-line reason. */
export class AuthRefusal extends Error {
  override readonly name = "AuthRefusal";
  constructor(
    message: string,
    readonly status = 401,
  ) {
    super(message);
  }
}

export interface ClientAuthOptions {
  /** Verifies tokens; undefined = no token key configured: every connection is anonymous. */
  verifier: TokenVerifier | undefined;
  /** With a verifier: whether a request without any token is let in, anonymous. */
  allowAnonymous: boolean;
}

/** The connection policy's AdmissionOptions.authenticate (core/admission.ts). */
export type ClientAuthenticator = (req: ConnectRequest) => Promise<Identity>;

/**
 * Resolves with the identity of the request's token. Rejects with
 * AuthRefusal(401) when a token is present but not valid (even where
 * anonymous connections are allowed: a bad token is a bug to surface, not an
 * anonymous user), or when it is missing and anonymous connections are not
 * allowed.
 */
export function createClientAuthenticator(options: ClientAuthOptions): ClientAuthenticator {
  const { verifier, allowAnonymous } = options;
  return async (req) => {
    if (!verifier) return ANONYMOUS;
    const token = tokenFromRequest(req);
    if (token === undefined) {
      if (allowAnonymous) return ANONYMOUS;
      throw new AuthRefusal(
        "a token is required: send Authorization: Bearer <jwt>, or the query parameter token=<jwt>",
      );
    }
    try {
      return await verifier.verify(token);
    } catch (err) {
      throw new AuthRefusal(`invalid token: ${err instanceof TokenError ? err.message : "it could not be verified"}`);
    }
  };
}

/** The request's token (see the module comment), or undefined. Throws AuthRefusal for a malformed Authorization header. */
export function tokenFromRequest(req: ConnectRequest): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === "string" && header !== "") {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m) throw new AuthRefusal('malformed Authorization header: expected "Bearer <token>"');
    return m[1];
  }
  const url = new URL(req.url ?? "/", "http://edge");
  const tokens = url.searchParams.getAll("token");
  if (tokens.length > 1) throw new AuthRefusal("more than one token query parameter");
  return tokens[0] || undefined;
}
