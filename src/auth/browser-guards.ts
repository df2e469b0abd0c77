/**
 * Guards against web pages the user visits, which a browser lets talk to
 * any address the user's machine reaches, loopback included:
 *
 * - **Origin** (edge): a page's WebSocket carries the page's origin, and no
 *   CORS stops it. The edge admits pages of its own host (Origin's host:port
 *   equals the request's Host), the origins listed in REALTIME_WS_ORIGINS
 *   (or any, with *), and clients that send no Origin (apps, servers, which
 *   are not browsers and could send any Origin anyway).
 * - **Host** (DNS rebinding): a page on evil.example whose name the attacker
 *   re-points at 127.0.0.1 is same-origin with whatever listens there, so
 *   the Origin rule passes and CORS does not apply. Its requests still say
 *   `Host: evil.example`. A process that serves without credentials (the
 *   API without keys, an edge without token keys) answers only requests
 *   addressed to a loopback name, an IP address (rebinding needs a DNS
 *   name), the host it listens on, or a name in REALTIME_ALLOWED_HOSTS.
 *
 * https://fetch.spec.whatwg.org/#origin-header, RFC 6455 section 10.2.
 */
import { isIP } from "node:net";
import { isLoopback } from "./exposure.js";

/** Whether a request with this Host header (undefined: none) may be served. */
export type HostCheck = (host: string | undefined) => boolean;
/** Whether a WebSocket upgrade with this Origin (undefined: not a browser) and Host may proceed. */
export type OriginCheck = (origin: string | undefined, host: string | undefined) => boolean;

/** The host name of a Host header, without port or IPv6 brackets, lowercased, without a trailing dot. */
export function hostnameOf(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    h = h.slice(1, end < 0 ? undefined : end);
  } else if (isIP(h) === 0) {
    h = h.replace(/:\d*$/, ""); // a bare IPv6 address (a listen host) has colons but no port
  }
  return h.replace(/\.$/, "");
}

/**
 * The Host rule of a process that serves without credentials. listenHost is
 * the address it listens on (REALTIME_*_HOST); allowedHosts the names of
 * REALTIME_ALLOWED_HOSTS, comma-separated, or * for any. A request without
 * a Host header is not from a browser and passes.
 */
export function createHostCheck(listenHost: string, allowedHosts: string): HostCheck {
  const names = new Set(
    [listenHost, ...allowedHosts.split(",")].map((h) => hostnameOf(h)).filter((h) => h !== "" && h !== "0.0.0.0"),
  );
  if (names.has("*")) return () => true;
  return (host) => {
    if (host === undefined) return true;
    const name = hostnameOf(host);
    return isIP(name) !== 0 || isLoopback(name) || names.has(name);
  };
}

/** The port a URL of this scheme has when it names none. */
const DEFAULT_PORTS: Record<string, string> = { "http:": "80", "https:": "443" };

/**
 * The Origin rule of an edge: origins is REALTIME_WS_ORIGINS, comma-separated
 * origins (scheme://host[:port]) or *. Empty: the edge's own host only.
 */
export function createOriginCheck(origins: string): OriginCheck {
  const list = origins
    .split(",")
    .map((o) => o.trim().toLowerCase())
    .filter((o) => o !== "");
  if (list.includes("*")) return () => true;
  const allowed = new Set(list.map((o) => o.replace(/\/$/, "")));
  return (origin, host) => {
    if (origin === undefined) return true;
    const o = origin.trim().toLowerCase();
    if (allowed.has(o)) return true;
    if (host === undefined) return false;
    let url: URL;
    try {
      url = new URL(o);
    } catch {
      return false; // "null" (sandboxed frames, file://) and garbage
    }
    const port = url.port || DEFAULT_PORTS[url.protocol];
    if (port === undefined) return false;
    const h = host.trim().toLowerCase();
    const hostPort = /:\d+$/.test(h) && !h.endsWith("]") ? h : `${h}:${DEFAULT_PORTS[url.protocol]}`;
    return `${url.hostname}:${port}` === hostPort;
  };
}
