#!/usr/bin/env node
/**
 * `npm start` builds only when the build's inputs changed since the last
 * build: a warm start skips tsc (about 11 s on this machine) and is ready
 * in the time the processes take to start.
 *
 * The inputs are every file under src/ and gen/ (the dashboard's page
 * included) and the build's own configuration (package.json, the two
 * tsconfig files, package-lock.json). Their digest (path, size and mtime of
 * each, not their contents: reading them would cost as much as a cheap
 * build) is written to dist/.build-inputs after a build that succeeded
 * (`--stamp`, the last step of `npm run build`); a start whose digest
 * differs, or that finds no dist/, builds first.
 *
 *   node scripts/build-if-stale.mjs           build if stale (npm's prestart)
 *   node scripts/build-if-stale.mjs --stamp   record the inputs just built
 *   node scripts/build-if-stale.mjs --check   print fresh/stale, exit 0/1
 *   ... --root DIR                            for the checkout at DIR (tests)
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The folders whose files the build reads. */
export const INPUT_DIRS = ["src", "gen"];
/** The files that say how to build. */
export const INPUT_FILES = ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.build.json"];
/** Where the digest of the inputs last built is kept. */
export const STAMP = join("dist", ".build-inputs");

function walk(root, dir, out) {
  let entries;
  try {
    entries = readdirSync(join(root, dir), { withFileTypes: true });
  } catch {
    return; // absent: nothing of it to build
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) walk(root, path, out);
    else if (e.isFile()) out.push(path);
  }
}

/** The digest of the build's inputs under root. */
export function inputsDigest(root) {
  const files = [];
  for (const dir of INPUT_DIRS) walk(root, dir, files);
  for (const f of INPUT_FILES) if (existsSync(join(root, f))) files.push(f);
  files.sort();
  const hash = createHash("sha256");
  for (const f of files) {
    const s = statSync(join(root, f));
    hash.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return hash.digest("hex");
}

/** Whether root's dist/ was built from its inputs as they are now. */
export function isFresh(root) {
  try {
    return readFileSync(join(root, STAMP), "utf8").trim() === inputsDigest(root);
  } catch {
    return false; // no stamp: never built, or built by an older version
  }
}

export function stamp(root) {
  writeFileSync(join(root, STAMP), `${inputsDigest(root)}\n`);
}

function main() {
  const at = process.argv.indexOf("--root");
  const root = at > 0 ? process.argv[at + 1] : join(fileURLToPath(import.meta.url), "..", "..");
  const arg = process.argv[2];
  if (arg === "--stamp") return stamp(root);
  if (arg === "--check") {
    const fresh = isFresh(root);
    console.log(fresh ? "fresh" : "stale");
    process.exitCode = fresh ? 0 : 1;
    return;
  }
  if (isFresh(root)) {
    console.log("switchboard: dist/ is up to date with src/ and gen/: not rebuilding");
    return;
  }
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const built = spawnSync(npm, ["run", "build"], { cwd: root, stdio: "inherit" });
  process.exitCode = built.status ?? 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
