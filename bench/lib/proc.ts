/**
 * Child processes of the bench: spawned in their own process group, with a
 * raised file-descriptor limit, their output drained, and all of them killed
 * when the coordinator exits for any reason (normal end, SIGINT, SIGTERM,
 * uncaught error). A scope owns the processes of one run so that they stop
 * together; the global registry is the backstop.
 *
 * Contract: after stopAll() resolves, or after the coordinator process has
 * exited, no process spawned through this module is left running, except if
 * the coordinator itself was SIGKILLed (then children with an IPC channel
 * exit on their own when it disconnects; others are left to the operator,
 * and `bench/README.md` says how to find them).
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { sleep } from "./clock.js";

/** Lines of stdout/stderr kept per process for error messages. */
const KEPT_LINES = 40;
/** How long a process gets between SIGTERM and SIGKILL. */
const TERM_GRACE_MS = 2_000;
/** Default wait for a process's ready line. */
const DEFAULT_READY_TIMEOUT_MS = 30_000;
/** File descriptors we want per process when the hard limit allows it. */
const WANTED_FD_LIMIT = 65_536;

export interface SpawnSpec {
  /** Shown in logs and errors. */
  name: string;
  /** Arguments to `node` (the current Node binary). */
  args: string[];
  cwd?: string;
  /** Added to the coordinator's environment. */
  env?: Record<string, string>;
  /** Opens a Node IPC channel (structured-clone serialization). */
  ipc?: boolean;
  /**
   * Predicate over each JSON line on stdout; spawn resolves at the first
   * line it accepts. Without it, spawn resolves once the process exists.
   */
  ready?: (line: Record<string, unknown>) => boolean;
  readyTimeoutMs?: number;
}

/** The soft fd limit children get: the hard limit, capped at WANTED_FD_LIMIT. */
export const childFdLimit: number = (() => {
  try {
    const hard = execFileSync("/bin/sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim();
    return hard === "unlimited" ? WANTED_FD_LIMIT : Math.min(Number(hard), WANTED_FD_LIMIT);
  } catch {
    return 1024;
  }
})();

const live = new Set<ManagedProcess>();

/** The reaper (lib/reaper.ts), started with the first child. */
let reaper: ChildProcess | undefined;
let reaperReady: Promise<void> | undefined;

function startReaper(): Promise<void> {
  const script = new URL("./reaper.ts", import.meta.url).pathname;
  reaper = spawn(process.execPath, ["--import", "tsx", script], {
    detached: true,
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const r = reaper;
  return new Promise((resolve, reject) => {
    r.once("message", () => {
      r.unref();
      r.channel?.unref();
      resolve();
    });
    r.once("exit", (code) => reject(new Error(`the reaper exited (${code}) before it was ready`)));
  });
}

function tellReaper(m: { add?: number; remove?: number }): void {
  if (reaper?.connected) reaper.send(m);
}

export class ManagedProcess {
  readonly pid: number;
  /** The JSON line that made the process ready, if a predicate was given. */
  readyLine: Record<string, unknown> | undefined;
  /** Resolves with the exit code (or signal name) when the process exits. */
  readonly exited: Promise<number | string>;
  private readonly recent: string[] = [];
  private exitValue: number | string | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitValue = code ?? signal ?? "unknown";
        live.delete(this);
        resolve(this.exitValue);
      });
    });
  }

  get alive(): boolean {
    return this.exitValue === undefined;
  }

  /** The last lines the process wrote, for error messages. */
  tail(): string {
    return this.recent.join("\n");
  }

  keep(line: string): void {
    this.recent.push(line.length > 500 ? line.slice(0, 500) + "…" : line);
    if (this.recent.length > KEPT_LINES) this.recent.shift();
  }

  /** Sends sig to the whole process group; ignores groups already gone. */
  signalGroup(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM to the group, SIGKILL after the grace period. */
  async stop(): Promise<void> {
    if (!this.alive) {
      this.signalGroup("SIGKILL"); // grandchildren the leader left behind
      return;
    }
    this.signalGroup("SIGTERM");
    const timer = sleep(TERM_GRACE_MS).then(() => "timeout");
    if ((await Promise.race([this.exited, timer])) === "timeout") this.signalGroup("SIGKILL");
    await Promise.race([this.exited, sleep(TERM_GRACE_MS)]);
    this.signalGroup("SIGKILL");
  }
}

