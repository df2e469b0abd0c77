/**
 * A bare member for the fill benches (presence-fill.ts, large-channel.ts):
 * a raw WebSocket client (protobuf binary, echo=false, presence=compact as the
 * SDK connects) that joins one channel and counts what it receives without
 * decoding it: a frame is decoded only when it is a reply (first byte 0x12),
 * or a small event (0x1a) that may be the end marker.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import WebSocket from "ws";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/realtime/client/v1/client_pb.js";

/** How the members ask for presence frames: compact (the default, as the SDK asks) or batch (BENCH_PRESENCE_FORM). */
const PRESENCE_FORM = process.env.BENCH_PRESENCE_FORM ?? "compact";

export interface FillMember {
  ws: WebSocket;
  frames: number;
  bytes: number;
  /** Resolves when the join is answered; rejects on an error reply or a socket error. */
  joined: Promise<void>;
  /** Resolves when an event carrying marker arrived (Date.now() then in markedAt). */
  marked: Promise<void>;
  markedAt: number;
}

export function fillMember(url: string, channel: string, marker: string): FillMember {
  const ws = new WebSocket(`${url}?presence=${PRESENCE_FORM}&echo=false`, "realtime.v1.proto", {
    perMessageDeflate: false,
    skipUTF8Validation: true,
  });
  const m = { ws, frames: 0, bytes: 0, markedAt: 0 } as FillMember;
  let joined!: () => void;
  let marked!: () => void;
  let failed!: (err: Error) => void;
  m.joined = new Promise((resolve, reject) => ((joined = resolve), (failed = reject)));
  m.marked = new Promise((resolve) => (marked = resolve));
  const join = toBinary(
    ClientFrameSchema,
    create(ClientFrameSchema, { id: 1, command: { case: "join", value: { channel } } }),
  );
  ws.on("open", () => ws.send(join));
  ws.on("error", (err) => failed(err));
  ws.on("close", (code) => failed(new Error(`closed with ${code} before the join's reply`)));
  ws.on("message", (data: Buffer) => {
    m.frames++;
    m.bytes += data.length;
    if (data[0] === 0x12) {
      const f = fromBinary(ServerFrameSchema, data);
      if (f.frame.case !== "reply" || f.frame.value.id !== 1) return;
      if (f.frame.value.error) failed(new Error(f.frame.value.error.message));
      else joined();
    } else if (data[0] === 0x1a && data.length < 256 && data.includes(marker)) {
      if (m.markedAt === 0) m.markedAt = Date.now();
      marked();
    }
  });
  return m;
}
