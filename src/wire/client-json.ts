/**
 * The client protocol's frames in protobuf's JSON mapping (the
 * "realtime.v1.json" encoding, proto/realtime/client/v1/client.proto), by
 * hand and without the protobuf runtime, so that the SDK's JSON encoding
 * bundles without @bufbuild/protobuf: ClientFrame and ServerFrame, both
 * ways, with every message they hold and google.protobuf.Value.
 *
 * Identical to protobuf-es (https://protobuf.dev/programming-guides/json/):
 * encodeJson writes what toJsonString writes, byte for byte; decodeJson
 * returns what fromJsonString(…, { ignoreUnknownFields: true }) returns,
 * value for value (the same plain objects, $typeName and property order
 * included), and throws where it throws (test/client-json.test.ts, with
 * fast-check). The messages are described once, in MESSAGES below; the test
 * checks that table against gen/'s descriptors, field by field, so that a
 * field added to proto/ fails it until it is added here. There is no
 * fallback to protobuf-es.
 *
 * Only types are imported: nothing of @bufbuild/protobuf or gen/ is loaded
 * at run time (eslint holds this file and the SDK's JSON path to it).
 */
import type { JsonObject, JsonValue, MessageInitShape } from "@bufbuild/protobuf";
import type { ListValue, Struct, Value } from "@bufbuild/protobuf/wkt";
import type {
  ClientFrame,
  ClientFrameSchema,
  ServerFrame,
  ServerFrameSchema,
} from "../../gen/realtime/client/v1/client_pb.js";

/** How deep messages and Values may nest in a decoded frame: protobuf-es's default recursionLimit. */
export const JSON_RECURSION_LIMIT = 100;

/** The protobuf package of the client protocol. */
const PACKAGE = "realtime.client.v1";
const VALUE = "google.protobuf.Value";

type ScalarKind = "string" | "bool" | "uint32" | "uint64" | "bytes";

/** One field of a message, as gen/'s descriptor has it (test/client-json.test.ts compares them). */
export interface JsonField {
  readonly number: number;
  /** The proto name, also accepted when decoding. */
  readonly name: string;
  /** The JSON name (lowerCamelCase), written when encoding; also the property of the message object. */
  readonly jsonName: string;
  readonly kind: ScalarKind | "enum" | "message" | "value";
  /** The message's or enum's short name, for kind message and enum. */
  readonly type?: string;
  readonly repeated: boolean;
  /** Explicit presence (proto3 `optional`): written when set, even to the default. */
  readonly optional: boolean;
  /** The oneof the field belongs to, by its local name. */
  readonly oneof?: string;
}

export interface JsonMessage {
  readonly typeName: string;
  /** In declaration order (the order of a message object's properties). */
  readonly fields: readonly JsonField[];
  /** By field number (the order of the JSON written). */
  readonly sorted: readonly JsonField[];
  readonly byKey: ReadonlyMap<string, JsonField>;
}

const SCALARS: ReadonlySet<string> = new Set<ScalarKind>(["string", "bool", "uint32", "uint64", "bytes"]);

/** The enums, by short name: each value's number and name. */
export const ENUMS: Readonly<Record<string, readonly (readonly [number, string])[]>> = {
  ErrorCode: [
    [0, "ERROR_CODE_UNSPECIFIED"],
    [3, "ERROR_CODE_INVALID_ARGUMENT"],
    [7, "ERROR_CODE_PERMISSION_DENIED"],
    [8, "ERROR_CODE_RESOURCE_EXHAUSTED"],
    [9, "ERROR_CODE_FAILED_PRECONDITION"],
    [12, "ERROR_CODE_UNIMPLEMENTED"],
    [13, "ERROR_CODE_INTERNAL"],
    [14, "ERROR_CODE_UNAVAILABLE"],
    [16, "ERROR_CODE_UNAUTHENTICATED"],
  ],
};