/** Spawns `node ...spec.args` in a new process group with a raised fd limit. */
export async function spawnNode(spec: SpawnSpec): Promise<ManagedProcess> {
  await (reaperReady ??= startReaper());
  // `ulimit -n` only exists in a shell; exec keeps the pid, env and fds
  // (including the IPC channel) so the pid is the Node process itself.
  const child = spawn(
    "/bin/sh",
    ["-c", `ulimit -n ${childFdLimit} 2>/dev/null; exec "$0" "$@"`, process.execPath, ...spec.args],
    {
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe", ...(spec.ipc ? (["ipc"] as const) : [])],
      serialization: "advanced",
    },
  );
  const proc = new ManagedProcess(spec.name, child);
  live.add(proc);
  tellReaper({ add: proc.pid });
  // Only once the whole group is gone may the reaper forget it (see stop()).
  void proc.exited.then(() => setTimeout(() => tellReaper({ remove: proc.pid }), TERM_GRACE_MS * 2).unref());

  let onReadyLine: ((line: Record<string, unknown>) => void) | undefined;
  // Both streams are always drained: a full pipe would block the child.
  createInterface({ input: child.stdout! }).on("line", (line) => {
    proc.keep(line);
    if (onReadyLine && line.startsWith("{")) {
      try {
        onReadyLine(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* not JSON: a log line */
      }
    }
  });
  createInterface({ input: child.stderr! }).on("line", (line) => {
    proc.keep(line);
    if (process.env.BENCH_VERBOSE) process.stderr.write(`[${spec.name}] ${line}\n`);
  });
  child.on("error", (err) => proc.keep(`spawn error: ${err.message}`));

  if (!spec.ready) return proc;
  const predicate = spec.ready;
  const timeoutMs = spec.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${spec.name}: not ready after ${timeoutMs} ms`)), timeoutMs);
      onReadyLine = (line) => {
        if (!predicate(line)) return;
        clearTimeout(timer);
        proc.readyLine = line;
        onReadyLine = undefined;
        resolve();
      };
      void proc.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${spec.name}: exited (${code}) before it was ready`));
      });
    });
  } catch (err) {
    await proc.stop();
    throw new Error(`${(err as Error).message}\n--- last output of ${spec.name} ---\n${proc.tail()}`);
  }
  return proc;
}

/** The processes of one run, stopped together. */
export class ProcessScope {
  private readonly procs: ManagedProcess[] = [];

  async spawn(spec: SpawnSpec): Promise<ManagedProcess> {
    const p = await spawnNode(spec);
    this.procs.push(p);
    return p;
  }

  /** Processes of this scope that exited although nobody stopped them. */
  crashed(): ManagedProcess[] {
    return this.procs.filter((p) => !p.alive);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
    this.procs.length = 0;
  }
}

/** Stops every process this module ever spawned that is still running. */
export async function stopEverything(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

let handlersInstalled = false;

/**
 * Installs the exit backstops once: on SIGINT/SIGTERM and uncaught errors,
 * stop every child and exit; on exit, SIGKILL whatever is still alive
 * (synchronously, the only thing an exit handler can do).
 */
export function installCleanupHandlers(log: (msg: string) => void): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let stopping = false;
  const bail = (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: stopping ${live.size} child process(es)`);
    void stopEverything().finally(() => process.exit(code));
  };
  process.on("SIGINT", () => bail("SIGINT", 130));
  process.on("SIGTERM", () => bail("SIGTERM", 143));
  process.on("SIGHUP", () => bail("SIGHUP", 129));
  process.on("uncaughtException", (err) => {
    log(`uncaught: ${err.stack ?? err}`);
    bail("uncaught exception", 1);
  });
  process.on("unhandledRejection", (err) => {
    log(`unhandled rejection: ${(err as Error)?.stack ?? err}`);
    bail("unhandled rejection", 1);
  });
  process.on("exit", () => {
    for (const p of live) p.signalGroup("SIGKILL");
  });
}
