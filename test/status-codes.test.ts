/**
 * The one table of status codes (src/protocol/status-codes.ts) against
 * everything else that numbers or names them: gRPC's own list (grpc-js
 * `status`, whose keys are gRPC's canonical names), connect's `Code`, the
 * client protocol's wire enum (realtime.client.v1.ErrorCode), the SDK's
 * ErrorCode and codeName, and the metrics' `code` label.
 */
import { Code as ConnectCode } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ErrorCodeSchema } from "../gen/realtime/client/v1/client_pb.js";
import { ErrorCode, codeName } from "../src/client/index.js";
import { codeLabel } from "../src/metrics/metrics.js";
import { Code as ErrorsCode } from "../src/protocol/errors.js";
import { CODE_NAMES, Code } from "../src/protocol/status-codes.js";

/** The numeric members of a TypeScript enum, as [name, number]. */
function members(e: object): [string, number][] {
  return Object.entries(e).filter((entry): entry is [string, number] => typeof entry[1] === "number");
}

describe("the status code table", () => {
  it("has every gRPC code, 0 to 16, in order, named as gRPC names them (CANCELLED)", () => {
    expect(Object.values(Code)).toEqual([...Array(17).keys()]);
    expect(CODE_NAMES).toHaveLength(17);
    expect(members(grpc.status).map(([name, n]) => [n, name])).toEqual(CODE_NAMES.map((name, n) => [n, name]));
    expect(CODE_NAMES[Code.Canceled]).toBe("CANCELLED");
  });

  it("numbers the codes as connect's Code does, under the same names (and OK, which connect leaves out)", () => {
    expect(Object.fromEntries(members(ConnectCode))).toEqual(
      Object.fromEntries(Object.entries(Code).filter(([name]) => name !== "Ok")),
    );
    expect(Code.Ok).toBe(0);
  });

  it("is the Code that RealtimeError carries", () => {
    expect(ErrorsCode).toBe(Code);
  });

  it("numbers and names each code of the client protocol's ErrorCode (the wire form) as the table does", () => {
    const wire = ErrorCodeSchema.values.filter((v) => v.number !== 0);
    expect(wire.length).toBeGreaterThan(0);
    for (const value of wire) expect(value.name).toBe(`ERROR_CODE_${CODE_NAMES[value.number]}`);
    expect(ErrorCodeSchema.values.find((v) => v.number === 0)?.name).toBe("ERROR_CODE_UNSPECIFIED");
  });

  it("gives the SDK its ErrorCode numbers and codeName's names", () => {
    for (const [name, n] of Object.entries(ErrorCode)) expect(Code[name as keyof typeof Code]).toBe(n);
    expect(codeName(ErrorCode.Canceled)).toBe("CANCELLED");
    expect(codeName(ErrorCode.FailedPrecondition)).toBe("FAILED_PRECONDITION");
    expect(codeName(Code.AlreadyExists)).toBe("ALREADY_EXISTS");
    // A code no gRPC version has (a newer edge) is kept, not lost.
    expect(codeName(99)).toBe("CODE_99");
  });

  it("gives the metrics their code label, UNKNOWN outside the table", () => {
    expect(CODE_NAMES.map((_, n) => codeLabel(n))).toEqual([...CODE_NAMES]);
    expect(codeLabel(99)).toBe("UNKNOWN");
  });
});
