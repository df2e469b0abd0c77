/** The systems the harness knows, by command-line id, loaded on demand. */
import type { SystemAdapter } from "./system.js";

export const SYSTEM_IDS = ["ws", "socketio", "switchboard"] as const;
export type SystemId = (typeof SYSTEM_IDS)[number];

export async function loadSystem(id: string): Promise<SystemAdapter> {
  switch (id) {
    case "ws":
      return (await import("./ws.js")).wsSystem;
    case "socketio":
      return (await import("./socketio.js")).socketIoSystem;
    case "switchboard":
      return (await import("./switchboard.js")).switchboardSystem;
    default:
      throw new Error(`unknown system "${id}" (known: ${SYSTEM_IDS.join(", ")})`);
  }
}
