/**
 * The edge's prebuilt WebSocket frames are the bytes `ws` itself would send,
 * for every length class, and one event's frame is built once for all its
 * recipients.
 */
import * as ws from "ws";
import { describe, expect, it } from "vitest";
import { frameHeadSize, frameOf, writeHead } from "../src/wire/ws-frame.js";

// ws's framing, which its typings do not declare.
const { Sender } = ws as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } };
const wsFrame = (data: Buffer, text: boolean) =>
  Buffer.concat(Sender.frame(data, { fin: true, rsv1: false, opcode: text ? 1 : 2, mask: false, readOnly: true }));

describe("frameOf", () => {
  for (const len of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    it(`matches ws for ${len} bytes, text and binary`, () => {
      const data = Buffer.alloc(len, 0x61);
      expect(frameOf(data, true).equals(wsFrame(data, true))).toBe(true);
      const bin = Buffer.alloc(len, 0x07);
      expect(frameOf(bin, false).equals(wsFrame(bin, false))).toBe(true);
      const head = Buffer.alloc(frameHeadSize(len));
      expect(writeHead(head, len, false)).toBe(head.length);
      expect(Buffer.concat([head, bin]).equals(wsFrame(bin, false))).toBe(true);
    });
  }

  it("builds one event's frame once, per encoding, whatever the order of calls", () => {
    const json = Buffer.from('{"event":{}}');
    const proto = Buffer.from([0x1a, 0x00]);
    const first = frameOf(json, true);
    expect(frameOf(proto, false)).toBe(frameOf(proto, false));
    expect(frameOf(json, true)).toBe(first);
    const next = Buffer.from('{"event":{"id":"2"}}');
    expect(frameOf(next, true)).not.toBe(first);
    expect(frameOf(next, true).subarray(2).toString()).toBe(next.toString());
  });
});