/**
 * Every message of the client protocol, in client.proto's order, each field
 * as "number name type [repeated | optional | oneof name]"; a type is a
 * scalar, an enum of ENUMS, Value (google.protobuf.Value) or a message here.
 */
const SPEC: Readonly<Record<string, readonly string[]>> = {
  ClientFrame: [
    "1 id uint32",
    "2 join Join command",
    "3 leave Leave command",
    "4 update_profile UpdateProfile command",
    "5 send Send command",
    "6 broadcast Broadcast command",
    "7 get_members GetMembers command",
    "8 ping Ping command",
    "9 refresh Refresh command",
    "10 get_history GetHistory command",
  ],
  Join: ["1 channel string", "2 echo bool optional", "3 since StreamPosition"],
  Leave: ["1 channel string", "2 echo bool optional"],
  UpdateProfile: ["1 data Value", "2 echo bool optional"],
  Send: [
    "1 channel string",
    "2 event string",
    "3 json Value payload",
    "4 binary bytes payload",
    "5 echo bool optional",
  ],
  Broadcast: ["1 event string", "2 json Value payload", "3 binary bytes payload", "4 echo bool optional"],
  GetMembers: ["1 channel string", "2 page_size uint32", "3 page_token string"],
  Ping: [],
  Refresh: ["1 token string"],
  ServerFrame: [
    "1 connected Connected frame",
    "2 reply Reply frame",
    "3 event Event frame",
    "4 resync Resync frame",
    "5 presence Presence frame",
    "6 subscribed Subscribed frame",
    "7 unsubscribed Unsubscribed frame",
    "8 events Events frame",
  ],
  Subscribed: ["1 channel string", "2 position StreamPosition"],
  Unsubscribed: ["1 channel string"],
  Presence: [
    "1 events Event repeated",
    "2 channel string",
    "3 epoch string",
    "4 first_offset uint64",
    "5 changes PresenceChange repeated",
  ],
  PresenceChange: ["1 join Member change", "2 leave Member change", "3 update Member change", "4 id string"],
  Events: ["1 events Event repeated"],
  Connected: ["1 id string"],
  Reply: [
    "1 id uint32",
    "2 error Error",
    "3 members Member repeated",
    "4 message_id string",
    "5 next_page_token string",
    "6 position StreamPosition",
    "7 recovered bool",
    "8 events Event repeated",
    "9 complete bool",
  ],
  Error: ["1 code ErrorCode", "2 message string"],
  Event: [
    "1 channel string",
    "2 event string",
    "3 json Value payload",
    "4 binary bytes payload",
    "5 member Member payload",
    "6 id string",
    "7 offset uint64",
    "8 epoch string",
  ],
  Member: ["1 id string", "2 data Value", "3 user_id string"],
  StreamPosition: ["1 offset uint64", "2 epoch string"],
  GetHistory: ["1 channel string", "2 since StreamPosition", "3 limit uint32", "4 reverse bool"],
  Resync: ["1 channel string", "2 position StreamPosition"],
};

