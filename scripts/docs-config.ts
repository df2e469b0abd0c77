/**
 * Regenerates README.md's configuration table from src/config.ts.
 *   npm run docs:config            rewrite README.md
 *   npm run docs:config -- --check exit 1 if README.md is out of date
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { withConfigTable } from "../src/config-docs.js";

const path = fileURLToPath(new URL("../README.md", import.meta.url));
let readme = "";
try {
  readme = readFileSync(path, "utf8");
} catch {
  // no README yet: the section is the whole file
}
const next = withConfigTable(readme);
if (process.argv.includes("--check")) {
  if (next !== readme) {
    process.stderr.write("README.md's configuration table is out of date: run npm run docs:config\n");
    process.exit(1);
  }
  process.stdout.write("README.md's configuration table is up to date\n");
} else if (next !== readme) {
  writeFileSync(path, next);
  process.stdout.write("README.md: configuration table regenerated\n");
} else {
  process.stdout.write("README.md: configuration table already up to date\n");
}
