/**
 * The hub is as closed as the API: edges authenticate to the API's link
 * port with REALTIME_LINK_SECRET (a challenge signed with HMAC-SHA256, the
 * secret never on the wire). Tried as an intruder would, with a raw TCP
 * client built from the link schemas: without the secret, or with a wrong
 * one, nothing it sends is handled (no publication reaches a real client, no
 * member appears in GetMembers) and the hub closes it. Without a secret the
 * link stays on loopback. A real edge with the right secret works; with a
 * wrong one it never becomes ready, says why, and retries with backoff.
 */
import * as grpc from "@grpc/grpc-js";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { ROOT, startProcess, stopAll } from "./helpers/cluster.js";
import { useCluster } from "./helpers/fixture.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { documentedProof, rawPublication, RawLink } from "./helpers/raw-link.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const SECRET = "link-secret-for-the-tests-0123456789abcdef";
const WRONG = "not-the-link-secret-9876543210-zyxwvutsrq";
const API_KEY = "sk_link_auth_test_0123456789abcdef";
/** ErrorCode.UNAUTHENTICATED. */
const UNAUTHENTICATED = 16;
/** The hub's deadline for a Hello (LINK_AUTH_TIMEOUT_MS) and room for a loaded machine. */
const AUTH_DEADLINE_MS = 5_000 + 3_000;

const raws: RawLink[] = [];
afterAll(async () => {
  for (const r of raws) r.close();
  await stopAll();
});

async function raw(link: string): Promise<RawLink> {
  const r = await RawLink.connect(link);
  raws.push(r);
  return r;
}