/** protobuf's JSON name of a field: lowerCamelCase of its proto name. */
function jsonNameOf(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function parseField(line: string): JsonField {
  const [number, name, type, extra] = line.split(" ") as [string, string, string, string | undefined];
  const kind = SCALARS.has(type)
    ? (type as ScalarKind)
    : type === "Value"
      ? "value"
      : type in ENUMS
        ? "enum"
        : "message";
  return {
    number: Number(number),
    name,
    jsonName: jsonNameOf(name),
    kind,
    type: kind === "message" || kind === "enum" ? type : undefined,
    repeated: extra === "repeated",
    optional: extra === "optional",
    oneof: extra === undefined || extra === "repeated" || extra === "optional" ? undefined : extra,
  };
}

/** The table, by short name. */
export const MESSAGES: Readonly<Record<string, JsonMessage>> = Object.fromEntries(
  Object.entries(SPEC).map(([name, lines]) => {
    const fields = lines.map(parseField);
    const byKey = new Map<string, JsonField>();
    for (const f of fields) byKey.set(f.name, f).set(f.jsonName, f);
    const sorted = [...fields].sort((a, b) => a.number - b.number);
    return [name, { typeName: `${PACKAGE}.${name}`, fields, sorted, byKey }];
  }),
);

const ENUM_NAMES: ReadonlyMap<string, ReadonlyMap<number, string>> = new Map(
  Object.entries(ENUMS).map(([name, values]) => [name, new Map(values)]),
);
const ENUM_NUMBERS: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map(
  Object.entries(ENUMS).map(([name, values]) => [name, new Map(values.map(([n, s]) => [s, n]))]),
);

/** A ClientFrame as protobuf-es's `create` accepts it. */
export type ClientFrameInit = MessageInitShape<typeof ClientFrameSchema>;
/** A ServerFrame as protobuf-es's `create` accepts it. */
export type ServerFrameInit = MessageInitShape<typeof ServerFrameSchema>;

type Obj = Record<string, unknown>;

/** Where a value is, for an error message: "realtime.client.v1.Send.channel". */
function at(message: JsonMessage, field: JsonField): string {
  return `${message.typeName}.${field.name}`;
}

// ---------------------------------------------------------------- encoding

/** frame in protobuf's JSON mapping, as toJsonString(ClientFrameSchema, create(ClientFrameSchema, frame)) writes it. */
export function encodeClientFrameJson(frame: ClientFrameInit | ClientFrame): string {
  return JSON.stringify(messageToJson(MESSAGES.ClientFrame!, frame));
}

/** frame in protobuf's JSON mapping, as toJsonString(ServerFrameSchema, create(ServerFrameSchema, frame)) writes it. */
export function encodeServerFrameJson(frame: ServerFrameInit | ServerFrame): string {
  return JSON.stringify(messageToJson(MESSAGES.ServerFrame!, frame));
}

function encodeError(where: string, why: string): Error {
  return new Error(`cannot encode ${where} to JSON: ${why}`);
}

function messageToJson(message: JsonMessage, value: unknown): JsonObject {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw encodeError(message.typeName, `expected a message object, got ${describe(value)}`);
  const obj = value as Obj;
  const json: JsonObject = {};
  for (const f of message.sorted) {
    let v: unknown;
    if (f.oneof !== undefined) {
      const oneof = obj[f.oneof] as { case?: unknown; value?: unknown } | undefined;
      if (oneof === undefined || oneof === null || oneof.case === undefined) continue;
      if (
        typeof oneof.case !== "string" ||
        !message.fields.some((g) => g.oneof === f.oneof && g.jsonName === oneof.case)
      )
        throw encodeError(`${message.typeName}.${f.oneof}`, `no such case ${describe(oneof.case)}`);
      if (oneof.case !== f.jsonName) continue;
      v = oneof.value;
      if (v === undefined) throw encodeError(at(message, f), "the oneof's case is set without a value");
    } else {
      v = obj[f.jsonName];
      if (v === undefined || (v === null && (f.kind === "message" || f.kind === "value"))) continue;
    }
    if (f.repeated) {
      if (!Array.isArray(v)) throw encodeError(at(message, f), `expected an array, got ${describe(v)}`);
      if (v.length > 0) json[f.jsonName] = v.map((item) => fieldToJson(message, f, item));
      continue;
    }
    const out = fieldToJson(message, f, v);
    if (f.oneof !== undefined || f.optional || !isDefault(f, v)) json[f.jsonName] = out;
  }
  return json;
}

/** Whether v, already checked, is its field's default (implicit presence: then not written). */
function isDefault(f: JsonField, v: unknown): boolean {
  switch (f.kind) {
    case "message":
    case "value":
      return false; // set, so written, even when empty
    case "uint64":
      return BigInt(v as bigint) === 0n;
    case "bytes":
      return (v as Uint8Array).length === 0;
    default:
      return v === "" || v === 0 || v === false;
  }
}

const UINT64_MAX = 0xffffffffffffffffn;

function fieldToJson(message: JsonMessage, f: JsonField, v: unknown): JsonValue {
  switch (f.kind) {
    case "string":
      if (typeof v !== "string") throw encodeError(at(message, f), `expected a string, got ${describe(v)}`);
      return v;
    case "bool":
      if (typeof v !== "boolean") throw encodeError(at(message, f), `expected a boolean, got ${describe(v)}`);
      return v;
    case "uint32":
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff)
        throw encodeError(at(message, f), `expected a uint32, got ${describe(v)}`);
      return v;
    case "uint64": {
      const n =
        typeof v === "bigint"
          ? v
          : (typeof v === "number" && Number.isSafeInteger(v)) || (typeof v === "string" && /^[0-9]+$/.test(v))
            ? BigInt(v)
            : undefined;
      if (n === undefined || n < 0n || n > UINT64_MAX)
        throw encodeError(at(message, f), `expected a uint64, got ${describe(v)}`);
      return n.toString();
    }
    case "bytes":
      if (!(v instanceof Uint8Array)) throw encodeError(at(message, f), `expected a Uint8Array, got ${describe(v)}`);
      return base64Encode(v);
    case "enum": {
      if (typeof v !== "number" || !Number.isInteger(v))
        throw encodeError(at(message, f), `expected an enum number, got ${describe(v)}`);
      return ENUM_NAMES.get(f.type!)!.get(v) ?? v; // as protobuf-es: a number it does not know stays a number
    }
    case "value":
      return valueToJson(v as Value);
    case "message":
      return messageToJson(MESSAGES[f.type!]!, v);
  }
}

