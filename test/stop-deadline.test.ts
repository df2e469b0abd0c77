/**
 * The shutdown deadline holds whatever the state: an edge whose stderr is
 * full and never read still exits on SIGTERM, once stopped or at
 * REALTIME_SHUTDOWN_TIMEOUT_MS (logs never block its event loop, nor flush
 * synchronously at exit); one whose stdout and stderr readers are gone
 * (EPIPE) still stops cleanly; a second SIGTERM exits at once; and a SIGTERM
 * the moment the ready line is out stops it cleanly (its handler is
 * installed before). Real processes, the edge's stderr a FIFO that the test
 * fills and never reads.
 */
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { startProcess, stopAll, type Proc } from "./helpers/cluster.js";
import { killMarked, spawnMarked, stalledPipe } from "./helpers/procs.js";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
/** Slack over a deadline for a loaded machine: far less than the 20 s after which the test SIGKILLs. */
const SLACK_MS = 3_000;
const SIGKILL_AFTER_MS = 20_000;

let api: Proc | undefined;
const markers: string[] = [];
afterEach(() => {
  for (const m of markers.splice(0)) killMarked(m);
});
afterAll(async () => {
  await api?.stop();
  await stopAll();
});

/** An edge linked to the file's API; stderr: "pipe" (read by the test) or a file descriptor. */
async function edge(env: NodeJS.ProcessEnv, stderr: "pipe" | number = "pipe") {
  api ??= await startProcess("api", { REALTIME_GRPC_PORT: "0", REALTIME_HTTP_PORT: "0", REALTIME_LINK_PORT: "0" });
  const s = await spawnMarked(
    [process.execPath, "--import", "tsx", CLI, "edge"],
    "edge",
    { REALTIME_WS_PORT: "0", REALTIME_LINK_URL: api.ready.link, REALTIME_LOG_LEVEL: "info", ...env },
    { stderr },
  );
  markers.push(s.marker);
  // Nobody reads stdout after the ready line either.
  s.child.stdout!.pause();
  return s;
}

/** SIGTERM now; resolves with the exit and how long after the signal it came (SIGKILL at 20 s). */
async function terminate(s: Awaited<ReturnType<typeof edge>>) {
  const signalled = Date.now();
  s.child.kill("SIGTERM");
  const timer = setTimeout(() => s.child.kill("SIGKILL"), SIGKILL_AFTER_MS);
  const exit = await s.exited;
  clearTimeout(timer);
  return { code: exit.code, signal: exit.signal, afterMs: exit.at - signalled };
}

describe("the shutdown deadline holds", () => {
  const DEADLINE = 2_000;
  for (const [what, env, code] of [
    ["once stopped", {}, 0],
    ["at the deadline, when its drain outlasts it", { REALTIME_SHUTDOWN_DRAIN_MS: "30000" }, 1],
  ] as const) {
    it(`with its stderr full and never read, an edge exits on SIGTERM ${what}`, async () => {
      const pipe = await stalledPipe();
      try {
        expect(pipe.bytes).toBeGreaterThanOrEqual(4096);
        const s = await edge({ REALTIME_SHUTDOWN_TIMEOUT_MS: String(DEADLINE), ...env }, pipe.fd);
        const exit = await terminate(s);
        expect(exit.afterMs, "exit after SIGTERM, stderr full").toBeLessThan(DEADLINE + SLACK_MS);
        expect({ code: exit.code, signal: exit.signal }).toEqual({ code, signal: null });
      } finally {
        pipe.close();
      }
    }, 60_000);
  }

  it("with its stdout and stderr readers gone (EPIPE), an edge stops cleanly on SIGTERM, exit 0", async () => {
    const s = await edge({ REALTIME_SHUTDOWN_TIMEOUT_MS: String(DEADLINE) });
    s.child.stdout!.destroy();
    s.child.stderr!.destroy();
    const exit = await terminate(s);
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.afterMs).toBeLessThan(DEADLINE + SLACK_MS);
  }, 60_000);

  it("a second SIGTERM exits at once instead of waiting for the drain and the deadline", async () => {
    const s = await edge({ REALTIME_SHUTDOWN_DRAIN_MS: "30000", REALTIME_SHUTDOWN_TIMEOUT_MS: "40000" });
    s.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    expect(s.child.exitCode, "still draining").toBeNull();
    const exit = await terminate(s);
    expect(exit.afterMs).toBeLessThan(SLACK_MS);
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 1, signal: null });
    expect(s.stderr()).toMatch(/"msg":"edge got SIGTERM again while stopping; exiting now"/);
  }, 60_000);

  it("a SIGTERM the moment the ready line is read stops the edge cleanly (5 times)", async () => {
    for (let i = 0; i < 5; i++) {
      const exit = await terminate(await edge({}));
      expect({ code: exit.code, signal: exit.signal }, `attempt ${i + 1}`).toEqual({ code: 0, signal: null });
    }
  }, 120_000);
});
