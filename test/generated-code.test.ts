/**
 * gen/ is what `buf generate` makes of proto/ today: generated into a
 * temporary directory with the repository's own buf.gen.yaml and plugin
 * versions, then compared file by file. A proto change without its
 * regenerated code, or a hand edit in gen/, fails here.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/cluster.js";

const run = promisify(execFile);
const out = mkdtempSync(join(tmpdir(), "switchboard-gen-"));

afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Every file under dir, as paths relative to it. */
function files(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else found.push(relative(dir, p));
    }
  };
  walk(dir);
  return found.sort();
}

describe("gen/", () => {
  it("matches buf generate of proto/", async () => {
    await run(join(ROOT, "node_modules/.bin/buf"), ["generate", "--output", out], { cwd: ROOT, timeout: 60_000 });
    const fresh = join(out, "gen");
    const committed = join(ROOT, "gen");
    expect(files(committed), "files in gen/ (run npx buf generate and commit gen/)").toEqual(files(fresh));
    for (const file of files(fresh)) {
      const a = readFileSync(join(committed, file), "utf8");
      const b = readFileSync(join(fresh, file), "utf8");
      expect(a === b, `gen/${file} differs from buf generate: run npx buf generate and commit gen/`).toBe(true);
    }
  }, 60_000);
});