/**
 * A google.protobuf.Value as JSON, as protobuf-es's toJson(ValueSchema, v)
 * returns it: throws on a Value with no kind, and on NaN and infinities
 * (which JSON cannot hold).
 */
export function valueToJson(value: Value): JsonValue {
  const kind = (value as Partial<Value> | null | undefined)?.kind;
  switch (kind?.case) {
    case "nullValue":
      return null;
    case "numberValue":
      if (!Number.isFinite(kind.value)) throw encodeError(VALUE, `cannot be ${kind.value}`);
      return kind.value;
    case "stringValue":
    case "boolValue":
      return kind.value;
    case "structValue": {
      const json: JsonObject = {};
      for (const [k, v] of Object.entries(kind.value.fields)) json[k] = valueToJson(v);
      return json;
    }
    case "listValue":
      return kind.value.values.map(valueToJson);
    default:
      throw encodeError(VALUE, "it has no value (kind is not set)");
  }
}

// ---------------------------------------------------------------- decoding

/**
 * Decodes a ServerFrame as fromJsonString(ServerFrameSchema, text, {
 * ignoreUnknownFields: true }) does: unknown keys (and unknown enum names)
 * are ignored, so that a newer edge may add fields; anything else that is
 * not what protobuf-es accepts throws an Error that names the field.
 */
export function decodeServerFrameJson(text: string): ServerFrame {
  return decodeText(MESSAGES.ServerFrame!, text) as ServerFrame;
}

/** Decodes a ClientFrame, with the rules of decodeServerFrameJson. */
export function decodeClientFrameJson(text: string): ClientFrame {
  return decodeText(MESSAGES.ClientFrame!, text) as ClientFrame;
}

class DecodeContext {
  depth = 0;
}

function decodeError(where: string, why: string): Error {
  return new Error(`cannot decode ${where} from JSON: ${why}`);
}

function decodeText(message: JsonMessage, text: string): Obj {
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw decodeError(`message ${message.typeName}`, err instanceof Error ? err.message : String(err));
  }
  checkDuplicateKeys(text, message.typeName);
  return readMessage(message, json, new DecodeContext());
}

