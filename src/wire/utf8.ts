import { getTextEncoding } from "@bufbuild/protobuf/wire";

/**
 * proto3 string fields read as protobuf-es's `fromBinary` reads them, for
 * the hand decoders (request-codec.ts, publication.ts): with its strict
 * UTF-8 decoder (a fatal TextDecoder: invalid UTF-8 throws, a leading BOM
 * is dropped), except short ASCII, built here (the decoder's call costs
 * more than that). Tested through those decoders, which
 * test/request-codec.test.ts and test/publication-codec.test.ts compare
 * with fromBinary on any bytes.
 */

/** Up to this many bytes, an ASCII string is built here (measured: Node 20). */
const SHORT_STRING = 12;

/** The string of buf's bytes from start to end; throws on invalid UTF-8. */
export function decodeString(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= SHORT_STRING) {
    let s = "";
    for (let i = start; i < end; i++) {
      const c = buf[i];
      if (c >= 0x80) return getTextEncoding().decodeUtf8(buf.subarray(start, end), true);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return getTextEncoding().decodeUtf8(buf.subarray(start, end), true);
}
