/**
 * What the API knows about a call beyond connect's HandlerContext, in
 * `ctx.values`: CONNECTION set by both protocol adapters for every call,
 * API_KEY by the API-key interceptors (src/auth/interceptors.ts).
 */
import { createContextKey } from "@connectrpc/connect";

/**
 * The connection the call came on, unique among open connections: the
 * port's protocol and the peer's address and port (`grpc:127.0.0.1:53412`,
 * `http:::1:40110`). Calls on one HTTP/2 connection share it. "" when the
 * adapter could not tell.
 */
export const CONNECTION = createContextKey<string>("", { description: "the call's connection" });

/**
 * The fingerprint of the API key the call was authorized with (the first 8
 * hex of its SHA-256, as logged; src/auth/api-keys.ts), set by the API-key
 * interceptors; "" when no keys are configured.
 */
export const API_KEY = createContextKey<string>("", { description: "the call's API key fingerprint" });
