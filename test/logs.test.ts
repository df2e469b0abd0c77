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
import { spawn } from "node:child_process";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { textLine } from "../src/log.js";
import { ROOT, runMarker, startProcess, stopAll } from "./helpers/cluster.js";
import { RUN_ENV } from "./helpers/global-setup.js";
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

describe("logs for a person (REALTIME_LOG_FORMAT=text, the default on a terminal)", () => {
  it("are one human line each: time, level, role, message, fields; an error's stack below it", () => {
    const line = textLine(
      JSON.stringify({
        level: 30,
        time: Date.UTC(2026, 0, 2, 12, 0, 1, 234),
        role: "api",
        pid: 7,
        version: "0.1.0",
        grpc: "127.0.0.1:50051",
        durationMs: 32,
        note: "two words",
        msg: "api ready",
      }),
    );
    expect(line).toBe('12:00:01.234 INFO  api api ready grpc=127.0.0.1:50051 durationMs=32 note="two words"\n');
    const err = textLine(
      JSON.stringify({
        level: 50,
        time: 0,
        role: "edge",
        msg: "failed",
        err: { message: "boom", stack: "Error: boom\n    at x" },
      }),
    );
    expect(err.split("\n")[0]).toBe('00:00:00.000 ERROR edge failed err="boom"');
    expect(err).toContain("\n    Error: boom");
    expect(textLine("not json\n")).toBe("not json\n");
  });

  it("an API started with it writes human lines, never a secret; its ready line on stdout stays JSON", async () => {
    const api = await startProcess("api", {
      REALTIME_LOG_FORMAT: "text",
      REALTIME_LOG_LEVEL: "info",
      REALTIME_API_KEYS: API_KEY,
      REALTIME_GRPC_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_LINK_PORT: "0",
    });
    expect(api.ready.grpc).toMatch(/:\d+$/);
    await api.stop();
    const all = api
      .stderr()
      .split("\n")
      .filter((l) => l !== "");
    expect(all.length).toBeGreaterThan(2);
    for (const l of all) expect(l.startsWith("{")).toBe(false);
    expect(all.some((l) => /^\d\d:\d\d:\d\d\.\d{3} INFO {2}api api ready grpc=/.test(l))).toBe(true);
    expect(api.stderr()).not.toContain(API_KEY);
  });

  it("dev prints the addresses and every method for a person, without the JSON ready lines", async () => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "src/cli.ts",
        "dev",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--link-port",
        "0",
        "--ws-port",
        "0",
      ],
      {
        cwd: ROOT,
        env: { ...process.env, REALTIME_LOG_FORMAT: "text", [RUN_ENV]: runMarker() },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise((r) => child.once("exit", r));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev not ready:\n${stderr}`)), 30_000);
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        if (/WebSocket edge {2}ws:\/\//.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.kill("SIGTERM");
    await exited;
    expect(stdout).not.toContain("{");
    const banner = /realtime\.v1\.Realtime: ([^;]+); reflection on/.exec(stderr)?.[1];
    expect(banner?.split(", ")).toEqual(Realtime.methods.map((m) => m.name));
    expect(banner).toContain("GetHistory");
    expect(stderr).toMatch(/INFO {2}api api ready grpc=/);
    expect(stderr).toMatch(/INFO {2}edge edge ready ws=/);
  }, 60_000);
});
