/**
 * Web pages the user visits cannot use a Switchboard on their machine:
 * - an edge refuses upgrades from pages of other origins (HTTP 403 naming
 *   REALTIME_WS_ORIGINS), and admits its own host's pages, listed origins,
 *   and clients that send no Origin;
 * - DNS rebinding (Host and Origin of a name the attacker points at
 *   127.0.0.1): the HTTP API without keys, and an edge without token keys,
 *   answer only requests addressed to loopback names, IP addresses and
 *   REALTIME_ALLOWED_HOSTS (HTTP 403 naming it); with keys the rule is off.
 * Raw HTTP requests with crafted headers and a real ws client with an
 * Origin, against real API and edge processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, startProcess, stopAll, type Cluster, type Proc } from "./helpers/cluster.js";
import { httpOf, scrape } from "./helpers/prom.js";
import { rawHttp, RawClient, upgradeRequest } from "./helpers/raw-ws.js";
import { SECRET, upgrade } from "./helpers/trust.js";

let cluster: Cluster;
/** edge 0: defaults; edge 1: REALTIME_WS_ORIGINS and REALTIME_ALLOWED_HOSTS set; edge 2: a token key. */
const DEFAULT = 0;
const LISTED = 1;
const TOKENS = 2;
const APP = "http://app.example:5173";

beforeAll(async () => {
  cluster = await startCluster(1);
  await cluster.addEdge({
    REALTIME_WS_ORIGINS: `${APP},https://other.example`,
    REALTIME_ALLOWED_HOSTS: "edge.example",
  });
  await cluster.addEdge({ REALTIME_JWT_SECRET: SECRET });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
});

/** host:port of an edge. */
const hostOf = (edge: number) => new URL(cluster.ws[edge]!).host;
const portOf = (edge: number) => new URL(cluster.ws[edge]!).port;

/** An upgrade by hand with these headers: resolves with the status (101 closes the socket at once). */
async function rawUpgrade(edge: number, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  try {
    const c = await RawClient.open(cluster.ws[edge]!, { headers });
    c.destroy();
    return { status: 101, body: "" };
  } catch (err) {
    const m = /upgrade answered (\d+): ([\s\S]*)/.exec((err as Error).message);
    if (!m) throw err;
    return { status: Number(m[1]), body: m[2]! };
  }
}

describe("an edge and the Origin of browser pages", () => {
  it("refuses a page of another origin with 403 naming REALTIME_WS_ORIGINS (a real ws client)", async () => {
    const before = (await scrape(`${httpOf(cluster.ws[DEFAULT]!)}/metrics`)).get(
      "switchboard_connections_refused_total",
      { reason: "origin" },
    );
    const r = await upgrade(cluster.ws[DEFAULT]!, { headers: { Origin: "http://evil.example" } });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/origin http:\/\/evil\.example is not allowed.*REALTIME_WS_ORIGINS/);
    const after = (await scrape(`${httpOf(cluster.ws[DEFAULT]!)}/metrics`)).get(
      "switchboard_connections_refused_total",
      { reason: "origin" },
    );
    expect(after - before).toBe(1);
  });

  it("admits a page of its own host, and clients that send no Origin", async () => {
    for (const origin of [`http://${hostOf(DEFAULT)}`, `http://localhost:${portOf(DEFAULT)}`]) {
      const host = new URL(origin).host;
      expect((await rawUpgrade(DEFAULT, { Host: host, Origin: origin })).status, origin).toBe(101);
    }
    const own = await upgrade(cluster.ws[DEFAULT]!, { headers: { Origin: `http://${hostOf(DEFAULT)}` } });
    expect(own.status).toBe(101);
    own.ws!.close();
    const none = await upgrade(cluster.ws[DEFAULT]!);
    expect(none.status).toBe(101);
    none.ws!.close();
  });

  it("refuses a page on the same name but another port, and the opaque origin null", async () => {
    for (const origin of [
      `http://127.0.0.1:${Number(portOf(DEFAULT)) + 1}`,
      `http://localhost:${Number(portOf(DEFAULT)) + 1}`,
      "null",
    ])
      expect((await rawUpgrade(DEFAULT, { Origin: origin })).status, origin).toBe(403);
  });

  it("admits the origins listed in REALTIME_WS_ORIGINS, and no others", async () => {
    expect((await rawUpgrade(LISTED, { Origin: APP })).status).toBe(101);
    expect((await rawUpgrade(LISTED, { Origin: "https://other.example" })).status).toBe(101);
    expect((await rawUpgrade(LISTED, { Origin: "http://app.example:5174" })).status).toBe(403);
  });
});

