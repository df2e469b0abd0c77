/**
 * The README's configuration table, generated from the one schema
 * (config.ts). `npm run docs:config` rewrites the part of README.md between
 * the markers; test/config.test.ts fails when they disagree.
 */
import { flagOf } from "./config-args.js";
import { SETTINGS } from "./config.js";

export const CONFIG_START = "<!-- config:start -->";
export const CONFIG_END = "<!-- config:end -->";

/** The table, one row per setting, in schema order. */
export function renderConfigTable(): string {
  const rows = Object.entries(SETTINGS).map(([key, s]) => {
    const def = s.default === "" ? "(empty)" : `\`${String(s.default)}\``;
    return `| \`${s.env}\` | \`${flagOf(key)}\` | ${def} | ${s.roles.join(", ")} | ${s.doc.replace(/\|/g, "\\|")} |`;
  });
  return [
    "| Environment variable | Flag | Default | Read by | What it does |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

/**
 * readme with the text between the markers replaced by the table. When the
 * markers are missing, a Configuration section holding them is appended.
 */
export function withConfigTable(readme: string): string {
  const block = `${CONFIG_START}\n<!-- Generated from src/config.ts by npm run docs:config; do not edit by hand. -->\n${renderConfigTable()}\n${CONFIG_END}`;
  const start = readme.indexOf(CONFIG_START);
  const end = readme.indexOf(CONFIG_END);
  if (start === -1 || end === -1 || end < start) {
    return `${readme.replace(/\s*$/, "")}\n\n## Configuration\n\n${block}\n`;
  }
  return readme.slice(0, start) + block + readme.slice(end + CONFIG_END.length);
}
