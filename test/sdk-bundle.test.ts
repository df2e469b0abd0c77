/**
 * The SDK must bundle for browsers: nothing in src/client/ may reach `ws`
 * or a node:* module, directly or through what it imports; and of the rest
 * of src/ it imports only src/protocol/, what the server and the SDK share,
 * and src/wire/client-json.ts, its JSON encoding (docs/architecture.md).
 * Its main entry point loads nothing of protobuf-es or gen/ (the JSON
 * encoding is written by hand); the binary encoding, src/client/proto.ts,
 * does. test/sdk-package.test.ts measures both bundles from the package.
 */
import { build } from "esbuild";
import { describe, expect, it } from "vitest";
import NodeWebSocket from "ws";
import type { WebSocketConstructor } from "../src/client/index.js";

/** Bundles entry for browsers; fails on an error or on an input from `ws` or node:*. */
async function bundle(entry: string): Promise<{ inputs: string[]; code: string }> {
  const result = await build({
    entryPoints: [entry],
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
  return { inputs, code: result.outputFiles[0]!.text };
}

describe("switchboard/client bundle", () => {
  it("bundles for the browser without node modules or protobuf-es, and of the rest of src/ takes only src/protocol/ and src/wire/client-json.ts", async () => {
    const { inputs, code } = await bundle("src/client/index.ts");
    const outside = inputs.filter((p) => p.startsWith("src/") && !p.startsWith("src/client/"));
    expect(outside.filter((p) => !p.startsWith("src/protocol/") && p !== "src/wire/client-json.ts")).toEqual([]);
    expect(outside.length).toBeGreaterThan(0);
    expect(inputs.filter((p) => /(^|\/)node_modules\/@bufbuild\/|^gen\//.test(p))).toEqual([]);
    expect(code).not.toMatch(/require\(["'](node:|ws["'])/);
    expect(code).toMatch(/RealtimeClient = class|class RealtimeClient/);
  });

  it("bundles the binary encoding (src/client/proto.ts) with protobuf-es and the generated frames, and no node modules", async () => {
    const { inputs } = await bundle("src/client/proto.ts");
    expect(inputs).toContain("gen/realtime/client/v1/client_pb.ts");
    expect(inputs.some((p) => /(^|\/)node_modules\/@bufbuild\/protobuf\//.test(p))).toBe(true);
  });

  it("takes the browser's WebSocket class and ws's as they are (checked by tsc)", () => {
    const browser: WebSocketConstructor | undefined = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    const node: WebSocketConstructor = NodeWebSocket;
    expect(typeof node).toBe("function");
    expect(browser === undefined || typeof browser === "function").toBe(true);
  });
});
