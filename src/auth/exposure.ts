/**
 * Secure by default: a process with no credentials configured (no API keys
 * for the API, no token key for an edge) listens on loopback only, where
 * only the same machine can reach it. Asked to listen anywhere else, it
 * refuses to start, with a message that says how to fix it, unless the
 * operator set REALTIME_INSECURE=true (which is logged loudly).
 */
import { isIP } from "node:net";

/** True when host is a loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .replace(/^\[|\]$/g, "")
    .toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h);
  return false;
}

/** How a process without credentials may listen: "loopback", "insecure" (overridden), or a refusal message. */
export type Exposure = { ok: true; mode: "secured" | "loopback" | "insecure" } | { ok: false; message: string };

/**
 * Decides whether a process may listen on hosts. `secured` says whether its
 * credentials are configured; `fix` is what to tell an operator who must
 * configure them (the variable to set).
 */
export function checkExposure(hosts: readonly string[], secured: boolean, insecure: boolean, fix: string): Exposure {
  if (secured) return { ok: true, mode: "secured" };
  const open = hosts.filter((h) => !isLoopback(h));
  if (open.length === 0) return { ok: true, mode: "loopback" };
  if (insecure) return { ok: true, mode: "insecure" };
  return {
    ok: false,
    message:
      `refusing to listen on ${open.join(", ")} without authentication: ${fix}, ` +
      `or listen on 127.0.0.1 only, or (never in production) set REALTIME_INSECURE=true`,
  };
}

/** What a process says about how it listens, for each mode that needs saying. */
export interface ExposureNotes {
  /** Log fields (the hosts). */
  fields: Record<string, unknown>;
  /** Logged as a warning on loopback without credentials. */
  loopback: string;
  /** Logged as an error with REALTIME_INSECURE=true. */
  insecure: string;
}

/**
 * checkExposure, then: throws the refusal, or logs what the mode means
 * (nothing when secured).
 */
export function enforceExposure(
  hosts: readonly string[],
  secured: boolean,
  insecure: boolean,
  fix: string,
  log: { warn(fields: object, msg: string): void; error(fields: object, msg: string): void },
  notes: ExposureNotes,
): void {
  const exposure = checkExposure(hosts, secured, insecure, fix);
  if (!exposure.ok) throw new Error(exposure.message);
  if (exposure.mode === "loopback") log.warn(notes.fields, notes.loopback);
  if (exposure.mode === "insecure") log.error(notes.fields, notes.insecure);
}