/** A message object with every field at its default, as protobuf-es's `create` makes it. */
function defaults(message: JsonMessage): Obj {
  const obj: Obj = { $typeName: message.typeName };
  for (const f of message.fields) {
    if (f.oneof !== undefined) obj[f.oneof] ??= { case: undefined };
    else if (f.repeated) obj[f.jsonName] = [];
    else if (!f.optional && f.kind !== "message" && f.kind !== "value") obj[f.jsonName] = scalarDefault(f);
  }
  return obj;
}

function scalarDefault(f: JsonField): unknown {
  switch (f.kind) {
    case "string":
      return "";
    case "bool":
      return false;
    case "uint64":
      return 0n;
    case "bytes":
      return new Uint8Array(0);
    default:
      return 0; // uint32, enum
  }
}

function enter(ctx: DecodeContext, typeName: string): void {
  if (++ctx.depth > JSON_RECURSION_LIMIT)
    throw decodeError(typeName, `maximum recursion depth of ${JSON_RECURSION_LIMIT} reached`);
}

function readMessage(message: JsonMessage, json: JsonValue, ctx: DecodeContext): Obj {
  enter(ctx, message.typeName);
  if (json === null || typeof json !== "object" || Array.isArray(json))
    throw decodeError(message.typeName, `expected an object, got ${describe(json)}`);
  const obj = defaults(message);
  const seen = new Set<JsonField>();
  const oneofs = new Map<string, JsonField>();
  for (const [key, value] of Object.entries(json)) {
    const f = message.byKey.get(key);
    if (f === undefined) continue; // an unknown field: ignored
    if (seen.has(f)) throw decodeError(at(message, f), "set multiple times");
    seen.add(f);
    const scalar = f.kind !== "message" && f.kind !== "value";
    if (f.oneof !== undefined) {
      if (value === null && scalar) continue; // a scalar oneof member that is null is not set
      const other = oneofs.get(f.oneof);
      if (other !== undefined)
        throw decodeError(`${message.typeName}.${f.oneof}`, `oneof set multiple times by ${other.name} and ${f.name}`);
      oneofs.set(f.oneof, f);
    }
    readField(message, obj, f, value, ctx);
  }
  ctx.depth--;
  return obj;
}

function set(obj: Obj, f: JsonField, value: unknown): void {
  if (f.oneof !== undefined) obj[f.oneof] = { case: f.jsonName, value };
  else obj[f.jsonName] = value;
}

/** A field's null: its default (a message or an optional field unset); a Value's null is a null Value. */
function clear(obj: Obj, f: JsonField): void {
  if (f.oneof !== undefined) {
    if ((obj[f.oneof] as { case?: string }).case === f.jsonName) obj[f.oneof] = { case: undefined };
  } else if (f.optional || f.kind === "message") delete obj[f.jsonName];
  else obj[f.jsonName] = scalarDefault(f);
}

function readField(message: JsonMessage, obj: Obj, f: JsonField, json: JsonValue, ctx: DecodeContext): void {
  if (f.repeated) {
    if (json === null) return;
    if (!Array.isArray(json)) throw decodeError(at(message, f), `expected an array, got ${describe(json)}`);
    const list = obj[f.jsonName] as unknown[];
    for (const item of json) {
      if (item === null && f.kind !== "value") throw decodeError(at(message, f), "list item must not be null");
      list.push(readSingular(message, f, item, ctx));
    }
    return;
  }
  if (json === null && f.kind !== "value") return clear(obj, f);
  if (f.kind === "enum") {
    const n = readEnum(message, f, json);
    if (n !== undefined) set(obj, f, n);
    return;
  }
  set(obj, f, readSingular(message, f, json, ctx));
}

