/**
 * The SDK must bundle for browsers: nothing in src/client/ may reach `ws`
 * or a node:* module, directly or through what it imports.
 */
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

describe("switchboard/client bundle", () => {
  it("bundles for the browser without node modules", async () => {
    const result = await build({
      entryPoints: ["src/client/index.ts"],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
      // Fail on any import that only Node can satisfy.
      external: [],
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((p) => /(^|\/)node_modules\/ws\//.test(p) || p.startsWith("node:"))).toEqual([]);
    expect(inputs.filter((p) => p.startsWith("src/")).every((p) => p.startsWith("src/client/") || p.startsWith("src/core/"))).toBe(true);
    const code = result.outputFiles[0].text;
    expect(code).not.toMatch(/require\(["'](node:|ws["'])/);
    expect(code).toMatch(/RealtimeClient = class|class RealtimeClient/);
  });
});
