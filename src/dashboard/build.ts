/**
 * Builds the dashboard into dist/dashboard/: the page, its stylesheet and
 * one bundled, minified script (connect-web and the generated stubs
 * included). Run by `npm run build` (so by `npm install` and `npm start`);
 * the API serves the result at / (serve.ts).
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { dashboardDir, packageRoot } from "./serve.js";

/** Writes the dashboard to outDir (dist/dashboard by default). */
export async function buildDashboard(outDir = dashboardDir()): Promise<void> {
  const page = join(packageRoot(), "src", "dashboard", "page");
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(page, "main.ts")],
    outfile: join(outDir, "dashboard.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(page, "index.html"), join(outDir, "index.html"));
  copyFileSync(join(page, "style.css"), join(outDir, "dashboard.css"));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await buildDashboard();
  process.stdout.write(`dashboard built in ${dashboardDir()}\n`);
}
