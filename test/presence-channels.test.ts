/**
 * PresenceDirectory.channels of the memory presence (ListChannels' source):
 * the same answer as sorting every channel, for any set of channels, prefix,
 * cursor and limit; and a walk by pages lists each channel exactly once.
 */
import { create } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemberSchema } from "../gen/realtime/client/v1/client_pb.js";
import { MemoryPresence } from "../src/core/presence-memory.js";

const member = (id: string, userId = "") => create(MemberSchema, { id, userId });
const name = fc.stringMatching(/^[a-c/:]{1,4}$/);

describe("MemoryPresence.channelPage", () => {
  it("equals the naive sort-filter-slice for any channels, prefix, cursor and limit", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { maxLength: 40 }),
        fc.string({ maxLength: 2 }).map((s) => s.replace(/[^a-c/:]/g, "")),
        fc.oneof(fc.constant(""), name),
        fc.integer({ min: 1, max: 12 }),
        (channels, prefix, after, limit) => {
          const p = new MemoryPresence();
          channels.forEach((c, i) => {
            // 1 to 3 members; m0 and m1 are one user's two connections, m2 another user's.
            for (let k = 0; k <= i % 3; k++) p.add("edge", c, member(`m${k}`, `u${k >> 1}`));
          });
          const expected = [...channels]
            .filter((c) => c.startsWith(prefix) && c > after)
            .sort()
            .slice(0, limit)
            .map((c) => {
              const members = (channels.indexOf(c) % 3) + 1;
              return { channel: c, members, users: Math.ceil(members / 2) };
            });
          expect(p.channelPage(prefix, after, limit)).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a walk by pages lists every channel once, while channels come and go", () => {
    const p = new MemoryPresence();
    const all = Array.from({ length: 5000 }, (_, i) => `ch-${(i * 7919) % 5000}`);
    for (const c of all) p.add("edge", c, member("x"));
    const seen: string[] = [];
    let after = "";
    for (;;) {
      const page = p.channelPage("ch-", after, 300);
      if (page.length === 0) break;
      seen.push(...page.map((c) => c.channel));
      after = page[page.length - 1]!.channel;
      // Churn between pages: a channel behind the cursor leaves, a new one appears.
      p.remove("edge", seen[0]!, "x");
      p.add("edge", `ch-new-${seen.length}`, member("y"));
    }
    const stable = seen.filter((c) => !c.startsWith("ch-new-"));
    expect(new Set(stable).size).toBe(stable.length);
    expect([...stable].sort()).toEqual([...all].sort());
  });
});
