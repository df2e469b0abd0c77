/**
 * How an edge proves to the hub that it holds the link secret
 * (REALTIME_LINK_SECRET) without sending it: a challenge-response, since the
 * link is plain TCP. On accept the hub sends a fresh random nonce
 * (HubFrame.challenge); the edge's Hello carries
 *
 *   proof = HMAC-SHA256(key = secret in UTF-8,
 *                       "switchboard link v1" 0x00 || nonce || edge_id in UTF-8)
 *
 * and the hub recomputes it and compares in constant time. A proof is good
 * for one connection only (the nonce is fresh each time), and binds the edge
 * id it was made for. What the link does not give: secrecy or integrity of
 * the frames after the Hello (keep the link on a private network; see
 * docs/security.md), nor a proof that the hub holds the secret.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Bytes of the hub's challenge nonce. */
export const LINK_NONCE_BYTES = 32;
/** How long the hub waits for an edge's Hello after accepting it, and an edge for the hub's challenge. */
export const LINK_AUTH_TIMEOUT_MS = 5_000;
/**
 * The largest frame the hub reads before a link has authenticated (a Hello
 * is an edge id and a 32-byte proof): an unauthenticated peer cannot make
 * the hub buffer a frame of LINK_MAX_FRAME_BYTES.
 */
export const LINK_MAX_HELLO_FRAME_BYTES = 4 * 1024;

const CONTEXT = Buffer.from("switchboard link v1\0", "ascii");

/** A fresh challenge nonce. */
export function createNonce(): Uint8Array {
  return randomBytes(LINK_NONCE_BYTES);
}

/** The Hello.proof for nonce and edgeId under secret. */
export function linkProof(secret: string, nonce: Uint8Array, edgeId: string): Uint8Array {
  return createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(CONTEXT)
    .update(nonce)
    .update(Buffer.from(edgeId, "utf8"))
    .digest();
}

/** Whether proof is linkProof(secret, nonce, edgeId); constant time in the proof's content. */
export function verifyLinkProof(secret: string, nonce: Uint8Array, edgeId: string, proof: Uint8Array): boolean {
  const expected = linkProof(secret, nonce, edgeId);
  // timingSafeEqual needs equal lengths; a proof of another length is wrong,
  // and is still compared (with the expected value itself) to take the same time.
  const same = proof.length === expected.length;
  return timingSafeEqual(same ? proof : expected, expected) && same;
}

/**
 * The hub refused this edge's link: a wrong or missing secret. Permanent
 * until the configuration changes, so the edge logs it as an error and
 * retries at its slowest backoff, not in a storm.
 */
export class LinkRefusedError extends Error {
  override readonly name = "LinkRefusedError";
}