function readSingular(message: JsonMessage, f: JsonField, json: JsonValue, ctx: DecodeContext): unknown {
  switch (f.kind) {
    case "message":
      return readMessage(MESSAGES[f.type!]!, json, ctx);
    case "value": {
      enter(ctx, VALUE); // as protobuf-es: the field's message, then the Value itself
      const value = readValue(json, ctx);
      ctx.depth--;
      return value;
    }
    case "enum":
      return readEnum(message, f, json);
    default:
      return readScalar(message, f, json);
  }
}

/** An enum's number; undefined for a name this codec does not know (ignored, as unknown fields are). */
function readEnum(message: JsonMessage, f: JsonField, json: JsonValue): number | undefined {
  if (typeof json === "number" && Number.isInteger(json)) {
    if (json < -0x80000000 || json > 0x7fffffff) throw decodeError(at(message, f), `${json} out of range`);
    return json;
  }
  if (typeof json === "string") return ENUM_NUMBERS.get(f.type!)!.get(json);
  throw decodeError(at(message, f), `expected an enum name or number, got ${describe(json)}`);
}

/** A number written as a JSON string, as protobuf's JSON mapping allows for integers: Number's reading, no spaces. */
function numberOf(json: JsonValue): JsonValue {
  if (typeof json !== "string" || json === "" || json.trim() !== json) return json;
  const n = Number(json);
  return Number.isNaN(n) ? json : n;
}

function readScalar(message: JsonMessage, f: JsonField, json: JsonValue): unknown {
  switch (f.kind) {
    case "string":
      if (typeof json !== "string") break;
      if (!isWellFormed(json)) throw decodeError(at(message, f), "expected a string: invalid UTF8");
      return json;
    case "bool":
      if (typeof json !== "boolean") break;
      return json;
    case "uint32": {
      const n = numberOf(json);
      if (typeof n !== "number" || !Number.isInteger(n)) break;
      if (n < 0 || n > 0xffffffff) throw decodeError(at(message, f), `expected a uint32: ${n} out of range`);
      return n;
    }
    case "uint64": {
      if (typeof json !== "number" && (typeof json !== "string" || json === "")) break;
      let n: bigint;
      try {
        n = BigInt(json); // a JSON string: BigInt's reading (spaces around, 0x…), as protobuf-es's
      } catch {
        throw decodeError(at(message, f), `expected a uint64: ${json} out of range`);
      }
      if (n < 0n || n > UINT64_MAX) throw decodeError(at(message, f), `expected a uint64: ${json} out of range`);
      return n;
    }
    case "bytes":
      if (typeof json !== "string") break;
      if (json === "") return new Uint8Array(0);
      try {
        return base64Decode(json);
      } catch (err) {
        throw decodeError(at(message, f), (err as Error).message);
      }
  }
  throw decodeError(at(message, f), `expected ${f.kind === "bytes" ? "base64" : `a ${f.kind}`}, got ${describe(json)}`);
}

/**
 * A JSON value as a google.protobuf.Value, as protobuf-es's
 * fromJson(ValueSchema, json) builds it.
 */
export function valueFromJson(json: JsonValue): Value {
  const ctx = new DecodeContext();
  enter(ctx, VALUE); // as protobuf-es: the message, then the Value itself
  return readValue(json, ctx);
}

function readValue(json: JsonValue, ctx: DecodeContext): Value {
  enter(ctx, VALUE);
  let kind: Value["kind"];
  switch (typeof json) {
    case "number":
      kind = { case: "numberValue", value: json };
      break;
    case "string":
      kind = { case: "stringValue", value: json };
      break;
    case "boolean":
      kind = { case: "boolValue", value: json };
      break;
    case "object":
      if (json === null) {
        kind = { case: "nullValue", value: 0 }; // NullValue.NULL_VALUE
      } else if (Array.isArray(json)) {
        const list: ListValue = { $typeName: "google.protobuf.ListValue", values: [] };
        for (const item of json) list.values.push(readValue(item, ctx));
        kind = { case: "listValue", value: list };
      } else {
        const struct: Struct = { $typeName: "google.protobuf.Struct", fields: {} };
        for (const [k, v] of Object.entries(json)) struct.fields[k] = readValue(v, ctx);
        kind = { case: "structValue", value: struct };
      }
      break;
    default:
      throw decodeError(VALUE, `expected a JSON value, got ${typeof json}`);
  }
  ctx.depth--;
  return { $typeName: VALUE, kind };
}

