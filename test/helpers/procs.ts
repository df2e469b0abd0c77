/**
 * Finding the processes a test started, however deep and whoever their
 * parent is now (an orphan is re-parented to PID 1): each carries a marker
 * in its environment, inherited from the process the test spawned. Linux
 * /proc only (the tests that use it need real process trees).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ROOT } from "./cluster.js";

/** The environment variable that marks the processes of one test case. */
export const CASE_ENV = "SWITCHBOARD_TEST_CASE";

/** A fresh marker: pass `{ [CASE_ENV]: marker }` in the environment of the process a test spawns. */
export function newMarker(): string {
  return randomBytes(8).toString("hex");
}

export interface MarkedProcess {
  pid: number;
  ppid: number;
  /** The command line, arguments joined by spaces. */
  cmd: string;
}

/** The live (not zombie) processes whose environment holds the marker. */
export function marked(marker: string): MarkedProcess[] {
  const out: MarkedProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, "latin1").split("\0").includes(`${CASE_ENV}=${marker}`)) continue;
      // stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1");
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (state === "Z" || state === "X") continue;
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "latin1").split("\0").join(" ").trim();
      out.push({ pid: Number(entry), ppid: Number(ppid), cmd });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

/** Polls until no process carries the marker; resolves with the time it took, or rejects naming the survivors. */
export async function allGone(marker: string, timeoutMs: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    const left = marked(marker);
    if (left.length === 0) return Date.now() - start;
    if (Date.now() - start > timeoutMs)
      throw new Error(
        `${left.length} process(es) still running ${timeoutMs} ms later:\n${left.map((p) => `  ${p.pid} (parent ${p.ppid}) ${p.cmd}`).join("\n")}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGKILLs every process that carries the marker (a test's cleanup, whatever happened). */
export function killMarked(marker: string): void {
  for (const p of marked(marker)) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
}

/** Whether host:port can be listened on now (nothing holds it). */
export function portFree(address: string): Promise<boolean> {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(i + 1));
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

export interface Spawned {
  child: ChildProcess;
  /** The marker every process of this tree carries (CASE_ENV). */
  marker: string;
  /** The ready lines seen on stdout so far, by role. */
  ready: Map<string, Record<string, string>>;
  /** Everything written to stderr so far ("" when stderr is not a pipe). */
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

const READY_TIMEOUT_MS = 30_000;

/**
 * Spawns argv (cwd: the repository) with a fresh marker and resolves once a
 * ready line of role `until` is on its stdout. stderr: "pipe" (collected)
 * or a file descriptor to hand to the process.
 */
export async function spawnMarked(
  argv: readonly string[],
  until: string,
  env: NodeJS.ProcessEnv = {},
  options: { detached?: boolean; stderr?: "pipe" | number } = {},
): Promise<Spawned> {
  const marker = newMarker();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env, [CASE_ENV]: marker },
    stdio: ["ignore", "pipe", options.stderr ?? "pipe"],
    detached: options.detached ?? false,
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const ready = new Map<string, Record<string, string>>();
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${until} ready line within ${READY_TIMEOUT_MS} ms:\n${stderr}`)),
        READY_TIMEOUT_MS,
      );
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`exited (${signal ?? code}) before its ready line:\n${stderr}`));
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        try {
          const msg = JSON.parse(line) as Record<string, string>;
          if (typeof msg.ready !== "string") return;
          ready.set(msg.ready, msg);
          if (msg.ready === until) {
            clearTimeout(timer);
            resolve();
          }
        } catch {
          // not a ready line
        }
      });
    });
  } catch (err) {
    killMarked(marker);
    throw err;
  }
  return { child, marker, ready, stderr: () => stderr, exited };
}

/**
 * A FIFO that the test holds open for reading and never reads, filled to
 * the brim first: nothing a process writes to `fd` can ever be written.
 */
export async function stalledPipe(): Promise<{ fd: number; bytes: number; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "switchboard-pipe-"));
  const path = join(dir, "fifo");
  await new Promise<void>((resolve, reject) =>
    spawn("mkfifo", [path], { stdio: "ignore" }).once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`mkfifo exited ${code}`)),
    ),
  );
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const chunk = Buffer.alloc(4096, 0x78);
  let bytes = 0;
  for (;;) {
    try {
      bytes += writeSync(writer, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
      throw err;
    }
  }
  return {
    fd: writer,
    bytes,
    close() {
      closeSync(writer);
      closeSync(reader);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
