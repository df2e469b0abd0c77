/**
 * The SDK must bundle for browsers: nothing in src/client/ may reach `ws`
 * or a node:* module, directly or through what it imports; and of the core
 * it imports only the close codes and the Unicode rule (docs/architecture.md).
 */
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import NodeWebSocket from "ws";
import { SUBPROTOCOL } from "../src/client/codec.js";
import { SystemEvent as ClientSystemEvent, type WebSocketConstructor } from "../src/client/index.js";
import { SystemEvent } from "../src/core/names.js";
import { Encoding } from "../src/core/transport.js";

describe("switchboard/client bundle", () => {
  it("bundles for the browser without node modules, and of the core takes only the close codes and the Unicode rule", async () => {
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
    expect(inputs.filter((p) => p.startsWith("src/") && !p.startsWith("src/client/"))).toEqual([
      "src/core/close-codes.ts",
      "src/core/unicode.ts",
    ]);
    const code = result.outputFiles[0]!.text;
    expect(code).not.toMatch(/require\(["'](node:|ws["'])/);
    expect(code).toMatch(/RealtimeClient = class|class RealtimeClient/);
  });

  it("restates the core's subprotocols and system event names exactly", () => {
    expect(SUBPROTOCOL).toEqual({ json: Encoding.Json, proto: Encoding.Proto });
    expect(ClientSystemEvent).toEqual(SystemEvent);
  });

  it("takes the browser's WebSocket class and ws's as they are (checked by tsc)", () => {
    const browser: WebSocketConstructor | undefined = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    const node: WebSocketConstructor = NodeWebSocket;
    expect(typeof node).toBe("function");
    expect(browser === undefined || typeof browser === "function").toBe(true);
  });
});
