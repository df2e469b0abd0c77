/**
 * The paging of members in the core (src/core/pages.ts) and the Presence
 * seam's page() on the hub's MemoryPresence: keyset order, the `more` flag,
 * the byte bound (at least one member), and a size measure that agrees with
 * the reply actually encoded in each client encoding.
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { MemberSchema, type Member } from "../gen/realtime/client/v1/client_pb.js";
import { serverFrame } from "../src/wire/client-codec.js";
import { Code } from "../src/protocol/errors.js";
import { fitPage, memberSize } from "../src/core/pages.js";
import { SortedKeys } from "../src/core/sorted-keys.js";
import fc from "fast-check";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { Encoding } from "../src/protocol/encodings.js";

const member = (id: string, text = ""): Member =>
  create(MemberSchema, { id, data: text ? { kind: { case: "stringValue", value: text } } : undefined });

describe("Presence.page (MemoryPresence)", () => {
  it("pages by id after the key, says whether more follow, and walks to everyone exactly once", async () => {
    const hub = new MemoryPresence();
    const view = hub.view("edge-a");
    const ids = ["k", "b", "x", "a", "m", "c", "z"];
    for (const id of ids) await view.add("room", member(id));
    expect(await view.page("room", "", 3)).toMatchObject({
      members: [{ id: "a" }, { id: "b" }, { id: "c" }],
      more: true,
    });
    expect(await view.page("room", "c", 3)).toMatchObject({
      members: [{ id: "k" }, { id: "m" }, { id: "x" }],
      more: true,
    });
    expect(await view.page("room", "x", 3)).toMatchObject({ members: [{ id: "z" }], more: false });
    expect(await view.page("room", "z", 3)).toEqual({ members: [], more: false });
    expect(await view.page("nobody", "", 3)).toEqual({ members: [], more: false });
    // A limit below 1 counts as 1.
    expect((await view.page("room", "", 0)).members).toHaveLength(1);
  });

  it("is never silently partial: UNAVAILABLE while an edge holding members is unreachable", async () => {
    const hub = new MemoryPresence();
    await hub.view("edge-a").add("room", member("a"));
    await hub.view("edge-b").add("room", member("b"));
    hub.setReachable("edge-b", false);
    await expect(hub.view("api").page("room", "", 10)).rejects.toMatchObject({ code: Code.Unavailable });
  });
});

describe("PresenceStats (MemoryPresence)", () => {
  const user = (id: string, userId: string): Member => create(MemberSchema, { id, userId });

  it("counts connections and distinct users, a user with several connections once, anonymous ones as none", async () => {
    const hub = new MemoryPresence();
    const a = hub.view("edge-a");
    const b = hub.view("edge-b");
    await a.add("room", user("c1", "ann"));
    await a.add("room", user("c2", "ann"));
    await b.add("room", user("c3", "ann"));
    await b.add("room", user("c4", "bob"));
    await b.add("room", user("c5", ""));
    expect(await a.stats("room")).toEqual({ connections: 5, users: 2 });
    // A profile update is no new connection.
    await b.add("room", user("c4", "bob"));
    expect(await a.stats("room")).toEqual({ connections: 5, users: 2 });
    await a.remove("room", "c1");
    await a.remove("room", "c2");
    expect(await a.stats("room")).toEqual({ connections: 3, users: 2 });
    // Counts are not refused for an unreachable edge (pages are).
    hub.setReachable("edge-b", false);
    expect(await a.stats("room")).toEqual({ connections: 3, users: 2 });
    const dropped = hub.dropOwner("edge-b");
    // Its 3 members leave, then the edge itself is reported given up on.
    expect(dropped.map((c) => c.kind)).toEqual(["leave", "leave", "leave", "edge"]);
    expect(await a.stats("room")).toEqual({ connections: 0, users: 0 });
    expect(await a.stats("nobody")).toEqual({ connections: 0, users: 0 });
  });
});

describe("SortedKeys", () => {
  it("agrees with a sorted array under adds and deletes, and reads keyset pages from any key", () => {
    // A small alphabet: about 600 distinct keys, so that deletes hit and blocks split.
    const key = fc.string({ maxLength: 3, unit: fc.constantFrom(..."abcdefgh") });
    const op = fc.tuple(fc.boolean(), key);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000, size: "max" }), key, (ops, from) => {
        const keys = new SortedKeys();
        const model = new Set<string>();
        for (const [add, key] of ops) {
          expect(add ? keys.add(key) : keys.delete(key)).toBe(add ? !model.has(key) : model.has(key));
          if (add) model.add(key);
          else model.delete(key);
        }
        const sorted = [...model].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
        expect(keys.size).toBe(sorted.length);
        expect([...keys.after("")]).toEqual(sorted.filter((k) => k > ""));
        expect([...keys.after(from)]).toEqual(sorted.filter((k) => k > from));
      }),
      { numRuns: 50 },
    );
  });

  it("splits and merges blocks over many keys", () => {
    const keys = new SortedKeys();
    const ids = Array.from({ length: 5000 }, (_, i) => String((i * 7919) % 5000).padStart(4, "0"));
    for (const id of ids) keys.add(id);
    for (const id of ids.slice(0, 2500)) keys.delete(id);
    const rest = ids.slice(2500).sort();
    expect([...keys.after("")]).toEqual(rest);
    expect([...keys.after(rest[1000]!)].slice(0, 3)).toEqual(rest.slice(1001, 1004));
  });
});

describe("fitPage and memberSize", () => {
  const page = {
    members: Array.from({ length: 50 }, (_, i) => member(`m${String(i).padStart(3, "0")}`, "\u0001".repeat(1000 + i))),
    more: false,
  };

  it("cut a page at the byte bound with at least one member, and mark it cut", () => {
    expect(fitPage(page, 1e9, memberSize(Encoding.Proto))).toBe(page);
    const cut = fitPage(page, 10_000, memberSize(Encoding.Proto));
    expect(cut.members.length).toBeLessThan(page.members.length);
    expect(cut.members).toEqual(page.members.slice(0, cut.members.length));
    expect(cut.more).toBe(true);
    expect(fitPage(page, 1, memberSize(Encoding.Json)).members).toHaveLength(1);
  });

  it("measure what the members really take in each encoding's reply (within the reply's own few bytes)", () => {
    for (const encoding of [Encoding.Json, Encoding.Proto]) {
      const measured = page.members.reduce((sum, m) => sum + memberSize(encoding)(m), 0);
      const empty = serverFrame({ frame: { case: "reply", value: { id: 7, nextPageToken: "t" } } }, encoding).length;
      const full = serverFrame(
        { frame: { case: "reply", value: { id: 7, members: page.members, nextPageToken: "t" } } },
        encoding,
      ).length;
      expect(Math.abs(full - empty - measured)).toBeLessThanOrEqual(16);
    }
    // JSON escapes each \u0001 in six bytes: the JSON reply is far larger than the binary one.
    expect(memberSize(Encoding.Json)(page.members[0]!)).toBeGreaterThan(
      5 * memberSize(Encoding.Proto)(page.members[0]!),
    );
  });
});
