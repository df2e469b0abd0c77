/**
 * The SDK must bundle for browsers: nothing in src/client/ may reach `ws`
 * or a node:* module, directly or through what it imports; and of the rest
 * of src/ it imports only src/protocol/, what the server and the SDK share
 * (docs/architecture.md).
 */
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import NodeWebSocket from "ws";
import type { WebSocketConstructor } from "../src/client/index.js";

describe("switchboard/client bundle", () => {
  it("bundles for the browser without node modules, and of the rest of src/ takes only src/protocol/", async () => {
    const result = await build({
      entryPoints: ["src/client/index.ts"],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((p) => /(^|\/)node_modules\/ws\//.test(p) || p.startsWith("node:"))).toEqual([]);
    const outside = inputs.filter((p) => p.startsWith("src/") && !p.startsWith("src/client/"));
    expect(outside.filter((p) => !p.startsWith("src/protocol/"))).toEqual([]);
    expect(outside.length).toBeGreaterThan(0);
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/require\(["'](node:|ws["'])/);
    expect(code).toMatch(/RealtimeClient = class|class RealtimeClient/);
  });

  it("takes the browser's WebSocket class and ws's as they are (checked by tsc)", () => {
    const browser: WebSocketConstructor | undefined = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    const node: WebSocketConstructor = NodeWebSocket;
    expect(typeof node).toBe("function");
    expect(browser === undefined || typeof browser === "function").toBe(true);
  });
});
