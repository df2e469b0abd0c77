/**
 * The settings tables of the docs, generated from the one schema
 * (config.ts): README.md's holds every setting, docs/security.md's those
 * its start marker names. `npm run docs:config` rewrites the parts between
 * the markers (DOCS_WITH_SETTINGS); test/config.test.ts fails when they
 * disagree.
 */
import { flagOf } from "./config-args.js";
import { SETTINGS } from "./config.js";

export const CONFIG_START = "<!-- config:start -->";
export const CONFIG_END = "<!-- config:end -->";
/** The files, from the repository root, whose settings tables are generated. */
export const DOCS_WITH_SETTINGS = ["README.md", "docs/security.md"];

/**
 * The table, one row per setting: every setting in schema order, or the
 * settings named by env (in that order; a name the schema lacks throws, so
 * that a doc naming a removed setting fails its check).
 */
export function renderConfigTable(envs?: readonly string[]): string {
  const all = Object.entries(SETTINGS);
  const chosen =
    envs === undefined
      ? all
      : envs.map((env) => {
          const found = all.find(([, s]) => s.env === env);
          if (!found) throw new Error(`no setting ${env} in src/config.ts`);
          return found;
        });
  const rows = chosen.map(([key, s]) => {
    const def = s.default === "" ? "(empty)" : `\`${String(s.default)}\``;
    return `| \`${s.env}\` | \`${flagOf(key)}\` | ${def} | ${s.roles.join(", ")} | ${s.doc.replace(/\|/g, "\\|")} |`;
  });
  return [
    "| Environment variable | Flag | Default | Read by | What it does |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

/** A start marker: `<!-- config:start -->` (every setting) or `<!-- config:start REALTIME_A REALTIME_B -->`. */
const START = /<!-- config:start((?: REALTIME_[A-Z0-9_]+)*) -->/g;

/**
 * text with the table between each pair of markers regenerated. When a
 * text has no markers at all, a Configuration section holding the whole
 * table is appended (the README's).
 */
export function withConfigTable(text: string): string {
  let out = "";
  let at = 0;
  let found = false;
  for (const m of text.matchAll(START)) {
    const end = text.indexOf(CONFIG_END, m.index);
    if (end === -1) break;
    found = true;
    const envs = m[1]!.trim() === "" ? undefined : m[1]!.trim().split(" ");
    out += text.slice(at, m.index) + block(m[0], envs);
    at = end + CONFIG_END.length;
  }
  if (!found) return `${text.replace(/\s*$/, "")}\n\n## Configuration\n\n${block(CONFIG_START, undefined)}\n`;
  return out + text.slice(at);
}

function block(start: string, envs: readonly string[] | undefined): string {
  return `${start}\n<!-- Generated from src/config.ts by npm run docs:config; do not edit by hand. -->\n${renderConfigTable(envs)}\n${CONFIG_END}`;
}
