/**
 * A token was refused; the message says why, for the client's developer.
 * Apart from tokens.ts so that code that only tells this error apart
 * (client-auth.ts) does not load the JWT library.
 */
export class TokenError extends Error {
  override readonly name = "TokenError";
}
