/** Helpers of the trust tests: tokens, refused upgrades, process memory. */
import { readFileSync } from "node:fs";
import { SignJWT, type JWTPayload } from "jose";
import WebSocket from "ws";

export const SECRET = "test-secret-0123456789-0123456789-0123456789";

/** An HS256 token for SECRET (or another secret), with claims and an expiry in seconds from now. */
export function hs256(
  claims: JWTPayload & { channels?: string[] },
  expiresInSeconds: number | undefined = 600,
  secret = SECRET,
): Promise<string> {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).setIssuedAt();
  if (expiresInSeconds !== undefined) jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds);
  return jwt.sign(new TextEncoder().encode(secret));
}

/**
 * Attempts a WebSocket upgrade; resolves with the HTTP status and body of a
 * refusal, or status 101 and the open socket.
 */
export function upgrade(
  url: string,
  options: { protocol?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; ws?: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocol ?? "realtime.v1.json", { headers: options.headers });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    ws.once("open", () => resolve({ status: 101, body: "", ws }));
    ws.once("error", (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

/** Resident set size of a process, in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}
