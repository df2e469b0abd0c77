/**
 * npm start builds only when the build's inputs changed (scripts/build-if-stale.mjs):
 * the digest it keeps in dist/ follows every kind of change, on a copy of the layout.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isFresh, stamp } from "../scripts/build-if-stale.mjs";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fixture(): string {
  const root = mkdtempSync(join(tmpdir(), "build-stale-"));
  dirs.push(root);
  for (const d of ["src/core", "gen", "dist"]) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, "src/core/a.ts"), "export const a = 1;\n");
  writeFileSync(join(root, "gen/b.ts"), "export const b = 2;\n");
  writeFileSync(join(root, "package.json"), "{}\n");
  writeFileSync(join(root, "tsconfig.json"), "{}\n");
  return root;
}

describe("npm start's build check", () => {
  it("is stale before the first build, fresh after it, and stale again after each kind of change", () => {
    const root = fixture();
    expect(isFresh(root)).toBe(false); // never built
    stamp(root);
    expect(isFresh(root)).toBe(true);

    // An edit (a later mtime, as an editor or git checkout leaves it).
    writeFileSync(join(root, "src/core/a.ts"), "export const a = 10;\n");
    utimesSync(join(root, "src/core/a.ts"), new Date(), new Date(Date.now() + 5_000));
    expect(isFresh(root)).toBe(false);
    stamp(root);

    // A new file, deep down.
    mkdirSync(join(root, "src/core/deep"));
    writeFileSync(join(root, "src/core/deep/c.ts"), "export {};\n");
    expect(isFresh(root)).toBe(false);
    stamp(root);

    // A removed file.
    unlinkSync(join(root, "gen/b.ts"));
    expect(isFresh(root)).toBe(false);
    stamp(root);

    // The build's configuration.
    writeFileSync(join(root, "tsconfig.json"), '{ "compilerOptions": {} }\n');
    expect(isFresh(root)).toBe(false);
    stamp(root);
    expect(isFresh(root)).toBe(true);

    // Something the build does not read: still fresh.
    writeFileSync(join(root, "README.md"), "# x\n");
    mkdirSync(join(root, "test"));
    writeFileSync(join(root, "test/x.test.ts"), "\n");
    expect(isFresh(root)).toBe(true);
  });

  it("as npm's prestart: builds a stale checkout, then skips the build while nothing changed", () => {
    const root = fixture();
    const script = join(process.cwd(), "scripts/build-if-stale.mjs");
    // The fixture's build: leaves a mark, then stamps, as the real one does.
    writeFileSync(
      join(root, "package.json"),
      JSON.stringify({
        scripts: {
          build: `node -e "require('fs').appendFileSync('dist/built', 'x')" && node ${script} --stamp --root .`,
        },
      }),
    );
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [script, ...args, "--root", root], { cwd: root, encoding: "utf8" });
    expect([run("--check").status, run("--check").stdout.trim()]).toEqual([1, "stale"]);
    expect(run().status).toBe(0);
    expect(readFileSync(join(root, "dist/built"), "utf8")).toBe("x");
    expect([run("--check").status, run("--check").stdout.trim()]).toEqual([0, "fresh"]);
    const again = run();
    expect(again.stdout).toContain("up to date");
    expect(readFileSync(join(root, "dist/built"), "utf8")).toBe("x"); // not built again
    writeFileSync(join(root, "src/core/a.ts"), "export const a = 3;\n");
    utimesSync(join(root, "src/core/a.ts"), new Date(), new Date(Date.now() + 5_000));
    expect(run().status).toBe(0);
    expect(readFileSync(join(root, "dist/built"), "utf8")).toBe("xx");
  });
});
