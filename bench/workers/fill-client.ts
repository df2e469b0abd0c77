/**
 * A client process of bench/large-channel.ts: it holds members
 * [FROM, TO) of one channel (at most about 18,000: a process may hold
 * 20,000 file descriptors here), member i on urls[i % urls.length], joins
 * them CONCURRENCY at a time, and reports over IPC:
 *   {type: "joined", ms}                    every member's join answered
 *   {type: "marked", last, frames, bytes, cpu}  every member has the marker
 *                                           (last: Date.now() of the last one)
 *   {type: "error", message}
 * It terminates its sockets and exits on {cmd: "exit"}.
 */
import { performance } from "node:perf_hooks";
import { fillMember, type FillMember } from "../lib/fill-member.js";

interface Args {
  urls: string[];
  from: number;
  to: number;
  channel: string;
  marker: string;
  concurrency: number;
}

const args = JSON.parse(process.env.FILL_ARGS!) as Args;
const send = (msg: object) => process.send!(msg);
const members: FillMember[] = [];

async function main(): Promise<void> {
  const start = performance.now();
  let next = args.from;
  const worker = async () => {
    while (next < args.to) {
      const i = next++;
      const m = fillMember(args.urls[i % args.urls.length]!, args.channel, args.marker);
      members.push(m);
      await m.joined;
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  send({ type: "joined", ms: performance.now() - start });
  await Promise.all(members.map((m) => m.marked));
  const u = process.cpuUsage();
  send({
    type: "marked",
    last: Math.max(...members.map((m) => m.markedAt)),
    frames: members.reduce((n, m) => n + m.frames, 0),
    bytes: members.reduce((n, m) => n + m.bytes, 0),
    cpu: (u.user + u.system) / 1e6,
  });
}

process.on("message", (msg: { cmd: string }) => {
  if (msg.cmd !== "exit") return;
  for (const m of members) m.ws.terminate();
  process.exit(0);
});
main().catch((err: Error) => send({ type: "error", message: err.message }));
