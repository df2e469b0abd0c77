/**
 * The reaper: a tiny process that outlives a coordinator killed with
 * SIGKILL (or by the OOM killer), which cannot clean up itself. The
 * coordinator tells it, over IPC, every process group it starts and stops;
 * when the IPC channel closes, for whatever reason, the reaper SIGKILLs
 * every group still registered and exits.
 */
const groups = new Set<number>();

process.on("message", (m: { add?: number; remove?: number }) => {
  if (m.add !== undefined) groups.add(m.add);
  if (m.remove !== undefined) groups.delete(m.remove);
});

process.on("disconnect", () => {
  for (const g of groups) {
    try {
      process.kill(-g, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  process.exit(0);
});

process.on("SIGINT", () => {}); // a Ctrl-C is the coordinator's to handle; the reaper waits for the disconnect
process.send?.({ ready: true });
