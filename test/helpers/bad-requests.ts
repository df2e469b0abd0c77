/**
 * The bad requests of realtime.v1.Realtime, as data, so that one table runs
 * over every protocol (gRPC, Connect, gRPC-Web) and proves the same code and
 * message on each. They assume REALTIME_MAX_PAYLOAD_BYTES=4096.
 */
import { fromJson, type MessageInitShape } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Realtime } from "../../gen/realtime/v1/realtime_pb.js";

type Methods = (typeof Realtime)["method"];
type Unary = { [K in keyof Methods]: Methods[K]["methodKind"] extends "unary" ? K : never }[keyof Methods];

export interface BadRequest<M extends Unary = Unary> {
  name: string;
  method: M;
  request: MessageInitShape<Methods[M]["input"]>;
  code: Code;
  message: RegExp;
}

const ok = { case: "json" as const, value: fromJson(ValueSchema, { ok: true }) };
const bad = <M extends Unary>(
  name: string,
  method: M,
  request: MessageInitShape<Methods[M]["input"]>,
  code: Code,
  message: RegExp,
): BadRequest => ({
  name,
  method,
  request: request as never,
  code,
  message,
});

export const BAD_REQUESTS: BadRequest[] = [
  bad("empty channel", "send", { channel: "", event: "e", payload: ok }, Code.InvalidArgument, /channel is required/),
  bad(
    "over-long channel",
    "send",
    { channel: "c".repeat(129), event: "e", payload: ok },
    Code.InvalidArgument,
    /129 characters long; the limit is 128/,
  ),
  bad(
    "channel with a space",
    "send",
    { channel: "a b", event: "e", payload: ok },
    Code.InvalidArgument,
    /character outside/,
  ),
  bad("empty event", "send", { channel: "c", event: "", payload: ok }, Code.InvalidArgument, /event is required/),
  bad("over-long event", "broadcast", { event: "e".repeat(65), payload: ok }, Code.InvalidArgument, /limit is 64/),
  bad("event with a slash", "broadcast", { event: "a/b", payload: ok }, Code.InvalidArgument, /character outside/),
  bad("reserved event", "send", { channel: "c", event: "channel:join", payload: ok }, Code.InvalidArgument, /reserved/),
  bad("missing payload", "send", { channel: "c", event: "e" }, Code.InvalidArgument, /payload is required/),
  bad("missing broadcast payload", "broadcast", { event: "e" }, Code.InvalidArgument, /payload is required/),
  bad("GetMembers without channel", "getMembers", { channel: "" }, Code.InvalidArgument, /channel is required/),
  bad(
    "GetMembers with a foreign page token",
    "getMembers",
    { channel: "c", pageSize: 2, pageToken: "bm90IGEgdG9rZW4" },
    Code.InvalidArgument,
    /page_token is not a token/,
  ),
  bad(
    "ListChannels with a bad prefix token",
    "listChannels",
    { prefix: "a", pageToken: "%%%" },
    Code.InvalidArgument,
    /page_token is not a token/,
  ),
  bad(
    "payload over the limit",
    "send",
    { channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(5000) } },
    Code.ResourceExhausted,
    /limit is 4096 bytes/,
  ),
  bad(
    "message over the read limit",
    "send",
    { channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array(64 * 1024) } },
    Code.ResourceExhausted,
    /larger than/,
  ),
];
