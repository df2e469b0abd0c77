/**
 * Builds the dashboard into dist/dashboard/: the page, one bundled
 * stylesheet (uPlot's included) and one bundled, minified script
 * (connect-web, uPlot and the generated stubs included). Run by `npm run build` (so by `npm install` and `npm start`);
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
  // The stylesheet with what it imports (uPlot's), in one file: the page asks for nothing else.
  await build({
    entryPoints: [join(page, "style.css")],
    outfile: join(outDir, "dashboard.css"),
    bundle: true,
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(page, "index.html"), join(outDir, "index.html"));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  await buildDashboard();
  process.stdout.write(`dashboard built in ${dashboardDir()}\n`);
}
