/**
 * Adapter for the plain `ws` baseline (ws-server.ts): clients and the
 * publisher are `ws` WebSocket clients speaking the baseline's JSON frames.
 */
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import type { BenchPayload, ClientConnection, Publisher, SystemAdapter } from "./system.js";

const SERVER_SCRIPT = fileURLToPath(new URL("./ws-server.ts", import.meta.url));

interface Pending {
  resolve(): void;
  reject(e: Error): void;
}

/** Opens a WebSocket; rejects on error before open. */
export function openWebSocket(url: string, protocol?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocol, { perMessageDeflate: false });
    const onError = (err: Error) => reject(err);
    ws.once("error", onError);
    ws.once("open", () => {
      ws.off("error", onError);
      ws.on("error", () => {}); // surfaced through "close"
      resolve(ws);
    });
  });
}

/** Request ids and their pending acknowledgements, failed all at once on close. */
export class Acks {
  private next = 1;
  private readonly pending = new Map<number, Pending>();

  add(): { id: number; done: Promise<void> } {
    const id = this.next++;
    const done = new Promise<void>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    return { id, done };
  }

  settle(id: number, error?: string): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (error === undefined) p.resolve();
    else p.reject(new Error(error));
  }

  failAll(reason: string): void {
    for (const p of this.pending.values()) p.reject(new Error(reason));
    this.pending.clear();
  }
}

export const wsSystem: SystemAdapter = {
  name: "ws",
  description: "ws 8 baseline: Map<channel, Set<socket>>, one prebuilt frame per message written to each socket",
  membersUnsupported: "N/A: the baseline keeps no presence",

  async start(ctx) {
    const proc = await ctx.spawn({
      name: "ws-server",
      args: ["--import", "tsx", SERVER_SCRIPT],
      cwd: ctx.repoRoot,
      ipc: true,
      ready: (l) => l.ready === "ws",
    });
    const url = String(proc.readyLine!.ws);
    return { clientUrls: [url], publishUrl: url, processes: [proc] };
  },

  async connect(url, onDelivery, onClose): Promise<ClientConnection> {
    const ws = await openWebSocket(url);
    const acks = new Acks();
    let closing = false;
    ws.on("message", (data) => {
      const m = JSON.parse(String(data)) as { id?: number; d?: BenchPayload };
      if (m.d) onDelivery(m.d.t, m.d.k);
      else if (m.id) acks.settle(m.id);
    });
    ws.on("close", (code) => {
      acks.failAll(`closed (${code})`);
      if (!closing) onClose(`closed by server (${code})`);
    });
    return {
      join(channel) {
        const { id, done } = acks.add();
        ws.send(JSON.stringify({ id, join: channel }));
        return done;
      },
      close() {
        closing = true;
        ws.terminate();
      },
    };
  },

  async createPublisher(url): Promise<Publisher> {
    const ws = await openWebSocket(url);
    const acks = new Acks();
    ws.on("message", (data) => {
      const m = JSON.parse(String(data)) as { id?: number };
      if (m.id) acks.settle(m.id);
    });
    ws.on("close", (code) => acks.failAll(`publisher connection closed (${code})`));
    const send = (frame: (id: number) => unknown) => {
      const { id, done } = acks.add();
      ws.send(JSON.stringify(frame(id)));
      return done;
    };
    return {
      publish: (channel, d) => send((id) => ({ id, pub: channel, d })),
      broadcast: (d) => send((id) => ({ id, all: 1, d })),
      members: () => Promise.reject(new Error("not supported by the ws baseline")),
      async close() {
        ws.terminate();
      },
    };
  },
};
