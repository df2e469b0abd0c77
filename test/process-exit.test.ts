/**
 * A newcomer's machine stays clean: whatever ends a parent (SIGTERM to
 * `npm start` or `npx switchboard edge`, kill -9 of `switchboard dev`), its
 * children end too and free their ports. And a normal stop (Ctrl-C, SIGTERM
 * to dev) stops the edge, then the API, and logs no warning.
 *
 * Real process trees: npm exec -c runs the CLI the way `npm start` and npx
 * do (npm, then sh -c, then node), every process found through a marker in
 * its environment wherever it was re-parented (test/helpers/procs.ts).
 */
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { startProcess, stopAll } from "./helpers/cluster.js";
import { allGone, killMarked, marked, portFree, spawnMarked, type Spawned } from "./helpers/procs.js";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
/** The CLI from source, as `npm start` runs the built one. */
const NODE_CLI = `${process.execPath} --import tsx ${CLI}`;
const PORTS_0 = "--grpc-port 0 --http-port 0 --link-port 0 --ws-port 0";
/** How long the processes have to be gone after their parent is: the parent check, a clean stop, a loaded machine. */
const GONE_WITHIN_MS = 15_000;

const markers: string[] = [];
afterEach(() => {
  for (const m of markers.splice(0)) killMarked(m);
});
afterAll(async () => {
  await stopAll();
});

async function start(
  argv: string[],
  until: string,
  env: NodeJS.ProcessEnv = {},
  options: { detached?: boolean } = {},
): Promise<Spawned> {
  const s = await spawnMarked(argv, until, { REALTIME_SHUTDOWN_TIMEOUT_MS: "4000", ...env }, options);
  markers.push(s.marker);
  return s;
}

/** The host:port of every address in the ready lines. */
function addressesOf(ready: Map<string, Record<string, string>>): string[] {
  const out = new Set<string>();
  for (const line of ready.values())
    for (const [k, v] of Object.entries(line)) if (k !== "ready") out.add(v.replace(/^wss?:\/\//, ""));
  return [...out];
}

async function expectFree(addresses: string[]): Promise<void> {
  for (const a of addresses) expect(await portFree(a), `${a} is still held`).toBe(true);
}

const roleOf = (cmd: string) =>
  cmd.startsWith(process.execPath) ? /cli\.[jt]s (dev|api|edge)\b/.exec(cmd)?.[1] : undefined;

describe("children end with their parent", () => {
  it("kill -TERM of npm running dev (as npm start does): dev, the API and the edge exit and free their ports", async () => {
    const s = await start(["npm", "exec", "-c", `${NODE_CLI} dev ${PORTS_0}`], "dev");
    const addresses = addressesOf(s.ready);
    expect(addresses.length).toBe(4); // gRPC, link, HTTP, WebSocket
    expect(
      marked(s.marker)
        .map((p) => roleOf(p.cmd))
        .filter(Boolean)
        .sort(),
    ).toEqual(["api", "dev", "edge"]);
    s.child.kill("SIGTERM");
    console.log(`npm start, kill -TERM of npm: every process gone ${await allGone(s.marker, GONE_WITHIN_MS)} ms later`);
    await expectFree(addresses);
  }, 60_000);

  it("kill -9 of dev: the API and the edge exit and free their ports", async () => {
    const s = await start(["npm", "exec", "-c", `${NODE_CLI} dev ${PORTS_0}`], "dev");
    const addresses = addressesOf(s.ready);
    const dev = marked(s.marker).find((p) => roleOf(p.cmd) === "dev");
    expect(dev).toBeDefined();
    process.kill(dev!.pid, "SIGKILL");
    console.log(`kill -9 of dev: every process gone ${await allGone(s.marker, GONE_WITHIN_MS)} ms later`);
    await expectFree(addresses);
  }, 60_000);

  it("kill -9 of dev run without npm: its IPC channel closes and the API and the edge exit", async () => {
    const s = await start([...NODE_CLI.split(" "), "dev", ...PORTS_0.split(" ")], "dev", {
      npm_command: undefined,
      npm_lifecycle_event: undefined,
    });
    const addresses = addressesOf(s.ready);
    process.kill(s.child.pid!, "SIGKILL");
    console.log(`kill -9 of dev without npm: every process gone ${await allGone(s.marker, GONE_WITHIN_MS)} ms later`);
    await expectFree(addresses);
    expect(s.stderr()).toMatch(/switchboard dev is gone \(its IPC channel closed\); stopping/);
  }, 60_000);

  it("kill -TERM of npx running an edge: the edge exits and frees its port", async () => {
    const api = await startProcess("api", {
      REALTIME_GRPC_PORT: "0",
      REALTIME_HTTP_PORT: "0",
      REALTIME_LINK_PORT: "0",
    });
    try {
      const s = await start(["npm", "exec", "-c", `${NODE_CLI} edge --ws-port 0 --link-url ${api.ready.link}`], "edge");
      const addresses = addressesOf(s.ready);
      expect(marked(s.marker).some((p) => roleOf(p.cmd) === "edge")).toBe(true);
      s.child.kill("SIGTERM");
      console.log(
        `npx edge, kill -TERM of npm: every process gone ${await allGone(s.marker, GONE_WITHIN_MS)} ms later`,
      );
      await expectFree(addresses);
    } finally {
      await api.stop();
    }
  }, 60_000);
});

describe("a clean stop logs no warning", () => {
  /** The stderr lines after `from` that are warnings or errors: JSON lines of level 40 or more, and dev's own lines other than progress. */
  function warnings(stderr: string, from: number): string[] {
    return stderr
      .slice(from)
      .split("\n")
      .filter((l) => l.trim() !== "")
      .filter((l) => {
        try {
          return (JSON.parse(l) as { level: number }).level >= 40;
        } catch {
          return !l.startsWith("switchboard dev: ");
        }
      });
  }

  for (const [how, signal, group] of [
    ["Ctrl-C (SIGINT to the whole process group)", "SIGINT", true],
    ["SIGTERM to dev", "SIGTERM", false],
  ] as const) {
    it(`${how}: every process exits 0 and nothing at warn or above is logged`, async () => {
      const s = await start(
        [...NODE_CLI.split(" "), "dev", ...PORTS_0.split(" ")],
        "dev",
        { REALTIME_LOG_LEVEL: "info" },
        {
          detached: true,
        },
      );
      // The banner follows the ready line.
      while (!s.stderr().includes("\nTry: ")) await new Promise((r) => setTimeout(r, 20));
      const from = s.stderr().length;
      process.kill(group ? -s.child.pid! : s.child.pid!, signal);
      const timer = setTimeout(() => process.kill(-s.child.pid!, "SIGKILL"), 20_000);
      const { code } = await s.exited;
      clearTimeout(timer);
      await allGone(s.marker, GONE_WITHIN_MS);
      expect(warnings(s.stderr(), from), s.stderr().slice(from)).toEqual([]);
      expect(code).toBe(0);
      const stopped = s
        .stderr()
        .slice(from)
        .split("\n")
        .filter((l) => /"msg":"(api|edge) stopped"/.test(l));
      expect(stopped.length, "both children stopped cleanly").toBe(2);
    }, 60_000);
  }
});
