import { readFileSync } from "node:fs";

/**
 * The version in package.json, found from the source (src/) or the build
 * (dist/src/); "unknown" when neither is there.
 */
export const VERSION: string = (() => {
  for (const path of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "switchboard" && pkg.version) return pkg.version;
    } catch {
      // not there; try the next
    }
  }
  return "unknown";
})();