function keyed(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${API_KEY}`);
  return m;
}

/**
 * What an intruder tries once it has sent its hello: a fake member with
 * user id "admin" in lobby, and an event published to lobby.
 */
function attack(r: RawLink, tag: string): void {
  r.send({
    id: 0,
    frame: { case: "presenceAdd", value: { channel: "lobby", member: { id: `${tag}.1`, userId: "admin" } } },
  });
  r.send({ id: 7, frame: { case: "publish", value: rawPublication("lobby", `pwned-${tag}`, "from the link port") } });
  r.send({ id: 8, frame: { case: "members", value: "lobby" } });
}

describe("a hub with REALTIME_LINK_SECRET", () => {
  const f = useCluster(1, { REALTIME_LINK_SECRET: SECRET, REALTIME_API_KEYS: API_KEY });
  let watcher: TestClient;
  const link = () => f.cluster.api.ready.link!;

  /** Nothing the intruders sent reached the watcher or presence: a sentinel sent after them arrives alone. */
  async function expectUntouched(tag: string) {
    const sentinel = `sentinel-${tag}`;
    await f.api.send(
      {
        channel: "lobby",
        event: sentinel,
        payload: { case: "json", value: { kind: { case: "numberValue", value: 1 } } },
      },
      keyed(),
    );
    await watcher.event(sentinel, "lobby");
    expect(watcher.events(`pwned-${tag}`)).toEqual([]);
    expect(watcher.events("channel:join").map((e) => (e.payload.value as { userId: string }).userId)).not.toContain(
      "admin",
    );
    const members = (await f.api.getMembers({ channel: "lobby" }, keyed())).members;
    expect(members.map((m) => m.id)).toEqual([watcher.id]);
  }

  it("a real edge with the right secret works (the cluster's edge)", async () => {
    watcher = await f.client(0, "json");
    await watcher.ok({ command: { case: "join", value: { channel: "lobby" } } });
    expect((await f.api.getMembers({ channel: "lobby" }, keyed())).members.map((m) => m.id)).toEqual([watcher.id]);
  });

  it("a raw client without the secret can neither add a member nor publish, and is closed", async () => {
    const r = await raw(link());
    r.send({ id: 0, frame: { case: "hello", value: { edgeId: "intruder-a" } } });
    attack(r, "a");
    const closed = await r.closedWithin(2_000);
    await expectUntouched("a");
    expect(closed).toBe(true);
    expect(r.errors()[0]).toMatchObject({
      code: UNAUTHENTICATED,
      message: expect.stringMatching(/REALTIME_LINK_SECRET/),
    });
    // No frame after the hello was answered as if handled: one refusal, then the close.
    expect(r.frames.filter((fr) => fr.frame.case === "reply" && !fr.frame.value.error)).toEqual([]);
  });

  it("a raw client with a wrong secret can neither add a member nor publish, and is closed", async () => {
    const r = await raw(link());
    const nonce = await r.challenge();
    r.send({
      id: 0,
      frame: { case: "hello", value: { edgeId: "intruder-b", proof: documentedProof(WRONG, nonce, "intruder-b") } },
    });
    attack(r, "b");
    const closed = await r.closedWithin(2_000);
    await expectUntouched("b");
    expect(closed).toBe(true);
    expect(r.errors()[0]).toMatchObject({ code: UNAUTHENTICATED });
  });

  it("a proof for another nonce (a replayed hello) is refused", async () => {
    const first = await raw(link());
    const seen = await first.challenge();
    expect(seen.length).toBeGreaterThanOrEqual(16);
    first.close();
    const r = await raw(link());
    const nonce = await r.challenge();
    expect(Buffer.from(nonce).equals(Buffer.from(seen))).toBe(false);
    r.send({
      id: 0,
      frame: { case: "hello", value: { edgeId: "intruder-c", proof: documentedProof(SECRET, seen, "intruder-c") } },
    });
    attack(r, "c");
    expect(await r.closedWithin(2_000)).toBe(true);
    await expectUntouched("c");
  });

  it("frames before hello are not handled: an error, then the link is closed", async () => {
    const r = await raw(link());
    attack(r, "d");
    const closed = await r.closedWithin(2_000);
    await expectUntouched("d");
    expect(closed).toBe(true);
    expect(r.errors()[0]).toMatchObject({ code: UNAUTHENTICATED, message: expect.stringMatching(/hello/i) });
  });

  it("closes a link that does not authenticate within the deadline", async () => {
    const r = await raw(link());
    const opened = performance.now();
    expect(await r.closedWithin(AUTH_DEADLINE_MS)).toBe(true);
    expect(r.closedAt! - opened).toBeGreaterThan(1_000);
  }, 20_000);

  it("a raw client with the documented proof is let in (the proof format is the one link.proto states)", async () => {
    const r = await raw(link());
    const nonce = await r.challenge();
    r.send({
      id: 0,
      frame: { case: "hello", value: { edgeId: "honest-e", proof: documentedProof(SECRET, nonce, "honest-e") } },
    });
    const synced = await r.request({ frame: { case: "synced", value: {} } });
    expect(synced?.error).toBeUndefined();
    expect(await r.closedWithin(300)).toBe(false);
    r.close();
    await r.closed;
  });

  it("an edge with a wrong secret never becomes ready, says why, and retries with backoff", async () => {
    const edge = await f.cluster.addEdge({ REALTIME_LINK_SECRET: WRONG });
    // It listens anyway after its start wait (clients get UNAVAILABLE), but is not ready.
    const http = edge.ready.ws!.replace(/^ws/, "http");
    const ready = await fetch(`${http}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/link/);
    const c = await TestClient.connect(edge.ready.ws!, "json");
    const join = await c.request({ command: { case: "join", value: { channel: "lobby" } } });
    expect(join.error?.code).toBe(14);
    await c.close();
    await sleep(3_000);
    const text = edge.stderr();
    const refusals = text.split("\n").filter((l) => /REALTIME_LINK_SECRET/.test(l));
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals[0]).toMatch(/refused|does not match/);
    // Backoff, not a storm: about 8 s since start at most a handful of attempts.
    expect(refusals.length).toBeLessThanOrEqual(8);
    expect(text).not.toContain(WRONG);
    expect(f.cluster.api.stderr()).not.toContain(SECRET);
    expect(f.cluster.api.stderr()).not.toContain(WRONG);
    await edge.stop();
  }, 30_000);

  it("an edge without a secret is refused, and the message names the setting", async () => {
    const edge = await f.cluster.addEdge({ REALTIME_LINK_SECRET: "" });
    expect((await fetch(`${edge.ready.ws!.replace(/^ws/, "http")}/readyz`)).status).toBe(503);
    expect(edge.stderr()).toMatch(/REALTIME_LINK_SECRET/);
    await edge.stop();
  }, 30_000);
});

