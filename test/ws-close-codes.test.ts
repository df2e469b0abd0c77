/**
 * Every close code an edge sends is in the closed set (src/core/close-codes.ts,
 * docs/protocol.md), and each is counted under its reason in
 * switchboard_disconnects_total, including the closes ws makes on its own
 * (1002, 1007, 1008, 1009): a raw client (test/helpers/raw-ws.ts) that never
 * answers the close breaks each rule. 4004: an edge whose API is gone for
 * longer than REALTIME_OUTAGE_CLOSE_MS closes its clients and refuses new
 * ones with 503 until the API is back. Real API and edge processes.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloseCode } from "../src/protocol/close-codes.js";
import { DEFAULT_LIMITS, MAX_MESSAGE_FRAGMENTS, maxFrameBytes } from "../src/core/limits.js";
import { ROOT, startCluster, startProcess, stopAll, type Cluster, type Proc } from "./helpers/cluster.js";
import { httpOf, scrape } from "./helpers/prom.js";
import { clientFrame, clientFrameHeader, Opcode, RawClient } from "./helpers/raw-ws.js";
import { upgrade } from "./helpers/trust.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const raws: RawClient[] = [];
const clients: TestClient[] = [];

afterAll(async () => {
  for (const r of raws) r.destroy();
  await Promise.all(clients.map((c) => c.close()));
  await stopAll();
});

/** switchboard_disconnects_total by reason, from an edge's /metrics. */
async function disconnects(wsUrl: string): Promise<Record<string, number>> {
  const samples = await scrape(`${httpOf(wsUrl)}/metrics`);
  const out: Record<string, number> = {};
  for (const s of samples.samples) if (s.name === "switchboard_disconnects_total") out[s.labels.reason!] = s.value;
  return out;
}

/** Waits until the disconnects counted since `before` add up to n; resolves with them by reason. */
async function counted(wsUrl: string, before: Record<string, number>, n: number): Promise<Record<string, number>> {
  const deadline = Date.now() + 8_000;
  for (;;) {
    const now = await disconnects(wsUrl);
    const delta: Record<string, number> = {};
    let sum = 0;
    for (const [reason, v] of Object.entries(now)) {
      const d = v - (before[reason] ?? 0);
      if (d > 0) delta[reason] = d;
      sum += d;
    }
    if (sum >= n || Date.now() > deadline) return delta;
    await sleep(100);
  }
}

it("docs/protocol.md documents exactly the codes of CloseCode, by name", () => {
  const doc = readFileSync(`${ROOT}/docs/protocol.md`, "utf8");
  const section = doc.slice(doc.indexOf("## Close codes"), doc.indexOf("\n## ", doc.indexOf("## Close codes") + 1));
  const rows = [...section.matchAll(/^\| (\d{4}) \| (\w+) \|/gm)].map((m) => [m[2], Number(m[1])]);
  expect(Object.fromEntries(rows)).toEqual(CloseCode);
});

describe("closes ws makes on its own", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(1);
  }, 60_000);
  afterAll(() => cluster?.stop());

  const FRAME = maxFrameBytes(DEFAULT_LIMITS);
  const cases: { name: string; bytes: () => Buffer; code: number; reason: string }[] = [
    {
      name: "a frame with a reserved opcode",
      bytes: () => clientFrame(0x3, Buffer.from("x")),
      code: CloseCode.BadFrame,
      reason: "protocol",
    },
    {
      name: "an unmasked frame",
      bytes: () => Buffer.from([0x81, 0x01, 0x78]),
      code: CloseCode.BadFrame,
      reason: "protocol",
    },
    {
      name: "a text frame that is not UTF-8",
      bytes: () => clientFrame(Opcode.Text, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])),
      code: CloseCode.InvalidUtf8,
      reason: "protocol",
    },
    {
      name: `a message in ${MAX_MESSAGE_FRAGMENTS + 1} fragments`,
      bytes: () =>
        Buffer.concat(
          Array.from({ length: MAX_MESSAGE_FRAGMENTS + 1 }, (_, i) =>
            clientFrame(i === 0 ? Opcode.Text : Opcode.Continuation, Buffer.from("x"), i === MAX_MESSAGE_FRAGMENTS),
          ),
        ),
      code: CloseCode.TooManyParts,
      reason: "limit",
    },
    {
      name: "a frame over the frame limit",
      bytes: () => clientFrameHeader(Opcode.Binary, FRAME + 1),
      code: CloseCode.MessageTooBig,
      reason: "limit",
    },
  ];
  for (const { name, bytes, code, reason } of cases) {
    it(`${name}: close ${code}, counted as ${reason}`, async () => {
      const url = cluster.ws[0]!;
      const before = await disconnects(url);
      const c = await RawClient.open(url);
      raws.push(c);
      await c.write(bytes());
      await c.closeFrame();
      expect(c.closeCode).toBe(code);
      expect(await counted(url, before, 1)).toEqual({ [reason]: 1 });
    });
  }
});

describe("4004 Unavailable", () => {
  const OUTAGE_MS = 1_000;
  const SPREAD_MS = 300;
  let cluster: Cluster;
  let api2: Proc | undefined;
  beforeAll(async () => {
    cluster = await startCluster(0);
    await cluster.addEdge({
      REALTIME_OUTAGE_CLOSE_MS: String(OUTAGE_MS),
      REALTIME_SHUTDOWN_SPREAD_MS: String(SPREAD_MS),
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    await api2?.stop();
  });

  it(`an edge cut off from the API for ${OUTAGE_MS} ms closes its clients with 4004, refuses upgrades with 503, and takes them again once the API is back`, async () => {
    const url = cluster.ws[0]!;
    const members = await Promise.all([0, 1, 2].map(() => TestClient.connect(url, "json")));
    clients.push(...members);
    for (const m of members) await m.ok({ command: { case: "join", value: { channel: "outage" } } });
    const before = await disconnects(url);
    const linkPort = cluster.api.ready.link!.split(":").pop()!;

    const killedAt = Date.now();
    await cluster.api.kill();
    // Shorter outages change nothing: the clients stay.
    await sleep(OUTAGE_MS / 2);
    for (const m of members) expect(m.closeCode).toBeUndefined();
    await Promise.all(members.map((m) => m.closed));
    const closedAfter = Date.now() - killedAt;
    expect(members.map((m) => m.closeCode)).toEqual([4004, 4004, 4004]);
    expect(closedAfter).toBeGreaterThanOrEqual(OUTAGE_MS);
    expect(closedAfter).toBeLessThan(OUTAGE_MS + SPREAD_MS + 3_000);
    expect(await counted(url, before, 3)).toEqual({ unavailable: 3 });

    // New clients are refused until the API is back, with a message naming the setting.
    const refused = await upgrade(url);
    expect(refused.status).toBe(503);
    expect(refused.body).toContain("REALTIME_OUTAGE_CLOSE_MS");
    const metrics = await scrape(`${httpOf(url)}/metrics`);
    expect(metrics.get("switchboard_connections_refused_total", { reason: "unavailable" })).toBe(1);

    // The API comes back on the same link port: the edge relinks and takes clients again.
    api2 = await startProcess("api", {
      REALTIME_GRPC_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_LINK_PORT: linkPort,
    });
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline) {
      const attempt = await upgrade(url);
      status = attempt.status;
      attempt.ws?.close();
      if (status === 101) break;
      await sleep(200);
    }
    expect(status).toBe(101);
  }, 60_000);
});
