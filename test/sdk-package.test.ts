/**
 * Both packages as a user gets them: the SDK (packages/client, built from
 * src/client/ by `npm run build:client`) and the server (the root package)
 * are packed with `npm pack` and installed from their tarballs, offline
 * (from the local npm cache), into a fresh project outside the repository.
 * There the SDK is imported by its name in Node and talks to a real
 * Switchboard, bundled for browsers by esbuild (a JSON-only bundle holds no
 * protobuf-es and stays under JSON_BUNDLE_MAX_BYTES; one with the binary
 * encoding does), and type-checked by tsc without @types/ws; and the
 * server's bin runs, `switchboard dev` included (an API and an edge that
 * deliver a Send).
 */
import { execFile, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
  type Dirent,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDashboard } from "../src/dashboard/build.js";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { TestClient } from "./helpers/ws-client.js";

const run = promisify(execFile);
const tmp = mkdtempSync(join(tmpdir(), "switchboard-sdk-pkg-"));
const app = join(tmp, "app");
const bin = (name: string) => join(ROOT, "node_modules/.bin", name);
const npmEnv = { ...process.env, npm_config_update_notifier: "false" };

/**
 * The most a minified browser bundle of the SDK that speaks JSON only may
 * take. Measured at 28.7 KB (9.9 KB gzipped) when the JSON encoding was
 * written by hand (src/wire/client-json.ts); it was 110 KB while it went
 * through protobuf-es, whose runtime is about 88 KB of that.
 */
const JSON_BUNDLE_MAX_BYTES = 40_000;

/** Bundles code (a user's file) for browsers from the installed packages, as esbuild does. */
async function bundle(name: string, code: string) {
  writeFileSync(join(app, name), code);
  const result = await build({
    absWorkingDir: app,
    entryPoints: [name],
    bundle: true,
    platform: "browser",
    format: "esm",
    minify: true,
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  expect(result.errors).toEqual([]);
  const out = result.outputFiles[0]!;
  return {
    inputs: Object.keys(result.metafile.inputs),
    text: out.text,
    bytes: out.contents.length,
    gzipped: gzipSync(out.contents).length,
  };
}

/** Packs the package in dir into tmp; returns the tarball's path. */
async function pack(dir: string, ...extra: string[]): Promise<string> {
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", tmp, ...extra], {
    cwd: dir,
    env: npmEnv,
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  // npm pack may print a prepare script's output before its JSON.
  const [info] = JSON.parse(stdout.slice(stdout.indexOf("[\n"))) as { filename: string }[];
  return join(tmp, info!.filename);
}

let cluster: Cluster | undefined;
const timings: Record<string, number> = {};

beforeAll(async () => {
  let t = Date.now();
  // The two builds run side by side. The server is built as `npm run build`
  // builds it (tsc, then the dashboard), but into a package root of its own
  // beside a copy of package.json, and packed from there without scripts:
  // the repository's dist/ is served by other tests' API processes (the
  // dashboard) and must not be rewritten under them.
  const serverRoot = join(tmp, "server");
  mkdirSync(serverRoot);
  for (const f of ["package.json", "LICENSE", "README.md"]) copyFileSync(join(ROOT, f), join(serverRoot, f));
  const [sdk, server] = await Promise.all([
    run("npm", ["run", "build:client"], { cwd: ROOT, env: npmEnv, timeout: 90_000 }).then(() =>
      pack(join(ROOT, "packages/client"), "--ignore-scripts"),
    ),
    run(bin("tsc"), ["-p", "tsconfig.build.json", "--outDir", join(serverRoot, "dist")], {
      cwd: ROOT,
      timeout: 120_000,
    }).then(async () => {
      await buildDashboard(join(serverRoot, "dist", "dashboard"));
      return pack(serverRoot, "--ignore-scripts");
    }),
  ]);
  timings.buildAndPack = Date.now() - t;

  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  t = Date.now();
  const install = (mode: string) =>
    run("npm", ["install", mode, "--no-audit", "--no-fund", sdk, server, "ws@8"], {
      cwd: app,
      env: npmEnv,
      timeout: 90_000,
    });
  // npm ci caches tarballs but not the registry's metadata of each package, which
  // resolving names needs: when that is missing, --prefer-offline fetches only it.
  await install("--offline").then(
    () => (timings.offline = 1),
    async (err: { stderr?: string }) => {
      if (!/ENOTCACHED/.test(err.stderr ?? "")) throw err;
      await install("--prefer-offline");
      timings.offline = 0;
    },
  );
  timings.install = Date.now() - t;
  console.log("sdk-package timings (ms):", timings);
}, 180_000);

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
  rmSync(tmp, { recursive: true, force: true });
});

