// Server reflection lets `buf curl` (and grpcurl) call the API with no proto
// file: served by grpc-js through the adapter, checked with the real buf CLI
// and with a raw grpc-js client speaking v1alpha.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { fromBinary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  type ServerReflectionRequestSchema,
  type ServerReflectionResponseSchema,
} from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { addService, serviceDefinition } from "../src/api/grpc/adapter.js";
import { createHealth } from "../src/api/health.js";
import { addReflection } from "../src/api/grpc/reflection.js";
import { watchLeaks } from "./helpers/leaks.js";

const BUF = new URL("../node_modules/.bin/buf", import.meta.url).pathname;
/** buf curl starts a Go binary: generous, but bounded. */
const BUF_TIMEOUT_MS = 20_000;
const NOT_FOUND = 5;

const run = promisify(execFile);
async function bufCurl(...args: string[]): Promise<string> {
  const { stdout } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    timeout: BUF_TIMEOUT_MS,
  });
  return stdout;
}

// No leaked handles once the server and clients are closed.
const leaks = watchLeaks();

let server: grpc.Server;
let address: string;
beforeAll(async () => {
  leaks.start();
  server = new grpc.Server();
  addService(server, Realtime, {
    getMembers: (req) => ({
      members: [{ id: `conn-1@${req.channel}`, data: { kind: { case: "stringValue", value: "alice" } } }],
    }),
  });
  addService(server, Health, createHealth().impl);
  addReflection(server, [Realtime, Health]);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  await leaks.check();
});

const SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "realtime.v1.Realtime",
];

describe("buf curl, through reflection only", () => {
  it("lists the services (v1)", async () => {
    const out = await bufCurl("--list-services", `http://${address}`);
    expect(out.trim().split("\n").sort()).toEqual(SERVICES);
  });

  it("lists the services over v1alpha", async () => {
    const out = await bufCurl("--reflect-protocol", "grpc-v1alpha", "--list-services", `http://${address}`);
    expect(out.trim().split("\n").sort()).toEqual(SERVICES);
  });

  it("lists the methods", async () => {
    const out = await bufCurl("--list-methods", `http://${address}`);
    for (const method of [
      "realtime.v1.Realtime/Send",
      "realtime.v1.Realtime/GetMembers",
      "grpc.health.v1.Health/Watch",
    ]) {
      expect(out).toContain(method);
    }
  });

  it("calls realtime.v1.Realtime/GetMembers, JSON in and out, google.protobuf.Value included", async () => {
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const out = await bufCurl(
        "--reflect-protocol",
        protocol,
        "-d",
        '{"channel":"room-1"}',
        `http://${address}/realtime.v1.Realtime/GetMembers`,
      );
      expect(JSON.parse(out)).toEqual({ members: [{ id: "conn-1@room-1", data: "alice" }] });
    }
  });
});

describe("a raw grpc-js client on grpc.reflection.v1alpha", () => {
  type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;
  type Response = MessageShape<typeof ServerReflectionResponseSchema>;

  /** Sends the requests on one stream and returns the responses in order. */
  async function ask(requests: Request[]): Promise<Response[]> {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    try {
      const method = serviceDefinition(ServerReflectionV1alpha).serverReflectionInfo!;
      const call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
      const responses: Response[] = [];
      for (const request of requests) call.write(request);
      call.end();
      for await (const response of call) responses.push(response as Response);
      return responses;
    } finally {
      client.close();
    }
  }

  const fileNames = (r: Response) =>
    r.messageResponse.case === "fileDescriptorResponse"
      ? r.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name)
      : r.messageResponse;

  it("answers list_services", async () => {
    const [r] = await ask([{ host: "h", messageRequest: { case: "listServices", value: "*" } }]);
    expect(r.validHost).toBe("h");
    expect(r.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
    expect(r.messageResponse.case).toBe("listServicesResponse");
    if (r.messageResponse.case !== "listServicesResponse") return;
    expect(r.messageResponse.value.service.map((s) => s.name).sort()).toEqual(SERVICES);
  });

  it("answers a symbol with its file and imports, sending each import once per stream", async () => {
    const responses = await ask([
      { messageRequest: { case: "fileContainingSymbol", value: "realtime.v1.Member" } },
      { messageRequest: { case: "fileContainingSymbol", value: "realtime.v1.Realtime.GetMembers" } },
      { messageRequest: { case: "fileContainingSymbol", value: "realtime.v1.SendRequest.channel" } },
      { messageRequest: { case: "fileByFilename", value: "google/protobuf/struct.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "google.protobuf.NULL_VALUE" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" } },
    ]);
    expect(responses.map(fileNames)).toEqual([
      ["realtime/v1/realtime.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"],
      ["realtime/v1/realtime.proto"],
      ["realtime/v1/realtime.proto"],
      ["google/protobuf/struct.proto"],
      ["google/protobuf/struct.proto"],
      ["grpc/health/v1/health.proto"],
    ]);
  });

  it("answers NOT_FOUND for unknown files, symbols and extensions, and keeps the stream open", async () => {
    const responses = await ask([
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "realtime.v1.Nope" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "realtime.v1.Member", extensionNumber: 100 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "realtime.v1.Nope" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "realtime.v1.Member" } },
    ]);
    const errors = responses.slice(0, 4).map((r) => r.messageResponse);
    for (const e of errors) {
      expect(e.case).toBe("errorResponse");
      if (e.case === "errorResponse") expect(e.value.errorCode).toBe(NOT_FOUND);
    }
    expect(responses[4].messageResponse).toMatchObject({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "realtime.v1.Member", extensionNumber: [] },
    });
  });
});
