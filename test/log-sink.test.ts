/**
 * The logger's destination (src/log.ts LogSink) against real streams: a
 * reader that stalls costs at most the pending bound (lines past it are
 * dropped and counted, and the count is reported once it drains), and a
 * stream that failed (EPIPE: its reader is gone) is written no more.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { LogSink } from "../src/log.js";

/** A stream that holds every write until release() is called. */
function stalledStream() {
  const written: string[] = [];
  const held: (() => void)[] = [];
  const stream = new Writable({
    highWaterMark: 64,
    write(chunk: Buffer, _enc, done) {
      written.push(chunk.toString());
      held.push(done);
    },
  });
  return {
    stream,
    written,
    release() {
      while (held.length > 0) held.shift()!();
    },
  };
}

describe("LogSink", () => {
  it("drops lines past its pending bound instead of holding them, and reports how many once drained", async () => {
    const s = stalledStream();
    const sink = new LogSink(s.stream, 1_000);
    const reports: number[] = [];
    sink.onDrained((n) => reports.push(n));
    const line = `${"x".repeat(99)}\n`;
    for (let i = 0; i < 50; i++) sink.write(line);
    // One write in flight, the rest pending up to 1,000 bytes.
    expect(s.stream.writableLength).toBeLessThanOrEqual(1_000);
    expect(reports).toEqual([]);
    // The reader catches up: every held write completes, the stream drains.
    for (let i = 0; i < 20 && s.stream.writableLength > 0; i++) {
      s.release();
      await new Promise((r) => setImmediate(r));
    }
    expect(s.stream.writableLength).toBe(0);
    const kept = s.written.join("").length / line.length;
    expect(kept).toBeLessThanOrEqual(11);
    expect(reports).toEqual([50 - kept]);
  });

  it("writes nothing more once its stream failed", async () => {
    const written: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        written.push(chunk.toString());
        done(Object.assign(new Error("write EPIPE"), { code: "EPIPE" }));
      },
    });
    const sink = new LogSink(stream);
    sink.write("first\n");
    await new Promise((r) => setImmediate(r));
    expect(() => sink.write("second\n")).not.toThrow();
    expect(written).toEqual(["first\n"]);
  });
});