describe("@switchboard/client installed from its tarball", () => {
  it("is imported by name in Node (ws as WebSocket, the binary encoding from /proto), joins a channel and receives an event sent over gRPC", async () => {
    cluster = await startCluster(1);
    writeFileSync(
      join(app, "receive.mjs"),
      `import WebSocket from "ws";
       import { RealtimeClient } from "@switchboard/client";
       import { protoEncoding } from "@switchboard/client/proto";
       const rt = new RealtimeClient({ url: process.argv[2], WebSocket, encoding: protoEncoding });
       rt.on("greet", (e) => { console.log(JSON.stringify({ channel: e.channel, message: e.message })); rt.close(); });
       await rt.join("pkg-room");
       console.log("joined");`,
    );
    const child = spawn(process.execPath, ["receive.mjs", cluster.ws[0]!], {
      cwd: app,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const lines: string[] = [];
    const grpc = realtimeClient(cluster.grpc);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no event after 20 s: ${lines.join("\n")}\n${stderr}`)),
          20_000,
        );
        child.once("exit", (code) => {
          clearTimeout(timer);
          if (lines.length < 2) reject(new Error(`exited with ${code}: ${lines.join("\n")}\n${stderr}`));
          else resolve();
        });
        createInterface({ input: child.stdout }).on("line", (line) => {
          lines.push(line);
          if (line === "joined")
            grpc
              .send({
                channel: "pkg-room",
                event: "greet",
                payload: { case: "json", value: fromJson(ValueSchema, { hello: "from gRPC", n: 7 }) },
              })
              .catch(reject);
        });
      });
    } finally {
      grpc.close();
      child.kill();
    }
    expect(await exited).toBe(0);
    expect(lines[0]).toBe("joined");
    expect(JSON.parse(lines[1]!)).toEqual({ channel: "pkg-room", message: { hello: "from gRPC", n: 7 } });
  }, 60_000);

  it("holds the SDK, what it shares with the server (src/protocol/, src/wire/client-json.ts) and its generated frames, and no server code", () => {
    const root = join(app, "node_modules/@switchboard/client");
    const files = (readdirSync(root, { recursive: true, withFileTypes: true }) as Dirent[])
      .filter((d) => d.isFile())
      .map((d) => relative(root, join(d.parentPath, d.name)));
    expect(files).toContain("dist/src/client/index.js");
    expect(files).toContain("dist/src/client/index.d.ts");
    expect(files).toContain("dist/src/client/proto.js");
    expect(files).toContain("dist/src/client/proto.d.ts");
    expect(files).toContain("LICENSE");
    const other = files.filter(
      (f) =>
        !/^dist\/(src\/client|src\/protocol|gen\/realtime\/client)\//.test(f) &&
        !/^dist\/src\/wire\/client-json\.(js|d\.ts)$/.test(f) &&
        !["LICENSE", "README.md", "package.json"].includes(f),
    );
    expect(other).toEqual([]);
  });

  it("bundles for browsers from the installed package (esbuild), JSON-only without protobuf-es, and with it for the binary encoding", async () => {
    const json = await bundle(
      "browser.js",
      `import { RealtimeClient } from "@switchboard/client";
       export const rt = new RealtimeClient({ url: "wss://edge.example.com", encoding: "json" });`,
    );
    const proto = await bundle(
      "browser-proto.js",
      `import { RealtimeClient } from "@switchboard/client";
       import { protoEncoding } from "@switchboard/client/proto";
       export const rt = new RealtimeClient({ url: "wss://edge.example.com", encoding: protoEncoding });`,
    );
    console.log(
      `sdk-package browser bundles (bytes): JSON-only ${json.bytes} minified, ${json.gzipped} gzipped; ` +
        `with the binary encoding ${proto.bytes} minified, ${proto.gzipped} gzipped`,
    );
    for (const b of [json, proto]) {
      expect(b.inputs.some((p) => p.startsWith("node_modules/@switchboard/client/dist/"))).toBe(true);
      expect(b.inputs.filter((p) => p.startsWith("node:") || /node_modules\/(ws|switchboard)\//.test(p))).toEqual([]);
      expect(b.text).not.toMatch(/require\(|from ?["']node:/);
    }
    expect(json.inputs.filter((p) => /node_modules\/@bufbuild\/|\/dist\/gen\//.test(p))).toEqual([]);
    expect(json.bytes).toBeLessThan(JSON_BUNDLE_MAX_BYTES);
    expect(proto.inputs.some((p) => p.startsWith("node_modules/@bufbuild/protobuf/"))).toBe(true);
    expect(proto.bytes).toBeGreaterThan(json.bytes);
  });

  it("type-checks a user's TypeScript file against the packed types, without @types/ws", async () => {
    expect(existsSync(join(app, "node_modules/@types/ws"))).toBe(false);
    writeFileSync(
      join(app, "user.ts"),
      `import { RealtimeClient, ErrorCode, type MessageEvent, type WebSocketConstructor } from "@switchboard/client";
       import { protoEncoding } from "@switchboard/client/proto";
       declare const Ctor: WebSocketConstructor;
       const rt = new RealtimeClient({ url: "ws://localhost:8080", WebSocket: Ctor, encoding: protoEncoding });
       // @ts-expect-error: the binary encoding is imported from /proto, not named
       new RealtimeClient({ url: "ws://localhost:8080", WebSocket: Ctor, encoding: "proto" });
       rt.on("chat", (e: MessageEvent) => console.log(e.channel, e.message));
       const code: ErrorCode = ErrorCode.DeadlineExceeded;
       // @ts-expect-error: the URL is required
       new RealtimeClient({});
       export { rt, code };`,
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022", "DOM"],
          strict: true,
          noEmit: true,
          types: [],
        },
        files: ["user.ts"],
      }),
    );
    const result = await run(bin("tsc"), ["-p", "tsconfig.json"], { cwd: app, timeout: 60_000 }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
    expect(result.out).toBe("");
    expect(result.code).toBe(0);
  }, 60_000);
});

describe("switchboard installed from its tarball", () => {
  it("runs its bin", async () => {
    const { stdout } = await run("npm", ["exec", "--offline", "--", "switchboard", "--help"], {
      cwd: app,
      env: npmEnv,
      timeout: 30_000,
    });
    expect(stdout).toMatch(/^Usage: switchboard <command>/);
    expect(stdout).toMatch(/\bedge\b/);
  }, 40_000);

  it("starts `switchboard dev` from its bin: an API and an edge that deliver a Send, and stop on SIGTERM", async () => {
    const dev = spawn(process.execPath, [join(app, "node_modules/.bin/switchboard"), "dev"], {
      cwd: app,
      env: {
        ...process.env,
        REALTIME_GRPC_PORT: "0",
        REALTIME_HTTP_PORT: "0",
        REALTIME_LINK_PORT: "0",
        REALTIME_WS_PORT: "0",
        REALTIME_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    dev.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => dev.once("exit", resolve));
    try {
      // Not a TTY: the children's ready lines, as JSON, one per role.
      const ready = await new Promise<Record<string, Record<string, string>>>((resolve, reject) => {
        const seen: Record<string, Record<string, string>> = {};
        const timer = setTimeout(() => reject(new Error(`not ready after 30 s:\n${stderr}`)), 30_000);
        dev.once("exit", (code) => reject(new Error(`switchboard dev exited with ${code}:\n${stderr}`)));
        createInterface({ input: dev.stdout }).on("line", (line) => {
          try {
            const msg = JSON.parse(line) as Record<string, string>;
            if (msg.ready) seen[msg.ready] = msg;
          } catch {
            // not a ready line
          }
          if (seen.api && seen.edge) {
            clearTimeout(timer);
            resolve(seen);
          }
        });
      });
      const member = await TestClient.connect(ready.edge!.ws!, "json");
      await member.ok({ command: { case: "join", value: { channel: "dev-room" } } });
      const grpc = realtimeClient(ready.api!.grpc!);
      try {
        const sent = await grpc.send({
          channel: "dev-room",
          event: "hello",
          payload: { case: "json", value: fromJson(ValueSchema, { from: "the packed bin" }) },
        });
        expect(sent.edges).toBe(1);
        await member.event("hello", "dev-room");
      } finally {
        grpc.close();
        await member.close();
      }
      dev.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      dev.kill("SIGKILL");
    }
  }, 60_000);

  it("exports the SDK as switchboard/client and its binary encoding as switchboard/client/proto", async () => {
    const { stdout } = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const [c, p] = await Promise.all([import("switchboard/client"), import("switchboard/client/proto")]);
         console.log(typeof c.RealtimeClient, p.protoEncoding.subprotocol);`,
      ],
      { cwd: app, timeout: 30_000 },
    );
    expect(stdout.trim()).toBe("function realtime.v1.proto");
  }, 40_000);
});
