/**
 * Serves the dashboard's built files (src/dashboard/build.ts writes them to
 * dist/dashboard/) on the API's HTTP port: / is the page, and its assets
 * sit beside it. Nothing else is served: the file names are a fixed list.
 */
import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The files the build writes, each with its content type. */
const FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "dashboard.js": "text/javascript; charset=utf-8",
  "dashboard.css": "text/css; charset=utf-8",
};

/** The folder of this package's package.json, from src/ (tsx) or dist/src/ (built). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Where the build writes the dashboard: dist/dashboard of this package. */
export function dashboardDir(): string {
  return join(packageRoot(), "dist", "dashboard");
}

/**
 * A request handler for the dashboard: GET or HEAD of /, /index.html and
 * the assets; 404 for anything else, 503 with what to run when the page was
 * never built. Files are read at each request, so a rebuild needs no restart.
 */
export function createDashboardHandler(dir = dashboardDir()): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    const name = path === "/" ? "index.html" : path.slice(1);
    const type = FILES[name];
    if (!type || (req.method !== "GET" && req.method !== "HEAD")) {
      const body = `${req.method} ${path}: not found. The dashboard is at /; RPCs are POST /realtime.v1.Realtime/<Method>\n`;
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(dir, name));
    } catch {
      const body = `the dashboard is not built (${join(dir, name)} is missing): run npm run build\n`;
      res.writeHead(503, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    res.writeHead(200, {
      "content-type": type,
      "content-length": bytes.length,
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'self'; style-src 'self'; img-src 'self' data:",
    });
    res.end(req.method === "HEAD" ? undefined : bytes);
  };
}
