/**
 * The checks behind test/wire-coverage.test.ts, as functions of a codec's
 * coverage (src/wire/coverage.ts) and of the descriptors it names, so that
 * the test can also run them on a copy of a descriptor with a field added
 * (and see them fail). Each returns what is wrong, one line each, naming
 * the codec, the message and the field; [] when nothing is.
 *
 * The decoders' fallback is seen through a spy on fromBinary: the test file
 * mocks it (see helpers/decoder-agreement.ts).
 */
import {
  create,
  equals,
  fromBinary,
  ScalarType,
  toBinary,
  toJsonString,
  type DescField,
  type DescMessage,
  type Message,
} from "@bufbuild/protobuf";
import { vi } from "vitest";
import type { CodecCoverage, MessageCoverage } from "../../src/wire/coverage.js";
import { hex } from "./decoder-agreement.js";

/** How a test drives one root of a codec: its encoder, its decoder, or both. */
export interface RootCodec {
  encode?: {
    /** Whether the codec is the one used for this message (else protobuf-es is). */
    handles: (message: Message) => boolean;
    binary: (message: Message) => Uint8Array;
    /** The JSON it writes, where it writes JSON too. */
    json?: (message: Message) => string;
  };
  /** Returns what fromBinary would; falls back to fromBinary on what it does not decode itself. */
  decode?: (bytes: Uint8Array) => Message;
}

/** The fields a message's entry lists, all three ways. */
function listed(entry: MessageCoverage): number[] {
  return [...entry.hand, ...(entry.encoded ?? []), ...(entry.protobufEs ?? [])];
}

/** The message type a field holds (singular, repeated or map value), if any. */
function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  if (field.fieldKind === "map" && field.mapKind === "message") return field.message;
  return undefined;
}

/**
 * Walks the descriptors from the codec's roots through every field it
 * handles by hand: every field of every message reached must be listed
 * (once), every listed number must exist, every message reached must have
 * an entry, and every entry must be reached.
 */
export function coverageGaps(codec: string, coverage: CodecCoverage): string[] {
  const gaps: string[] = [];
  const reached = new Set<string>();
  const queue: { desc: DescMessage; via: string }[] = coverage.roots.map((desc) => ({ desc, via: "a root" }));
  while (queue.length > 0) {
    const { desc, via } = queue.shift()!;
    if (reached.has(desc.typeName)) continue;
    reached.add(desc.typeName);
    const entry = coverage.messages[desc.typeName];
    if (entry === undefined) {
      gaps.push(`${codec}: ${desc.typeName} (reached by hand through ${via}) has no entry in src/wire/coverage.ts`);
      continue;
    }
    const numbers = listed(entry);
    for (const no of new Set(numbers)) {
      if (numbers.indexOf(no) !== numbers.lastIndexOf(no))
        gaps.push(`${codec}: field ${no} of ${desc.typeName} is listed more than once in src/wire/coverage.ts`);
      if (!desc.fields.some((f) => f.number === no))
        gaps.push(`${codec}: src/wire/coverage.ts lists field ${no} of ${desc.typeName}, which has no such field`);
    }
    for (const field of desc.fields) {
      if (!numbers.includes(field.number)) {
        gaps.push(
          `${codec}: ${desc.typeName} field ${field.number} (${field.name}) is not in src/wire/coverage.ts: teach ${codec} the field and list it as hand, or list it as protobufEs (messages holding it go to protobuf-es)`,
        );
        continue;
      }
      const sub = entry.hand.includes(field.number) ? messageOf(field) : undefined;
      if (sub) queue.push({ desc: sub, via: `${desc.typeName}.${field.name}` });
    }
  }
  for (const typeName of Object.keys(coverage.messages))
    if (!reached.has(typeName))
      gaps.push(`${codec}: src/wire/coverage.ts lists ${typeName}, which its roots do not reach by hand`);
  return gaps;
}

/** Nesting depth past which samples stop going deeper (Value is recursive). */
const MAX_DEPTH = 4;

