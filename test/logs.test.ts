/**
 * Logs as an operator reads them: JSON lines on stderr, each with role, pid
 * and version; one line each for starting, ready, stopping and stopped with
 * the fields to filter on; and no secret from the configuration, nor a
 * client's payload, anywhere in them.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { startProcess, stopAll } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { TestClient } from "./helpers/ws-client.js";

const API_KEY = "sk_logs_test_2f9c1e0b7a6d5c4b3a29180716253443";
const JWT_SECRET = "logs-test-secret-0123456789-abcdefghijklmnop";
const PAYLOAD_MARK = "payload-mark-5d1f0a";

afterAll(async () => {
  await stopAll();
});

type Line = Record<string, unknown> & { msg: string; level: number };

function lines(stderr: string): Line[] {
  return stderr
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Line);
}

describe("logs", () => {
  it("carry operator fields on start and stop lines and never a secret or a payload", async () => {
    const env = {
      REALTIME_LOG_LEVEL: "debug",
      REALTIME_API_KEYS: API_KEY,
      REALTIME_JWT_SECRET: JWT_SECRET,
      REALTIME_ALLOW_ANONYMOUS: "true",
    };
    const api = await startProcess("api", {
      ...env,
      REALTIME_GRPC_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_LINK_PORT: "0",
    });
    const edge = await startProcess("edge", { ...env, REALTIME_WS_PORT: "0", REALTIME_LINK_URL: api.ready.link });

    // Traffic with a recognisable payload, including a failing call (logged at debug).
    const client = await TestClient.connect(edge.ready.ws!, "json");
    await client.ok({ command: { case: "join", value: { channel: "logs" } } });
    const rpc = realtimeClient(api.ready.grpc!);
    const auth = new grpc.Metadata();
    auth.set("authorization", `Bearer ${API_KEY}`);
    await rpc.send(
      { channel: "logs", event: "e", payload: { case: "json", value: fromJson(ValueSchema, { mark: PAYLOAD_MARK }) } },
      auth,
    );
    await client.event("e", "logs");
    await expect(
      rpc.send(
        { channel: "", event: "e", payload: { case: "json", value: fromJson(ValueSchema, PAYLOAD_MARK) } },
        auth,
      ),
    ).rejects.toThrow();
    rpc.close();
    await client.close();
    await edge.stop();
    await api.stop();

    for (const [role, proc] of [
      ["api", api],
      ["edge", edge],
    ] as const) {
      const all = lines(proc.stderr());
      for (const line of all) {
        expect(line).toMatchObject({ role, version: expect.any(String) });
        expect(typeof line.pid).toBe("number");
      }
      const find = (msg: string) => {
        const line = all.find((l) => l.msg === msg);
        expect(line, `no "${msg}" line in:\n${proc.stderr()}`).toBeDefined();
        return line!;
      };
      expect(find(`${role} starting`)).toMatchObject({ node: process.version, settings: expect.any(Object) });
      expect(find(`${role} ready`).durationMs).toEqual(expect.any(Number));
      expect(find(`${role} stopping`)).toMatchObject({ signal: "SIGTERM" });
      expect(find(`${role} stopped`)).toMatchObject({ signal: "SIGTERM", durationMs: expect.any(Number) });
      const text = proc.stderr();
      expect(text).not.toContain(API_KEY);
      expect(text).not.toContain(JWT_SECRET);
      expect(text).not.toContain(PAYLOAD_MARK);
    }
    expect(lines(api.stderr()).find((l) => l.msg === "api ready")).toMatchObject({
      grpc: api.ready.grpc,
      http: api.ready.http,
    });
  });
});
