/**
 * A port that is taken stops the process (exit 1) with a line that names the
 * setting to change, for each of the four ports: gRPC, HTTP and link on the
 * API, WebSocket on an edge. Real processes; the port is held by a server
 * of the test's own first.
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/cluster.js";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));

const held: Server[] = [];
afterAll(async () => {
  await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
});

/** A port on 127.0.0.1 that a server of the test listens on. */
async function takenPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  held.push(server);
  return (server.address() as { port: number }).port;
}

/** Runs the CLI to its exit; resolves with its exit code and stderr. */
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, REALTIME_LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
}

const API_PORTS = { grpc: "--grpc-port", http: "--http-port", link: "--link-port" } as const;

describe("a port in use", () => {
  for (const [what, env, flag, role] of [
    ["gRPC", "REALTIME_GRPC_PORT", "--grpc-port", "api"],
    ["HTTP", "REALTIME_HTTP_PORT", "--http-port", "api"],
    ["link", "REALTIME_LINK_PORT", "--link-port", "api"],
    ["WebSocket", "REALTIME_WS_PORT", "--ws-port", "edge"],
  ] as const) {
    it(`${what}: exit 1, naming ${env} (${flag})`, async () => {
      const port = await takenPort();
      const others =
        role === "api"
          ? Object.values(API_PORTS).flatMap((f) => (f === flag ? [] : [f, "0"]))
          : ["--link-url", "127.0.0.1:1"];
      const res = await run([role, ...others, flag, String(port)]);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toContain(
        `switchboard ${role}: 127.0.0.1:${port} is in use: set ${env} (${flag}) to a free port, or 0 (any free one)`,
      );
    }, 60_000);
  }
});

describe("a host that is not this machine's", () => {
  it("names the host setting", async () => {
    // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never an address of this machine.
    const res = await run([
      "edge",
      "--ws-host",
      "192.0.2.1",
      "--ws-port",
      "0",
      "--insecure",
      "--link-url",
      "127.0.0.1:1",
    ]);
    expect(res.code, res.stderr).toBe(1);
    expect(res.stderr).toContain(
      "192.0.2.1:0: the host is not an address of this machine: set REALTIME_WS_HOST (--ws-host) to one of its addresses",
    );
  }, 60_000);
});
