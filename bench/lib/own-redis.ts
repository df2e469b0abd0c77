/**
 * A redis-server of a bench run's own, without persistence, on a free port
 * (test/helpers/redis-topology.ts has the tests' one, but needs vitest).
 * The caller kills `child` when done. port: a given one (to start it again
 * where its clients reconnect); args: more redis-server options, which
 * override the defaults (e.g. --appendonly yes and a --dir).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { answersPing, freePort } from "../../test/helpers/net.js";

/** How long redis-server may take to answer PING after it is spawned. */
const OWN_REDIS_START_MS = 10_000;

export async function ownRedis(
  options: { port?: number; args?: string[] } = {},
): Promise<{ url: string; child: ChildProcess }> {
  const port = options.port ?? (await freePort());
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    ...(options.args ?? []),
  ];
  const child = spawn("redis-server", args, { stdio: "ignore" });
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + OWN_REDIS_START_MS;
  while (!(await answersPing(url, 1_000))) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not listen within ${OWN_REDIS_START_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, child };
}
