/**
 * The command that errors and docs suggest for making an API key or a
 * token secret. Its output, 64 hex digits (256 bits), passes every rule: an
 * API key (16 to 256 characters of A-Z a-z 0-9 - _ . ~ / =) and the HS256
 * secret (32 characters or more). It works with OpenSSL 1.1 and 3.x and with
 * LibreSSL; `openssl rand -base64url` does not exist in OpenSSL 3.0
 * ("Unknown option"), and plain -base64 may write "+", which a key may not
 * hold. test/config-secrets.test.ts runs every `openssl rand` the repository
 * suggests and feeds its output to the configuration.
 */
export const GENERATE_SECRET_COMMAND = "openssl rand -hex 32";

/**
 * Shortest HS256 secret accepted (RFC 7518 section 3.2: at least the hash
 * size). Here rather than in tokens.ts, so that the config schema can check
 * it without loading the JWT library into every process.
 */
export const MIN_HS256_SECRET_LENGTH = 32;
