/**
 * A backend in another language: examples/python/backend.py, with stubs
 * generated from proto/ by Debian's protoc and grpc_python_plugin, calls the
 * real gRPC API; WebSocket clients of both encodings receive its JSON and
 * binary events and its broadcast.
 *
 * Where the Debian packages are missing the test is skipped with a line that
 * says which; under CI=true it must run.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { TestClient } from "./helpers/ws-client.js";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const EXAMPLE = join(ROOT, "examples", "python");
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

const absent = await missing();
if (absent.length > 0 && !IN_CI) console.warn(`python-example: SKIPPED: missing ${absent.join(", ")} (apt-get install them); under CI=true this test runs and fails instead`);

describe.skipIf(absent.length > 0 && !IN_CI)("examples/python/backend.py", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    if (absent.length > 0) throw new Error(`CI=true and ${absent.join(", ")} missing: .ci/run must install .ci/apt-packages.txt`);
    await run("sh", [join(EXAMPLE, "generate.sh")]);
    cluster = await startCluster(1);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await stopAll();
  });

  it("sends JSON and binary events and a broadcast that WebSocket clients of both encodings receive", async () => {
    const j = await TestClient.connect(cluster.ws[0]!, "json");
    const p = await TestClient.connect(cluster.ws[0]!, "proto");
    const raw: string[] = [];
    j.ws.on("message", (d: Buffer) => raw.push(d.toString()));
    for (const c of [j, p]) await c.ok({ command: { case: "join", value: { channel: "orders" } } });

    const { stdout } = await run(PYTHON, [join(EXAMPLE, "backend.py"), "--target", cluster.grpc, "--channel", "orders"], { timeout: 30_000 });
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.call)).toEqual(["GetMembers", "Send", "Send", "Broadcast"]);
    expect((lines[0]!.members as { id: string }[]).map((m) => m.id).sort()).toEqual([j.id, p.id].sort());
    expect(lines[1]).toMatchObject({ payload: "json", edges: 1 });
    expect(lines[2]).toMatchObject({ payload: "binary", edges: 1 });

    for (const c of [j, p]) {
      const shipped = await c.event("order.shipped", "orders");
      expect(shipped.id).toBe(lines[1]!.message_id);
      expect(toJson(ValueSchema, shipped.payload.value as never)).toEqual({ order: 1042, carrier: "DHL", lang: "python" });
      const frame = await c.event("frame", "orders");
      expect(frame.payload.case).toBe("binary");
      expect([...(frame.payload.value as Uint8Array)]).toEqual([0, 1, 2, 253, 254, 255]);
      const cast = await c.event("announcement");
      expect(toJson(ValueSchema, cast.payload.value as never)).toEqual({ text: "maintenance at 18:00", from: "python" });
    }
    // On the wire, the JSON client got the bytes as base64 and the JSON inline.
    const wire = raw.map((r) => JSON.parse(r) as { event?: { event: string; binary?: string; json?: unknown } }).filter((f) => f.event);
    expect(wire.find((f) => f.event!.event === "frame")!.event!.binary).toBe(Buffer.from([0, 1, 2, 253, 254, 255]).toString("base64"));
    expect(wire.find((f) => f.event!.event === "order.shipped")!.event!.json).toEqual({ order: 1042, carrier: "DHL", lang: "python" });
    await j.close();
    await p.close();
  }, 60_000);

  it("exits non-zero with the gRPC status when a call fails", async () => {
    const err = await run(PYTHON, [join(EXAMPLE, "backend.py"), "--target", cluster.grpc, "--channel", "bad channel"]).then(
      () => undefined,
      (e: { code: number; stdout: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(JSON.parse(err!.stdout.trim())).toMatchObject({ error: "INVALID_ARGUMENT" });
  });
});
