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
import { HookRefused, type Hooks } from "../core/hooks.js";
import { ANONYMOUS, type Identity } from "../core/identity.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { TokenError } from "./token-error.js";
import type { TokenVerifier } from "./tokens.js";

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
  /**
   * The backend's hooks: with OnConnect on (Hooks.connects), a request
   * without a token (any request, without a verifier) is the hook's to
   * decide, from its headers: its identity, HTTP 403 with its reason, or
   * (the hook failed, failing closed) HTTP 503.
   */
  hooks?: Hooks;
  /** This edge's id, for the hook. */
  edgeId?: string;
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
  const { verifier, allowAnonymous, hooks } = options;
  return async (req) => {
    const token = verifier ? tokenFromRequest(req) : undefined;
    if (token === undefined && hooks?.connects) return askConnectHook(hooks, req, options.edgeId ?? "");
    if (!verifier) return ANONYMOUS;
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

/** The identity OnConnect gives the request (anonymous when the hook failed open), or its refusal. */
async function askConnectHook(hooks: Hooks, req: ConnectRequest, edgeId: string): Promise<Identity> {
  const headers: Record<string, string> = {};
  for (const [raw, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    const name = raw.toLowerCase();
    headers[name] = Array.isArray(value) ? value.join(name === "cookie" ? "; " : ", ") : value;
  }
  try {
    return (await hooks.connect({ headers, url: req.url ?? "/", edgeId })) ?? ANONYMOUS;
  } catch (err) {
    if (err instanceof HookRefused) throw new AuthRefusal(err.message, 403);
    if (err instanceof RealtimeError && err.code === Code.Unavailable) throw new AuthRefusal(err.message, 503);
    throw err;
  }
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
