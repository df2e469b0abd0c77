/**
 * A clean clone stays clean: `npm install` must not rewrite package-lock.json
 * (it did once for a bin entry, and would have for the license field). npm
 * resolves the lock from package.json alone here (--package-lock-only), in a
 * copy of the two files.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { ROOT } from "./helpers/cluster.js";

it("npm install leaves package-lock.json as committed", () => {
  const dir = mkdtempSync(join(tmpdir(), "lock-"));
  try {
    for (const f of ["package.json", "package-lock.json"]) copyFileSync(join(ROOT, f), join(dir, f));
    const npm = (...extra: string[]) =>
      spawnSync("npm", ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", ...extra], {
        cwd: dir,
        encoding: "utf8",
      });
    let run = npm("--offline");
    // Nothing in the local cache to answer from: ask the registry.
    if (run.status !== 0 && /ENOTCACHED/.test(run.stderr)) run = npm();
    expect(run.status, run.stderr).toBe(0);
    expect(readFileSync(join(dir, "package-lock.json"), "utf8")).toBe(
      readFileSync(join(ROOT, "package-lock.json"), "utf8"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
