/**
 * A process notices that the process that started it is gone, so that it
 * can stop instead of living on as an orphan that holds its ports. Two
 * parents do not tell their children when they die:
 *
 * - `switchboard dev`, when it is killed (kill -9, or a crash): its API and
 *   edge are started with an IPC channel (DEV_CHILD_ENV set); the channel
 *   closes with dev, whatever ended it.
 * - npm and npx: on SIGTERM `npm start` exits and its `sh -c` dies without
 *   passing the signal on, so `dev` (or the `npx switchboard edge`) is
 *   re-parented and runs on. A process that npm started (npm sets
 *   npm_command in the environment of what it runs) checks its parent's pid
 *   every PARENT_CHECK_INTERVAL_MS; a change means the parent is gone. The
 *   API and edge that dev runs under npm inherit npm_command but watch
 *   only their channel to dev: no timer.
 *
 * Neither applies to a process started otherwise (systemd, a container, a
 * shell's `nohup ... &`): its parent may go and it stays.
 */

/** How often a process that npm started checks that its parent is still there. */
export const PARENT_CHECK_INTERVAL_MS = 500;

/** Set by `switchboard dev` in the environment of the API and the edge it runs (with an IPC channel). */
export const DEV_CHILD_ENV = "SWITCHBOARD_DEV_CHILD";

/** Whether this process is an API or edge that `switchboard dev` runs. */
export function isDevChild(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[DEV_CHILD_ENV] === "1" && process.channel !== undefined;
}

/**
 * Calls onGone once, with what happened, when the parent is gone (see the
 * file's comment for which parents are watched). The watch keeps nothing
 * alive: the IPC channel and the timer are unref'd.
 */
export function watchParent(onGone: (why: string) => void, env: NodeJS.ProcessEnv = process.env): void {
  let called = false;
  const gone = (why: string) => {
    if (called) return;
    called = true;
    clearInterval(timer);
    onGone(why);
  };
  let timer: NodeJS.Timeout | undefined;
  if (isDevChild(env)) {
    process.channel!.unref();
    process.once("disconnect", () => gone("switchboard dev is gone (its IPC channel closed)"));
    // Its parent is dev, whose end the channel tells at once: no timer (npm_command is only inherited).
    return;
  }
  if (env.npm_command !== undefined) {
    const parent = process.ppid;
    timer = setInterval(() => {
      if (process.ppid !== parent) gone(`the parent process ${parent} (npm or the shell it ran) is gone`);
    }, PARENT_CHECK_INTERVAL_MS).unref();
  }
}
