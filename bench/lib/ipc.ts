/**
 * Typed request/response over Node's IPC channel between the coordinator and
 * a worker process. Each worker declares its API as a map from method name to
 * [argument, result]; the coordinator calls `request(method, arg)` and gets
 * the result or the worker's error. Requests carry a sequence number, so
 * several may be outstanding; every request has a timeout.
 *
 * A worker exits when its IPC channel closes, so a coordinator that dies
 * takes its workers with it.
 */
import type { ManagedProcess } from "./proc.js";

export type Api = Record<string, [unknown, unknown]>;

interface RequestMessage {
  seq: number;
  method: string;
  arg: unknown;
}
interface ResponseMessage {
  seq: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export class WorkerClient<A extends Api> {
  private seq = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  /** Resolves when the worker listens (messages sent before that would be lost). */
  readonly ready: Promise<void>;

  constructor(readonly proc: ManagedProcess) {
    let listening: () => void = () => {};
    this.ready = new Promise((resolve, reject) => {
      listening = resolve;
      void proc.exited.then((code) =>
        reject(new Error(`${proc.name} exited (${code}) before it listened\n${proc.tail()}`)),
      );
    });
    this.ready.catch(() => {}); // awaited by the caller; never an unhandled rejection
    proc.child.on("message", (m: ResponseMessage | { hello: true }) => {
      if ("hello" in m) {
        listening();
        return;
      }
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${proc.name}: ${m.error}`));
    });
    void proc.exited.then((code) => {
      for (const p of this.pending.values()) p.reject(new Error(`${proc.name} exited (${code})\n${proc.tail()}`));
      this.pending.clear();
    });
  }

  request<M extends keyof A & string>(method: M, arg: A[M][0], timeoutMs: number): Promise<A[M][1]> {
    const seq = ++this.seq;
    return new Promise<A[M][1]>((resolve, reject) => {
      if (!this.proc.alive) {
        reject(new Error(`${this.proc.name} is not running\n${this.proc.tail()}`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error(`${this.proc.name}: ${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as A[M][1]);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: RequestMessage = { seq, method, arg };
      this.proc.child.send(msg);
    });
  }
}

export type Handlers<A extends Api> = { [M in keyof A]: (arg: A[M][0]) => Promise<A[M][1]> | A[M][1] };

/** Serves the worker's API on its IPC channel; exits when the channel closes. */
export function serveWorker<A extends Api>(handlers: Handlers<A>): void {
  if (!process.send) throw new Error("a bench worker must be started with an IPC channel");
  process.on("disconnect", () => process.exit(0));
  process.on("message", async (m: RequestMessage) => {
    let reply: ResponseMessage;
    try {
      const handler = handlers[m.method as keyof A];
      if (!handler) throw new Error(`unknown method ${m.method}`);
      reply = { seq: m.seq, ok: true, result: await handler(m.arg as never) };
    } catch (err) {
      reply = { seq: m.seq, ok: false, error: (err as Error)?.stack ?? String(err) };
    }
    if (process.connected) process.send!(reply);
  });
  process.send({ hello: true });
}
