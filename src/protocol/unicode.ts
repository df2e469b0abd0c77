/**
 * Well-formed Unicode in JSON text. A JavaScript string may hold a lone
 * surrogate (half of a UTF-16 pair), which JSON can carry as an escape
 * ("\ud800") but UTF-8, and so protobuf binary, cannot: protobuf writes it
 * as U+FFFD. A string with one would reach JSON and binary recipients as
 * different text, so the service refuses it wherever it enters.
 */
import type { JsonValue } from "@bufbuild/protobuf";

/**
 * A JSON escape of a surrogate. Valid UTF-8 text holds no surrogate (a
 * fatal decoder refuses one), so a lone one can only come as an escape;
 * JSON.stringify writes every lone surrogate so, and a pair as is.
 */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
/**
 * A lone surrogate: in a /u regular expression a well-formed pair is one
 * code point, so only an unpaired surrogate is of category Cs (what
 * String.prototype.isWellFormed tells, without needing the ES2024 lib).
 */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The path of the first string (key or value) of the JSON text that is not
 * well-formed Unicode, like `send.json.text[2]`; undefined when all are.
 * Costs one regular expression search unless the text has a surrogate
 * escape; json is the text already parsed, if the caller has it.
 */
export function illFormedField(text: string, json?: JsonValue): string | undefined {
  // indexOf first: several times faster than the expression on long text.
  if (text.indexOf("\\u") === -1 || !SURROGATE_ESCAPE.test(text)) return undefined;
  return find(json === undefined ? (JSON.parse(text) as JsonValue) : json, "");
}

/** The message of the INVALID_ARGUMENT error for a string that is not well-formed Unicode at field. */
export function illFormedMessage(field: string): string {
  return `${field} is not well-formed Unicode: it holds a lone surrogate (\\ud800 to \\udfff without its pair), which binary recipients cannot receive as sent`;
}

function find(json: JsonValue, path: string): string | undefined {
  if (typeof json === "string") return LONE_SURROGATE.test(json) ? path || "the value" : undefined;
  if (json === null || typeof json !== "object") return undefined;
  if (Array.isArray(json)) {
    for (let i = 0; i < json.length; i++) {
      const found = find(json[i]!, `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  for (const key of Object.keys(json)) {
    if (LONE_SURROGATE.test(key)) return `the key ${JSON.stringify(key)} of ${path || "the frame"}`;
    const found = find(json[key]!, path === "" ? key : `${path}.${key}`);
    if (found !== undefined) return found;
  }
  return undefined;
}