describe("without REALTIME_LINK_SECRET the link stays on loopback", () => {
  const ports = { REALTIME_GRPC_PORT: "0", REALTIME_HTTP_PORT: "0", REALTIME_LINK_PORT: "0" };

  it("the API refuses REALTIME_LINK_HOST=0.0.0.0 without a secret, even with API keys, naming the settings", async () => {
    const err = await startProcess("api", { ...ports, REALTIME_API_KEYS: API_KEY, REALTIME_LINK_HOST: "0.0.0.0" }).then(
      (p) => p.stop().then(() => undefined),
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/REALTIME_LINK_SECRET/);
    expect(err?.message).toMatch(/0\.0\.0\.0/);
  });

  it("starts on 0.0.0.0 with a secret", async () => {
    const api = await startProcess("api", {
      ...ports,
      REALTIME_API_KEYS: API_KEY,
      REALTIME_LINK_HOST: "0.0.0.0",
      REALTIME_LINK_SECRET: SECRET,
    });
    expect(api.ready.link).toMatch(/^0\.0\.0\.0:\d+$/);
    await api.stop();
  });

  it("a bad REALTIME_LINK_SECRET is refused naming the setting and the rule, never echoing the value", () => {
    const short = "short-link-secret";
    let err: unknown;
    try {
      loadConfig({ REALTIME_LINK_SECRET: short });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/REALTIME_LINK_SECRET/);
    expect((err as Error).message).toMatch(/32/);
    expect((err as Error).message).not.toContain(short);
  });
});

describe("switchboard dev", () => {
  it("links its edge with a fresh random secret: a raw client without it is refused, the edge works", async () => {
    const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CLI, "dev", "--grpc-port", "0", "--http-port", "0", "--link-port", "0", "--ws-port", "0"],
      {
        cwd: ROOT,
        env: { ...process.env, REALTIME_LOG_LEVEL: "warn", REALTIME_LINK_SECRET: "" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      const lines: Record<string, string>[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`dev not ready:\n${stderr}`)), 30_000);
        createInterface({ input: child.stdout }).on("line", (line) => {
          try {
            lines.push(JSON.parse(line) as Record<string, string>);
          } catch {
            return;
          }
          if (lines.at(-1)?.ready === "dev") {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const api = lines.find((l) => l.ready === "api")!;
      const dev = lines.find((l) => l.ready === "dev")!;
      const r = await raw(api.link!);
      r.send({ id: 0, frame: { case: "hello", value: { edgeId: "intruder-dev" } } });
      attack(r, "dev");
      expect(await r.closedWithin(2_000)).toBe(true);
      expect(r.errors()[0]?.code).toBe(UNAUTHENTICATED);
      const c = await TestClient.connect(dev.ws!, "json");
      await c.ok({ command: { case: "join", value: { channel: "lobby" } } });
      const rpc = realtimeClient(dev.grpc!);
      expect((await rpc.getMembers({ channel: "lobby" })).members.map((m) => m.id)).toEqual([c.id]);
      rpc.close();
      await c.close();
    } finally {
      child.kill("SIGTERM");
      await exited;
    }
    expect(stderr).not.toMatch(/"secret"|linkSecret/);
  }, 60_000);
});
