/**
 * Regenerates the settings tables of the docs (README.md, docs/security.md)
 * from src/config.ts.
 *   npm run docs:config            rewrite them
 *   npm run docs:config -- --check exit 1 if one is out of date
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DOCS_WITH_SETTINGS, withConfigTable } from "../src/config-docs.js";

let stale = false;
for (const doc of DOCS_WITH_SETTINGS) {
  const path = fileURLToPath(new URL(`../${doc}`, import.meta.url));
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    // no such file yet: the section is the whole file
  }
  const next = withConfigTable(text);
  if (process.argv.includes("--check")) {
    if (next !== text) {
      process.stderr.write(`${doc}'s settings table is out of date: run npm run docs:config\n`);
      stale = true;
    } else process.stdout.write(`${doc}'s settings table is up to date\n`);
  } else if (next !== text) {
    writeFileSync(path, next);
    process.stdout.write(`${doc}: settings table regenerated\n`);
  } else {
    process.stdout.write(`${doc}: settings table already up to date\n`);
  }
}
if (stale) process.exit(1);
