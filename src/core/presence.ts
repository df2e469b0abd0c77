/**
 * The Presence seam: who is in a channel, across every edge.
 *
 * Implementations: presence-memory.ts (the hub of the embedded mode),
 * src/link/broker-link.ts (an edge's view of it over TCP), and a Redis
 * implementation beside them.
 */
import type { Member } from "../../gen/realtime/client/v1/client_pb.js";

export type { Member };

export interface Presence {
  /**
   * Records member in channel, or replaces its profile if it is there.
   * Resolves once GetMembers (from any node) sees it.
   */
  add(channel: string, member: Member): Promise<void>;

  /** Removes the member from channel; removing an absent member is a no-op. */
  remove(channel: string, memberId: string): Promise<void>;

  /**
   * Lists the channel's members. Never a silently partial list: rejects with
   * RealtimeError(Unavailable) when some members cannot be known right now
   * (an edge that holds members of the channel is unreachable).
   */
  members(channel: string): Promise<Member[]>;
}
