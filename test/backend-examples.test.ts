/**
 * Backends in other languages: examples/python/backend.py and
 * examples/go/main.go, each with stubs generated from proto/ by Debian's
 * protoc and plugins, call the real gRPC API; WebSocket clients of both
 * encodings receive their JSON and binary events and their broadcast.
 *
 * Where the Debian packages are missing a language is skipped with a line
 * that says which; under CI=true both must run.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { upgrade } from "./helpers/trust.js";
import { TestClient } from "./helpers/ws-client.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const EXAMPLE = join(ROOT, "examples", "python");
const GO_EXAMPLE = join(ROOT, "examples", "go");
const IN_CI = process.env.CI === "true";

/** What is missing to run the example, as apt package names. */
async function missing(): Promise<string[]> {
  const out: string[] = [];
  if (!existsSync(PYTHON)) return ["python3"];
  try {
    await run(PYTHON, ["-c", "import grpc, google.protobuf"]);
  } catch {
    out.push("python3-grpcio python3-protobuf");
  }
  if (!existsSync("/usr/bin/protoc")) out.push("protobuf-compiler");
  if (!existsSync("/usr/bin/grpc_python_plugin")) out.push("protobuf-compiler-grpc");
  if (!existsSync("/usr/include/google/protobuf/struct.proto")) out.push("libprotobuf-dev");
  return out;
}

/** What is missing to build the Go example, as apt package names. */
function missingGo(): string[] {
  const need: [string, string][] = [
    ["/usr/bin/go", "golang-go"],
    ["/usr/share/gocode/src/google.golang.org/grpc", "golang-google-grpc-dev"],
    ["/usr/share/gocode/src/google.golang.org/protobuf", "golang-google-protobuf-dev"],
    ["/usr/bin/protoc-gen-go", "protoc-gen-go"],
    ["/usr/bin/protoc-gen-go-grpc", "protoc-gen-go-grpc"],
    ["/usr/bin/protoc", "protobuf-compiler"],
    ["/usr/include/google/protobuf/struct.proto", "libprotobuf-dev"],
  ];
  return need.filter(([path]) => !existsSync(path)).map(([, pkg]) => pkg);
}

const absent = await missing();
const absentGo = missingGo();
if (absent.length > 0 && !IN_CI)
  console.warn(
    `python-example: SKIPPED: missing ${absent.join(", ")} (apt-get install them); under CI=true this test runs and fails instead`,
  );
if (absentGo.length > 0 && !IN_CI)
  console.warn(
    `go-example: SKIPPED: missing ${absentGo.join(", ")} (apt-get install them); under CI=true this test runs and fails instead`,
  );

let cluster: Cluster | undefined;
beforeAll(async () => {
  if (absent.length === 0 || absentGo.length === 0 || IN_CI) cluster = await startCluster(1);
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
});

/**
 * Runs a backend (`argv` plus --target/--channel) and checks what it printed
 * and what a JSON and a protobuf WebSocket client in the channel received.
 */
async function runsAgainstTheCluster(argv: string[], lang: string, flag: (name: string) => string) {
  const channel = `orders-${lang}`;
  const j = await TestClient.connect(cluster!.ws[0]!, "json");
  const p = await TestClient.connect(cluster!.ws[0]!, "proto");
  const raw: string[] = [];
  j.ws.on("message", (d: Buffer) => raw.push(d.toString()));
  for (const c of [j, p]) await c.ok({ command: { case: "join", value: { channel } } });

  const { stdout } = await run(argv[0]!, [...argv.slice(1), flag("target"), cluster!.grpc, flag("channel"), channel], {
    timeout: 30_000,
  });
  const lines = stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines.map((l) => l.call)).toEqual(["GetMembers", "Send", "Send", "Broadcast"]);
  const ids =
    (lines[0]!.members as { id: string }[] | undefined)?.map((m) => m.id) ?? (lines[0]!.member_ids as string[]);
  expect([...ids].sort()).toEqual([j.id, p.id].sort());
  expect(lines[1]).toMatchObject({ payload: "json", edges: 1 });
  expect(lines[2]).toMatchObject({ payload: "binary", edges: 1 });

  for (const c of [j, p]) {
    const shipped = await c.event("order.shipped", channel);
    expect(shipped.id).toBe(lines[1]!.message_id);
    expect(toJson(ValueSchema, shipped.payload.value as never)).toEqual({ order: 1042, carrier: "DHL", lang });
    const frame = await c.event("frame", channel);
    expect(frame.payload.case).toBe("binary");
    expect([...(frame.payload.value as Uint8Array)]).toEqual([0, 1, 2, 253, 254, 255]);
    const cast = await c.next(
      (f) =>
        f.frame.case === "event" && f.frame.value.event === "announcement" && f.frame.value.id === lines[3]!.message_id,
    );
    expect(toJson(ValueSchema, (cast.frame.value as unknown as { payload: { value: never } }).payload.value)).toEqual({
      text: "maintenance at 18:00",
      from: lang,
    });
  }
  // On the wire, the JSON client got the bytes as base64 and the JSON inline.
  const wire = raw
    .map((r) => JSON.parse(r) as { event?: { event: string; binary?: string; json?: unknown } })
    .filter((f) => f.event);
  expect(wire.find((f) => f.event!.event === "frame")!.event!.binary).toBe(
    Buffer.from([0, 1, 2, 253, 254, 255]).toString("base64"),
  );
  expect(wire.find((f) => f.event!.event === "order.shipped")!.event!.json).toEqual({
    order: 1042,
    carrier: "DHL",
    lang,
  });
  await j.close();
  await p.close();
}