describe("DNS rebinding", () => {
  it("an edge without token keys refuses Host evil.example (with its own origin) with 403 naming REALTIME_ALLOWED_HOSTS", async () => {
    const port = portOf(DEFAULT);
    const r = await rawUpgrade(DEFAULT, { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/Host "evil\.example:\d+" is not allowed.*REALTIME_ALLOWED_HOSTS/);
  });

  it("an edge admits loopback names, IP addresses and REALTIME_ALLOWED_HOSTS", async () => {
    const port = portOf(DEFAULT);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `10.1.2.3:${port}`, `[::1]:${port}`])
      expect((await rawUpgrade(DEFAULT, { Host: host })).status, host).toBe(101);
    expect((await rawUpgrade(DEFAULT, { Host: `edge.example:${port}` })).status).toBe(403);
    const listed = `edge.example:${portOf(LISTED)}`;
    expect((await rawUpgrade(LISTED, { Host: listed, Origin: `http://${listed}` })).status).toBe(101);
  });

  it("an edge with a token key leaves Host alone: the token decides (401 without one)", async () => {
    const port = portOf(TOKENS);
    const r = await rawUpgrade(TOKENS, { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });
    expect(r.status).toBe(401);
  });

  const broadcast = (http: string, headers: Record<string, string>) => {
    const body = JSON.stringify({ event: "rebound", json: { hello: 1 } });
    const lines = Object.entries({
      Host: http,
      "Content-Type": "application/json",
      "Content-Length": String(Buffer.byteLength(body)),
      Connection: "close",
      ...headers,
    }).map(([k, v]) => `${k}: ${v}\r\n`);
    return rawHttp(http, `POST /realtime.v1.Realtime/Broadcast HTTP/1.1\r\n${lines.join("")}\r\n${body}`);
  };

  it("the HTTP API without keys refuses a Broadcast with Host and Origin evil.example: 403 naming REALTIME_ALLOWED_HOSTS", async () => {
    const port = cluster.http.split(":").pop()!;
    const r = await broadcast(cluster.http, { Host: `evil.example:${port}`, Origin: `http://evil.example:${port}` });
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/Host "evil\.example:\d+" is not allowed.*REALTIME_ALLOWED_HOSTS/);
    // Its own address and loopback names still work.
    for (const host of [cluster.http, `localhost:${port}`])
      expect((await broadcast(cluster.http, { Host: host })).status, host).toBe(200);
  });

  describe("other API settings", () => {
    let listed: Proc;
    let keyed: Proc;
    const KEY = "k".repeat(40);
    beforeAll(async () => {
      const ports = { REALTIME_GRPC_PORT: "0", REALTIME_LINK_PORT: "0", REALTIME_HTTP_PORT: "0" };
      [listed, keyed] = await Promise.all([
        startProcess("api", { ...ports, REALTIME_ALLOWED_HOSTS: "api.example" }),
        startProcess("api", { ...ports, REALTIME_API_KEYS: KEY }),
      ]);
    }, 60_000);
    afterAll(async () => {
      await Promise.all([listed?.stop(), keyed?.stop()]);
    });

    const get = (http: string, host: string) =>
      rawHttp(http, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

    it("admits a name listed in REALTIME_ALLOWED_HOSTS", async () => {
      const http = listed.ready.http!;
      const port = http.split(":").pop()!;
      expect((await get(http, `api.example:${port}`)).status).toBe(200);
      expect((await get(http, `evil.example:${port}`)).status).toBe(403);
    });

    it("with API keys the key decides, whatever the Host", async () => {
      const http = keyed.ready.http!;
      const port = http.split(":").pop()!;
      expect((await get(http, `evil.example:${port}`)).status).toBe(200);
      // No key: refused by the key check (401), not by the Host rule.
      expect((await broadcast(http, { Host: `evil.example:${port}` })).status).toBe(401);
    });
  });
});

it("upgradeRequest sends the Host it is given (the helper the tests above rely on)", () => {
  expect(upgradeRequest("ws://127.0.0.1:1/", { Host: "evil.example:1" })).toMatch(
    /^GET \/ HTTP\/1\.1\r\nHost: evil\.example:1\r\n/,
  );
});