/** A value of each scalar type that is not its default (so that it is written). */
function scalarSample(type: ScalarType): unknown {
  switch (type) {
    case ScalarType.STRING:
      return "s€";
    case ScalarType.BYTES:
      return Uint8Array.of(1, 2, 3);
    case ScalarType.BOOL:
      return true;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return 1.5;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return 300;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return -7;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return 300n;
    default:
      return -7n; // int64, sint64, sfixed64
  }
}

/** A field to set in every sample that reaches its message: a protobufEs field, to see it deferred. */
export interface Forced {
  typeName: string;
  number: number;
}

interface Sample {
  message: Message;
  /** The forced field is set somewhere in it. */
  hit: boolean;
}

/**
 * Messages of desc, built from the descriptors: with every field the
 * coverage lists `hand` set to a value that is not its default, one sample
 * per member of each oneof (and per sample of a message member), to
 * MAX_DEPTH; `encoded` members as empty messages. With forced, its field
 * is set too (in a oneof, instead of the others), as an empty message or a
 * scalar sample.
 */
export function samples(coverage: CodecCoverage, desc: DescMessage, forced?: Forced, depth = 0): Sample[] {
  const entry = coverage.messages[desc.typeName];
  const force = forced?.typeName === desc.typeName ? forced.number : undefined;
  const isHand = (f: DescField) => entry?.hand.includes(f.number) ?? false;
  const isEncoded = (f: DescField) => entry?.encoded?.includes(f.number) ?? false;
  /** The values a field takes in the samples, each with whether it holds the forced field. */
  const options = (f: DescField, forcedHere: boolean): { value: unknown; hit: boolean }[] => {
    if (f.fieldKind === "scalar") return [{ value: scalarSample(f.scalar), hit: forcedHere }];
    if (f.fieldKind === "enum") return [{ value: f.enum.values.at(-1)!.number, hit: forcedHere }];
    const sub = messageOf(f);
    if (sub === undefined) {
      // a list or map of scalars or enums
      const item = f.fieldKind === "list" || f.fieldKind === "map" ? sampleOfKind(f) : undefined;
      return [{ value: item, hit: forcedHere }];
    }
    if (forcedHere || isEncoded(f)) return [{ value: wrap(f, [create(sub)]), hit: forcedHere }];
    if (depth >= MAX_DEPTH) return [];
    const subs = samples(coverage, sub, forced, depth + 1);
    if (subs.length === 0) return [];
    if (f.fieldKind === "message") return subs.map((s) => ({ value: s.message, hit: s.hit }));
    const items = subs.slice(0, 2);
    return [
      {
        value: wrap(
          f,
          items.map((s) => s.message),
        ),
        hit: items.some((s) => s.hit),
      },
    ];
  };
  const base: Record<string, unknown> = {};
  let baseHit = false;
  for (const f of desc.fields) {
    if (f.oneof !== undefined || !(isHand(f) || f.number === force)) continue;
    const [first] = options(f, f.number === force);
    if (first === undefined) continue;
    base[f.localName] = first.value;
    baseHit ||= first.hit;
  }
  // Each oneof: its options, one sample each; the other oneofs at their first option.
  const oneofOptions = desc.oneofs.map((oneof) => {
    const members = oneof.fields.filter((f) =>
      force !== undefined && oneof.fields.some((m) => m.number === force)
        ? f.number === force
        : isHand(f) || isEncoded(f),
    );
    return members.flatMap((m) =>
      options(m, m.number === force).map((o) => ({
        value: { case: m.localName, value: o.value },
        hit: o.hit,
      })),
    );
  });
  const out: Sample[] = [];
  const build = (chosen: ({ value: unknown; hit: boolean } | undefined)[]) => {
    const init = { ...base };
    let hit = baseHit;
    desc.oneofs.forEach((oneof, i) => {
      const option = chosen[i];
      if (option === undefined) return;
      init[oneof.localName] = option.value;
      hit ||= option.hit;
    });
    out.push({ message: create(desc, init as never), hit });
  };
  const firsts = oneofOptions.map((o) => o[0]);
  if (oneofOptions.every((o) => o.length <= 1)) build(firsts);
  else oneofOptions.forEach((o, i) => o.forEach((option) => build(firsts.map((f, j) => (j === i ? option : f)))));
  return out;
}

