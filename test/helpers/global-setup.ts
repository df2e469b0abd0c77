/**
 * Vitest global setup: marks every process the tests start with this run's
 * id, and after the run kills any that a test file left behind (a file whose
 * hooks timed out never reaches its stop()). Linux /proc only; elsewhere the
 * teardown does nothing.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { TestProject } from "vitest/node";

/** The environment variable that marks a process started by this run's tests. */
export const RUN_ENV = "SWITCHBOARD_TEST_RUN";

declare module "vitest" {
  export interface ProvidedContext {
    switchboardTestRun: string;
  }
}

export function setup(project: TestProject): () => void {
  const run = randomBytes(8).toString("hex");
  // Only the processes test/helpers/cluster.ts starts carry it, not vitest's own.
  project.provide("switchboardTestRun", run);
  return () => {
    let pids: string[];
    try {
      pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
    } catch {
      return;
    }
    for (const pid of pids) {
      try {
        if (readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").includes(`${RUN_ENV}=${run}`)) {
          process.kill(Number(pid), "SIGKILL");
          console.warn(`test teardown: killed process ${pid}, left running by a test`);
        }
      } catch {
        // gone already, or not ours to read
      }
    }
  };
}
