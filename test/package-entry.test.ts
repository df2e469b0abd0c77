/**
 * The package's entry point ("." in package.json "exports"), imported the
 * way a user imports it: by the package's own name, from a build (what
 * `npm run build` compiles, tsc -p tsconfig.build.json), in a Node process
 * of its own. The build goes to a temporary package root holding a copy of
 * package.json, so that "exports" is resolved as published and the
 * repository's dist/ is neither needed nor touched.
 */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/cluster.js";

const run = promisify(execFile);
const pkg = mkdtempSync(join(tmpdir(), "switchboard-pkg-"));

afterAll(() => rmSync(pkg, { recursive: true, force: true }));

beforeAll(async () => {
  copyFileSync(join(ROOT, "package.json"), join(pkg, "package.json"));
  symlinkSync(join(ROOT, "node_modules"), join(pkg, "node_modules"), "dir");
  await run(join(ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json", "--outDir", join(pkg, "dist")], {
    cwd: ROOT,
    timeout: 120_000,
  });
}, 150_000);

/** Runs `script` as an ES module in the package root; resolves with what it printed. */
async function node(script: string): Promise<string> {
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
    cwd: pkg,
    env: { PATH: process.env.PATH },
    timeout: 30_000,
  });
  return stdout;
}

describe('import("switchboard")', () => {
  it("resolves through exports to a built file, with the start functions, and opens nothing on import", async () => {
    expect(existsSync(join(pkg, "dist/src/index.js"))).toBe(true);
    // The process ends on its own: an import that started a timer or opened a socket would keep it alive.
    const out = await node(`
      const m = await import("switchboard");
      console.log(JSON.stringify({ names: Object.keys(m).sort(), signals: process.listenerCount("SIGTERM") }));
    `);
    expect(JSON.parse(out)).toEqual({
      names: ["ConfigError", "createLogger", "loadConfig", "startApi", "startEdge"],
      signals: 0,
    });
  });

  it("starts an API on port 0 and an edge linked to it, and stops both (the process then ends on its own)", async () => {
    const out = await node(`
      import { createLogger, loadConfig, startApi, startEdge } from "switchboard";
      const config = loadConfig({}, { grpcPort: 0, httpPort: 0, linkPort: 0, wsPort: 0, shutdownDrainMs: 0 });
      const api = await startApi(config, createLogger("api", "silent"));
      const edge = await startEdge({ ...config, linkUrl: api.addresses.link }, createLogger("edge", "silent"));
      const ready = await fetch("http://" + api.addresses.http + "/readyz");
      await edge.stop();
      await api.stop();
      console.log(JSON.stringify({ grpc: api.addresses.grpc, ws: edge.addresses.ws, ready: ready.status }));
    `);
    const result = JSON.parse(out) as { grpc: string; ws: string; ready: number };
    expect(result.grpc).toMatch(/^127\.0\.0\.1:[1-9]\d*$/);
    expect(result.ws).toMatch(/^ws:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(result.ready).toBe(200);
  });
});