/** A one-item list, or a one-entry map, of the field's scalar or enum samples. */
function sampleOfKind(f: DescField): unknown {
  if (f.fieldKind === "list")
    return [f.listKind === "enum" ? f.enum.values.at(-1)!.number : scalarSample(f.scalar as ScalarType)];
  if (f.fieldKind === "map")
    return {
      [String(scalarSample(f.mapKey))]:
        f.mapKind === "enum" ? f.enum.values.at(-1)!.number : scalarSample(f.scalar as ScalarType),
    };
  return undefined;
}

/** Messages as the field holds them: one, a list, or a map under key "k" (the first only). */
function wrap(f: DescField, messages: Message[]): unknown {
  if (f.fieldKind === "list") return messages;
  if (f.fieldKind === "map")
    return { [f.mapKey === ScalarType.STRING ? "k" : String(scalarSample(f.mapKey))]: messages[0] };
  return messages[0];
}

const fromBinaryCalls = () => vi.mocked(fromBinary).mock.calls.length;

/**
 * Messages with every field the codec lists as hand set are handled by it,
 * by hand, exactly as protobuf-es handles them: its encoder is used for
 * them and writes protobuf-es's bytes (and JSON), its decoder reads
 * protobuf-es's encoding of them without falling back, as fromBinary does.
 */
export function handFailures(codec: string, coverage: CodecCoverage, roots: Record<string, RootCodec>): string[] {
  const failures: string[] = [];
  for (const root of coverage.roots) {
    const rc = roots[root.typeName];
    if (rc === undefined) {
      failures.push(`${codec}: no check drives root ${root.typeName}`);
      continue;
    }
    for (const { message } of samples(coverage, root)) {
      const bytes = toBinary(root, message);
      const what = `${codec}: ${root.typeName} ${hex(bytes)}`;
      if (rc.encode) {
        if (!rc.encode.handles(message)) failures.push(`${what}: not encoded by hand, with only hand fields set`);
        else {
          if (hex(rc.encode.binary(message)) !== hex(bytes))
            failures.push(`${what}: encoded by hand as ${hex(rc.encode.binary(message))}`);
          if (rc.encode.json && rc.encode.json(message) !== toJsonString(root, message))
            failures.push(
              `${what}: JSON by hand ${rc.encode.json(message)}, protobuf-es ${toJsonString(root, message)}`,
            );
        }
      }
      if (rc.decode) {
        const before = fromBinaryCalls();
        const decoded = rc.decode(bytes);
        if (fromBinaryCalls() > before) failures.push(`${what}: fell back to fromBinary, with only hand fields set`);
        else if (!equals(root, decoded, fromBinary(root, bytes)))
          failures.push(`${what}: decoded otherwise than fromBinary`);
      }
    }
  }
  return failures;
}

/**
 * Messages with a field the codec lists as protobufEs set are left to
 * protobuf-es: its encoder is not used for them, its decoder falls back.
 */
export function deferredFailures(codec: string, coverage: CodecCoverage, roots: Record<string, RootCodec>): string[] {
  const failures: string[] = [];
  for (const [typeName, entry] of Object.entries(coverage.messages)) {
    for (const number of entry.protobufEs ?? []) {
      let seen = false;
      for (const root of coverage.roots) {
        const rc = roots[root.typeName];
        if (rc === undefined) continue;
        for (const { message, hit } of samples(coverage, root, { typeName, number })) {
          if (!hit) continue;
          seen = true;
          const bytes = toBinary(root, message);
          const what = `${codec}: ${root.typeName} with ${typeName} field ${number} set (${hex(bytes)})`;
          if (rc.encode?.handles(message)) failures.push(`${what}: encoded by hand, but listed as protobufEs`);
          if (rc.decode) {
            const before = fromBinaryCalls();
            rc.decode(bytes);
            if (fromBinaryCalls() === before) failures.push(`${what}: decoded by hand, but listed as protobufEs`);
          }
        }
      }
      if (!seen) failures.push(`${codec}: no sample from the roots holds ${typeName} field ${number}`);
    }
  }
  return failures;
}