/**
 * Throws on an object with the same key twice, at any depth, as protobuf-es
 * does (JSON.parse would keep the last). text has been parsed already, so it
 * is well-formed JSON.
 */
function checkDuplicateKeys(text: string, typeName: string): void {
  const stack: (Set<string> | null)[] = []; // one set of keys per open object; null for an array
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{") {
      stack.push(new Set());
      expectKey = true;
    } else if (c === "[") {
      stack.push(null);
      expectKey = false;
    } else if (c === "}" || c === "]") {
      stack.pop();
      expectKey = false;
    } else if (c === ",") {
      expectKey = stack[stack.length - 1] != null;
    } else if (c === ":") {
      expectKey = false;
    } else if (c === '"') {
      const open = i++;
      let escaped = false;
      for (; text[i] !== '"'; i++) {
        if (text[i] === "\\") {
          escaped = true;
          i++;
        }
      }
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const key = escaped ? (JSON.parse(text.slice(open, i + 1)) as string) : text.slice(open + 1, i);
        if (keys.has(key)) throw decodeError(`message ${typeName}`, `duplicate object key ${JSON.stringify(key)}`);
        keys.add(key);
      }
      expectKey = false;
    }
  }
}

/** Whether s has no lone surrogate (protobuf-es refuses one in a string field), tested as protobuf-es tests it. */
function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- base64

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/** Each base64 digit's value, by char code: the standard and the URL-safe alphabets. */
const B64_VALUES: ReadonlyMap<number, number> = new Map([
  ...[...B64].map((c, i) => [c.charCodeAt(0), i] as const),
  [45, 62], // "-"
  [95, 63], // "_"
]);

/** Standard base64 with padding, as protobuf-es writes bytes. */
export function base64Encode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + "==";
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + "=";
  }
  return out;
}

/**
 * Reads base64 as protobuf-es's base64Decode does: the standard or the
 * URL-safe alphabet, padding optional (and allowed inside, between
 * concatenated groups), spaces, tabs and line breaks skipped; throws on
 * anything else, and on a lone digit at the end.
 */
export function base64Decode(text: string): Uint8Array {
  // protobuf-es sizes its buffer from the text like this, and drops what does not fit.
  let size = (text.length * 3) / 4;
  if (text[text.length - 2] === "=") size -= 2;
  else if (text[text.length - 1] === "=") size -= 1;
  const bytes = new Uint8Array(size);
  let pos = 0;
  let group = 0;
  let prev = 0;
  for (let i = 0; i < text.length; i++) {
    const b = B64_VALUES.get(text.charCodeAt(i));
    if (b === undefined) {
      const c = text[i];
      if (c === "=") group = 0;
      else if (c !== "\n" && c !== "\r" && c !== "\t" && c !== " ") throw new Error("invalid base64 string");
      continue;
    }
    if (group === 1) bytes[pos++] = (prev << 2) | ((b & 48) >> 4);
    else if (group === 2) bytes[pos++] = ((prev & 15) << 4) | ((b & 60) >> 2);
    else if (group === 3) bytes[pos++] = ((prev & 3) << 6) | b;
    prev = b;
    group = (group + 1) % 4;
  }
  if (group === 1) throw new Error("invalid base64 string");
  return bytes.subarray(0, pos);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array`;
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`;
  if (typeof v === "string") return v.length > 30 ? "a string" : JSON.stringify(v);
  if (typeof v === "object") return "an object";
  if (typeof v === "bigint") return `${v}n`;
  return String(v);
}
