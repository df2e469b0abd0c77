/**
 * What the events frame (REALTIME_WRITE_BATCH) changes on an edge's write
 * path, alone: CONNECTIONS loopback sockets (read by a sink in another
 * process), each sent EVENTS event frames per write delay through the edge's
 * own FrameWriter, either as they are (one frame each, corked together) or
 * held by an EventBatch and spliced into one events frame. Reported per
 * mode: this process's CPU per event and per flush (one connection, one
 * delay), from process.cpuUsage. The difference between the modes is what
 * the batch frame saves the edge; what both pay per flush (the writev
 * system call) it cannot.
 *
 *   npx tsx bench/flush-cost.ts                              (250 connections, 4 events, 200 rounds)
 *   npx tsx bench/flush-cost.ts --connections 1000 --events 16 --rounds 100
 */
import { spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import { EventSchema } from "../gen/realtime/client/v1/client_pb.js";
import { createPublication } from "../src/core/publication.js";
import { EventBatch, FrameWriter } from "../src/edge/ws-frames.js";
import { jsonEventFrame } from "../src/wire/client-codec.js";

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const CONNECTIONS = arg("connections", 250);
const EVENTS = arg("events", 4);
const ROUNDS = arg("rounds", 200);
/** The write delay of the writer; short, so that a run is quick (the cost per flush does not depend on it). */
const DELAY_MS = 1;

const SINK = `const s = require("node:net").createServer((c) => c.on("data", () => {}));
s.listen(0, "127.0.0.1", () => console.log(s.address().port));`;

const sink = spawn(process.execPath, ["-e", SINK], { stdio: ["ignore", "pipe", "inherit"] });
const port = await new Promise<number>((resolve) => sink.stdout.once("data", (d: Buffer) => resolve(Number(d))));
const sockets = await Promise.all(
  Array.from(
    { length: CONNECTIONS },
    () =>
      new Promise<Socket>((resolve) => {
        const s = connect(port, "127.0.0.1", () => resolve(s));
        s.setNoDelay(true);
      }),
  ),
);

/** EVENTS distinct event frames of about 100 bytes of JSON each, as the bench's fan-out sends them. */
const frames = Array.from({ length: EVENTS }, (_, n) =>
  jsonEventFrame(
    createPublication(
      create(EventSchema, {
        channel: "fanout",
        event: "bench",
        id: `Yc2n7tQe.${n}`,
        payload: { case: "binary", value: new Uint8Array(64) },
      }),
      Infinity,
    ),
  ),
);

async function run(batched: boolean): Promise<{ perEvent: number; perFlush: number }> {
  const writer = new FrameWriter(DELAY_MS);
  const batches = sockets.map((s) => new EventBatch(writer, s, () => true, 64 * 1024));
  const start = process.cpuUsage();
  for (let round = 0; round < ROUNDS; round++) {
    // One event at a time to every connection, as a fan-out does.
    for (const frame of frames) {
      if (batched) for (const b of batches) b.add(frame, true);
      else for (const s of sockets) writer.write(s, frame, true);
    }
    await new Promise((resolve) => setTimeout(resolve, DELAY_MS + 1));
  }
  await new Promise((resolve) => setTimeout(resolve, 50)); // the last writes leave
  const used = process.cpuUsage(start);
  const micros = used.user + used.system;
  return { perEvent: micros / (ROUNDS * CONNECTIONS * EVENTS), perFlush: micros / (ROUNDS * CONNECTIONS) };
}

console.log(`${CONNECTIONS} connections, ${EVENTS} events per connection per flush, ${ROUNDS} rounds`);
for (const batched of [false, true, false, true]) {
  const r = await run(batched);
  console.log(
    `${batched ? "events frame " : "event frames "}: ${r.perEvent.toFixed(2)} µs CPU per event, ${r.perFlush.toFixed(2)} per flush`,
  );
}
for (const s of sockets) s.destroy();
sink.kill();
