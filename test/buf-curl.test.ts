/**
 * `buf curl`, the terminal client the README shows, works over all three
 * protocols: gRPC on the gRPC port (schema from server reflection), and
 * gRPC-Web and Connect on the HTTP port (schema from proto/, since
 * reflection is a bidi stream and the HTTP port speaks HTTP/1.1).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { TestClient } from "./helpers/ws-client.js";

const run = promisify(execFile);
const BUF = join(ROOT, "node_modules", ".bin", "buf");
let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster(1);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
});

/** The flags and base URL of each protocol. */
const PROTOCOLS = {
  grpc: () => ({ flags: ["--protocol", "grpc", "--http2-prior-knowledge"], base: `http://${cluster.grpc}` }),
  grpcweb: () => ({ flags: ["--protocol", "grpcweb", "--schema", ROOT], base: `http://${cluster.http}` }),
  connect: () => ({ flags: ["--protocol", "connect", "--schema", ROOT], base: `http://${cluster.http}` }),
} as const;

async function bufCurl(
  protocol: keyof typeof PROTOCOLS,
  method: string,
  body: unknown,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { flags, base } = PROTOCOLS[protocol]();
  try {
    const { stdout, stderr } = await run(
      BUF,
      ["curl", ...flags, "-d", JSON.stringify(body), `${base}/realtime.v1.Realtime/${method}`],
      { cwd: ROOT, timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("buf curl", () => {
  for (const protocol of Object.keys(PROTOCOLS) as (keyof typeof PROTOCOLS)[]) {
    it(`--protocol ${protocol}: Send reaches a client, GetMembers, ListChannels and PresenceStats count it, GetHistory has it, bad input is INVALID_ARGUMENT`, async () => {
      const channel = `curl-${protocol}`;
      const c = await TestClient.connect(cluster.ws[0]!, "json");
      await c.ok({ command: { case: "join", value: { channel } } });

      const sent = await bufCurl(protocol, "Send", { channel, event: "hello", json: { via: protocol } });
      expect(sent.stderr).toBe("");
      expect(JSON.parse(sent.stdout)).toMatchObject({ messageId: expect.any(String), edges: 1 });
      const ev = await c.event("hello", channel);
      expect(toJson(ValueSchema, ev.payload.value as never)).toEqual({ via: protocol });

      const members = JSON.parse((await bufCurl(protocol, "GetMembers", { channel })).stdout) as {
        members: { id: string }[];
      };
      expect(members.members.map((m) => m.id)).toEqual([c.id]);

      const channels = JSON.parse((await bufCurl(protocol, "ListChannels", { prefix: channel })).stdout) as {
        channels: { name: string; members: number }[];
      };
      expect(channels.channels).toEqual([{ name: channel, members: 1 }]);

      // An anonymous connection: one connection, no user (proto3 JSON leaves the 0 out).
      const stats = JSON.parse((await bufCurl(protocol, "PresenceStats", { channel })).stdout) as unknown;
      expect(stats).toEqual({ connections: 1 });

      // docs/reach.md's GetHistory: the join, then the event, newest first (offsets are JSON strings).
      const history = JSON.parse(
        (await bufCurl(protocol, "GetHistory", { channel, limit: 10, reverse: true })).stdout,
      ) as { events: { offset: string; message?: { event: string } }[]; position: { offset: string } };
      expect(history.events.map((e) => [e.offset, e.message?.event])).toEqual([
        ["2", "hello"],
        ["1", undefined],
      ]);
      expect(history.position.offset).toBe("2");

      const bad = await bufCurl(protocol, "Send", { channel: "a b", event: "hello", json: 1 });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/invalid_argument/i);
      expect(bad.stderr).toMatch(/character outside/);
      await c.close();
    }, 90_000);
  }

  it("--protocol grpc: a Publish stream from stdin, as the README shows, delivers the good events and names the bad one", async () => {
    const channel = "curl-publish";
    const c = await TestClient.connect(cluster.ws[0]!, "json");
    await c.ok({ command: { case: "join", value: { channel } } });
    const lines = [
      { send: { channel, event: "greeting", json: { n: 1 } } },
      { broadcast: { event: "tick", json: 2 } },
      { send: { channel: "bad channel", event: "greeting", json: 3 } },
    ];
    const { flags, base } = PROTOCOLS.grpc();
    const child = execFile(BUF, ["curl", ...flags, "-d", "@-", `${base}/realtime.v1.Realtime/Publish`], {
      cwd: ROOT,
      timeout: 60_000,
    });
    let stdout = "";
    child.stdout!.on("data", (d) => (stdout += String(d)));
    child.stdin!.end(lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
    expect(await new Promise((resolve) => child.once("exit", resolve))).toBe(0);
    // One response usually; acks that fall in different loop turns come as several.
    const responses = JSON.parse(`[${stdout.trim().replace(/\n}\n{/g, "\n},\n{")}]`) as {
      handled: string;
      errors?: unknown[];
    }[];
    expect(responses.at(-1)!.handled).toBe("3");
    expect(responses.flatMap((r) => r.errors ?? [])).toEqual([
      { index: "2", code: 3, message: expect.stringMatching(/character outside/) },
    ]);
    expect(toJson(ValueSchema, (await c.event("greeting", channel)).payload.value as never)).toEqual({ n: 1 });
    expect(toJson(ValueSchema, (await c.event("tick")).payload.value as never)).toBe(2);
    await c.close();
  }, 90_000);
});
