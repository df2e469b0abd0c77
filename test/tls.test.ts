/**
 * TLS in the process: with REALTIME_TLS_CERT_FILE and REALTIME_TLS_KEY_FILE
 * the API's gRPC and HTTP ports and the edge's WebSocket port serve TLS
 * (the link stays plain), a client that trusts the certificate gets a Send
 * through to a wss:// client, and a bad or half TLS configuration refuses to
 * start. The certificate is self-signed, made by openssl for this run.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ServerFrameSchema, type ServerFrame } from "../gen/realtime/client/v1/client_pb.js";
import { fromJsonString } from "@bufbuild/protobuf";
import { Realtime, SendRequestSchema, type SendResponse } from "../gen/realtime/v1/realtime_pb.js";
import { serviceDefinition } from "../src/api/grpc/adapter.js";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";

const dir = mkdtempSync(join(tmpdir(), "switchboard-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");
let ca: Buffer;
let cluster: Cluster;

beforeAll(async () => {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  ca = readFileSync(cert);
  cluster = await startCluster(1, { REALTIME_TLS_CERT_FILE: cert, REALTIME_TLS_KEY_FILE: key });
});

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

function httpsText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpsGet(url, { ca }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

describe("TLS in the process", () => {
  it("serves wss:// on the edge and TLS on the API's gRPC and HTTP ports", async () => {
    expect(cluster.ws[0]).toMatch(/^wss:\/\//);
    const ws = new WebSocket(cluster.ws[0]!, "realtime.v1.json", { ca });
    const frames: ServerFrame[] = [];
    const waiters: (() => void)[] = [];
    ws.on("message", (data: Buffer) => {
      frames.push(fromJsonString(ServerFrameSchema, data.toString()));
      waiters.splice(0).forEach((w) => w());
    });
    const until = async (pred: (f: ServerFrame) => boolean) => {
      while (!frames.some(pred)) await new Promise<void>((resolve) => waiters.push(resolve));
      return frames.find(pred)!;
    };
    await until((f) => f.frame.case === "connected");
    ws.send(JSON.stringify({ id: 1, join: { channel: "secure" } }));
    await until((f) => f.frame.case === "reply" && f.frame.value.id === 1);

    const Client = grpc.makeGenericClientConstructor(serviceDefinition(Realtime), "Realtime");
    const client = new Client(cluster.grpc, grpc.credentials.createSsl(ca)) as unknown as grpc.Client &
      Record<string, Function>;
    const res = await new Promise<SendResponse>((resolve, reject) =>
      client.send!(
        create(SendRequestSchema, {
          channel: "secure",
          event: "hello",
          payload: { case: "json", value: fromJson(ValueSchema, { ok: true }) },
        }),
        (err: grpc.ServiceError | null, r: SendResponse) => (err ? reject(err) : resolve(r)),
      ),
    );
    client.close();
    expect(res.edges).toBe(1);
    const event = await until((f) => f.frame.case === "event" && f.frame.value.event === "hello");
    expect(event.frame.value).toMatchObject({ channel: "secure" });
    ws.close();

    expect(await httpsText(`https://${cluster.api.ready.http}/readyz`)).toEqual({ status: 200, body: "ready\n" });
    expect(await httpsText(`${cluster.ws[0]!.replace(/^wss:/, "https:")}/readyz`)).toEqual({
      status: 200,
      body: "ready\n",
    });
  });

  it("does not answer plain HTTP on a TLS port", async () => {
    await expect(fetch(`http://${cluster.api.ready.http}/healthz`)).rejects.toThrow();
  });

  it("refuses to start with an unreadable file or only one of the two", () => {
    const cli = (env: NodeJS.ProcessEnv) =>
      spawnSync(
        process.execPath,
        ["--import", "tsx", fileURLToPath(new URL("../src/cli.ts", import.meta.url)), "edge", "--ws-port", "0"],
        {
          cwd: ROOT,
          env: { ...process.env, REALTIME_LOG_LEVEL: "warn", ...env },
          encoding: "utf8",
          timeout: 20_000,
        },
      );
    const missing = cli({ REALTIME_TLS_CERT_FILE: join(dir, "nope.pem"), REALTIME_TLS_KEY_FILE: key });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(`REALTIME_TLS_CERT_FILE=${JSON.stringify(join(dir, "nope.pem"))}: cannot read`);
    const notPem = join(dir, "not.pem");
    writeFileSync(notPem, "hello");
    expect(cli({ REALTIME_TLS_CERT_FILE: notPem, REALTIME_TLS_KEY_FILE: key }).stderr).toContain("is not a PEM file");
    const half = cli({ REALTIME_TLS_CERT_FILE: cert });
    expect(half.status).toBe(2);
    expect(half.stderr).toContain("REALTIME_TLS_KEY_FILE (--tls-key-file): must be set too");
  });
});