async function failsWithStatus(argv: string[], flag: (name: string) => string) {
  const err = await run(argv[0]!, [
    ...argv.slice(1),
    flag("target"),
    cluster!.grpc,
    flag("channel"),
    "bad channel",
  ]).then(
    () => undefined,
    (e: { code: number; stdout: string }) => e,
  );
  expect(err?.code).toBe(1);
  expect(JSON.parse(err!.stdout.trim())).toMatchObject({ error: "INVALID_ARGUMENT" });
}

describe.skipIf(absent.length > 0 && !IN_CI)("examples/python/backend.py", () => {
  const argv = [PYTHON, join(EXAMPLE, "backend.py")];
  const flag = (name: string) => `--${name}`;
  beforeAll(async () => {
    if (absent.length > 0)
      throw new Error(`CI=true and ${absent.join(", ")} missing: .ci/run must install .ci/apt-packages.txt`);
    await run("sh", [join(EXAMPLE, "generate.sh")]);
  }, 60_000);

  it(
    "sends JSON and binary events and a broadcast that WebSocket clients of both encodings receive",
    () => runsAgainstTheCluster(argv, "python", flag),
    60_000,
  );
  it("exits non-zero with the gRPC status when a call fails", () => failsWithStatus(argv, flag));
  it("hooks.py authenticates connections by cookie and vetoes a join, as the edges' Hooks server", async () => {
    const server = spawn(PYTHON, [join(EXAMPLE, "hooks.py"), "--port", "0", "--sessions", "s3cr3t=alice,t0ken=bob"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines: Record<string, unknown>[] = [];
    try {
      const address = await new Promise<string>((resolve, reject) => {
        let buf = "";
        server.stdout.on("data", (d: Buffer) => {
          buf += d.toString();
          for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
            const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
            buf = buf.slice(nl + 1);
            lines.push(line);
            if (line.ready === "hooks") resolve(line.address as string);
          }
        });
        server.once("exit", (code) => reject(new Error(`hooks.py exited (${code}) before it was ready`)));
      });
      const edge = await cluster!.addEdge({
        REALTIME_HOOKS_URL: address,
        REALTIME_HOOKS_CONNECT: "true",
        REALTIME_HOOKS_JOIN_PREFIXES: "vip:",
      });
      const url = edge.ready.ws!;
      const refused = await upgrade(url, { headers: { cookie: "session=wrong" } });
      expect([refused.status, refused.body]).toEqual([403, expect.stringContaining("log in first")]);
      const alice = await TestClient.connect(url, "json", "", { cookie: "session=s3cr3t" });
      const bob = await TestClient.connect(url, "proto", "", { cookie: "session=t0ken" });
      await alice.ok({ command: { case: "join", value: { channel: "vip:lounge" } } });
      const denied = await bob.request({ command: { case: "join", value: { channel: "vip:lounge" } } });
      expect(denied.error?.message).toBe("refused by the backend's OnJoin hook: vip: channels are for alice");
      await bob.ok({ command: { case: "join", value: { channel: "lobby" } } });
      const api = realtimeClient(cluster!.grpc);
      const members = await api.getMembers({ channel: "vip:lounge" });
      api.close();
      expect(members.members.map((m) => [m.userId, toJson(ValueSchema, m.data!)])).toEqual([
        ["alice", { name: "Alice" }],
      ]);
      expect(lines.filter((l) => l.hook === "OnJoin").map((l) => [l.user, l.channel, l.allowed])).toEqual([
        ["alice", "vip:lounge", true],
        ["bob", "vip:lounge", false],
      ]);
      await Promise.all([alice.close(), bob.close()]);
      await edge.stop();
    } finally {
      server.kill();
    }
  }, 60_000);
});

describe.skipIf(absentGo.length > 0 && !IN_CI)("examples/go (GOPATH mode, Debian's Go packages)", () => {
  const argv = [join(GO_EXAMPLE, "gopath", "bin", "backend")];
  const flag = (name: string) => `-${name}`;
  beforeAll(async () => {
    if (absentGo.length > 0)
      throw new Error(`CI=true and ${absentGo.join(", ")} missing: .ci/run must install .ci/apt-packages.txt`);
    await run("sh", [join(GO_EXAMPLE, "build.sh")], { timeout: 240_000 });
  }, 240_000);

  it(
    "sends JSON and binary events and a broadcast that WebSocket clients of both encodings receive",
    () => runsAgainstTheCluster(argv, "go", flag),
    60_000,
  );
  it("exits non-zero with the gRPC status when a call fails", () => failsWithStatus(argv, flag));
});
