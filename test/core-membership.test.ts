/**
 * The membership room with in-memory fakes of its seams: what a change
 * writes and announces, in which order, and what happens when a write or a
 * publish fails (core/membership.ts's contract). Fake timers: no waiting.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EventSchema, MemberSchema, type Member } from "../gen/realtime/client/v1/client_pb.js";
import type { Broker, Publication } from "../src/core/broker.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import { ANNOUNCE_WINDOW, Membership, SETTLE_RETRY_MS, type MembershipOptions } from "../src/core/membership.js";
import type { MemberPage, Presence } from "../src/core/presence.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { IdGenerator } from "../src/core/publication.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";

const unavailable = () => new RealtimeError(Code.Unavailable, "away");

/** Records every call, in one log, and fails the next ones on demand. */
class World {
  readonly log: string[] = [];
  readonly published: Publication[] = [];
  /** Fails every call of these operations with this error while set. */
  failing = new Map<"publish" | "add" | "remove", () => Error>();

  readonly broker: Broker = {
    publish: async (pub) => {
      this.check("publish");
      const e = fromBinary(EventSchema, pub.event);
      this.log.push(`publish ${e.event} ${e.channel} ${(e.payload.value as Member).id}`);
      this.published.push(pub);
      return { edges: 1, offset: 0n, epoch: "" };
    },
    subscribe: async () => {},
    unsubscribe: async () => {},
    history: async () => {
      throw new Error("not used");
    },
  };

  readonly presence: Presence = {
    add: async (channel, member) => {
      this.check("add");
      this.log.push(`add ${channel} ${member.id}`);
      return 0n;
    },
    remove: async (channel, id) => {
      this.check("remove");
      this.log.push(`remove ${channel} ${id}`);
      return 0n;
    },
    departed: (channel, id) => this.log.push(`departed ${channel} ${id}`),
    members: async () => [],
    page: async (): Promise<MemberPage> => ({ members: [], more: false }),
  };

  private check(op: "publish" | "add" | "remove"): void {
    const fail = this.failing.get(op);
    if (fail) throw fail();
  }
}

function setup(options: Partial<MembershipOptions> = {}) {
  const world = new World();
  const errors: string[] = [];
  const membership = new Membership({
    broker: world.broker,
    presence: world.presence,
    eventIds: new IdGenerator("t"),
    onError: (_err, context) => errors.push(context),
    ...options,
  });
  return { world, errors, membership };
}

const member = (id: string) => create(MemberSchema, { id, userId: `user-${id}` });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("membership room", () => {
  it("join writes presence, then publishes channel:join about the member, never back to its own connection", async () => {
    const { world, membership } = setup();
    const own: Publication[] = [];
    await membership.join("c", member("m1"), (pub) => {
      // The connection's own copy comes once the change stands, before it is published.
      world.log.push("stands");
      own.push(pub);
    });
    expect(world.log).toEqual(["add c m1", "stands", "publish channel:join c m1"]);
    const [pub] = world.published;
    expect(own).toEqual([pub]);
    expect(pub).toMatchObject({ channel: "c", origin: "m1", skipOrigin: true });
    const event = fromBinary(EventSchema, pub!.event);
    expect(event.payload).toMatchObject({ case: "member", value: { id: "m1", userId: "user-m1" } });
    expect(event.id).toMatch(/^t\./);
    expect(membership.owes("m1")).toBe(false);
  });

  it("a failed first presence write changes nothing: the call rejects, nothing is announced or owed", async () => {
    const { world, membership } = setup();
    const stands = vi.fn();
    world.failing.set("add", unavailable);
    await expect(membership.join("c", member("m1"), stands)).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(membership.update(["c1", "c2"], member("m1"), stands)).rejects.toMatchObject({
      code: Code.Unavailable,
    });
    world.failing.set("remove", unavailable);
    await expect(membership.leave("c", member("m1"), stands)).rejects.toMatchObject({ code: Code.Unavailable });
    expect(stands).not.toHaveBeenCalled();
    expect(world.log).toEqual([]);
    expect(membership.owes("m1")).toBe(false);
  });

  it("once the write succeeded the change stands: an unpublished event is owed, retried, published once", async () => {
    const { world, membership } = setup();
    world.failing.set("publish", unavailable);
    await membership.join("c", member("m1"));
    expect(membership.owes("m1")).toBe(true);
    await expect(membership.settle("m1")).rejects.toMatchObject({ code: Code.Unavailable });
    world.failing.delete("publish");
    await vi.advanceTimersByTimeAsync(SETTLE_RETRY_MS);
    expect(world.log).toEqual(["add c m1", "publish channel:join c m1"]);
    expect(membership.owes("m1")).toBe(false);
    await vi.advanceTimersByTimeAsync(5 * SETTLE_RETRY_MS);
    expect(world.published).toHaveLength(1);
  });

  it("a connection's owed steps run in the order of its changes, each once however many callers settle", async () => {
    const { world, membership } = setup();
    await membership.join("c1", member("m1"));
    await membership.join("c2", member("m1"));
    world.failing.set("publish", unavailable);
    await membership.leave("c1", member("m1"));
    membership.depart("c2", member("m1"));
    expect(membership.owedRemovals()).toEqual([{ channel: "c2", member: member("m1") }]);
    world.failing.delete("publish");
    await Promise.all([membership.settle("m1"), membership.settle("m1"), vi.advanceTimersByTimeAsync(SETTLE_RETRY_MS)]);
    expect(world.log.slice(4)).toEqual([
      "remove c1 m1",
      "publish channel:leave c1 m1",
      // Presence is told each leave of a removal is out (Presence.departed), only once it is.
      "departed c1 m1",
      "remove c2 m1",
      "publish channel:leave c2 m1",
      "departed c2 m1",
    ]);
    expect(membership.owes("m1")).toBe(false);
    expect(membership.owedRemovals()).toEqual([]);
  });

  it("update writes and announces channel by channel; a later write that fails leaves the rest owed", async () => {
    const { world, membership } = setup();
    const own: string[] = [];
    let adds = 0;
    world.presence.add = async (channel, m) => {
      if (++adds === 2) throw unavailable();
      world.log.push(`add ${channel} ${m.id}`);
      return 0n;
    };
    await membership.update(["c1", "c2"], member("m1"), (pub) => own.push(pub.channel));
    // Its own copies come at once, for every channel: the change stands.
    expect(own).toEqual(["c1", "c2"]);
    expect(world.log).toEqual(["add c1 m1", "publish channel:update c1 m1"]);
    expect(membership.owes("m1")).toBe(true);
    await membership.settle("m1");
    expect(world.log.slice(2)).toEqual(["add c2 m1", "publish channel:update c2 m1"]);
    // No channels: nothing to write or announce.
    await membership.update([], member("m2"));
    expect(world.log).toHaveLength(4);
  });

  it("a step that fails for a reason that will not pass is reported and dropped, not retried", async () => {
    const { world, errors, membership } = setup();
    world.failing.set("publish", () => new RealtimeError(Code.Internal, "broken"));
    await membership.join("c", member("m1"));
    membership.depart("c", member("m1"));
    await membership.settle("m1");
    expect(errors).toEqual(["publishing channel:join", "publishing channel:leave"]);
    expect(world.log).toEqual(["add c m1", "remove c m1"]);
    expect(membership.owes("m1")).toBe(false);
  });

  it("announces presence's own changes in the order reported, after those reported before, never back to the member", async () => {
    const { world, membership } = setup();
    world.failing.set("publish", unavailable);
    await membership.announce([{ kind: "leave", channel: "c", member: member("gone") }]);
    await membership.announce([{ kind: "join", channel: "c", member: member("back") }]);
    expect(world.published).toEqual([]);
    world.failing.delete("publish");
    await vi.advanceTimersByTimeAsync(SETTLE_RETRY_MS);
    expect(world.log).toEqual(["publish channel:leave c gone", "publish channel:join c back"]);
    expect(world.published.map((p) => [p.origin, p.skipOrigin])).toEqual([
      ["gone", true],
      ["back", true],
    ]);
  });

  it("a sweep's thousands of leaves go out ANNOUNCE_WINDOW at a time, in order; one that fails is retried with the rest, none lost", async () => {
    const { world, membership } = setup();
    const n = ANNOUNCE_WINDOW * 3 + 7;
    let inFlight = 0;
    let most = 0;
    let calls = 0;
    const publish = world.broker.publish;
    world.broker.publish = async (pub) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await Promise.resolve();
      inFlight--;
      // The broker is away for one call in the second window.
      if (++calls === ANNOUNCE_WINDOW + 10) throw unavailable();
      return publish(pub);
    };
    const changes = Array.from({ length: n }, (_, i) => ({
      kind: "leave" as const,
      channel: "c",
      member: member(`m${i}`),
    }));
    await membership.announce(changes);
    await vi.advanceTimersByTimeAsync(SETTLE_RETRY_MS);
    const ids = world.log.map((l) => l.split(" ")[3]!);
    expect(most).toBe(ANNOUNCE_WINDOW);
    // Every leave; the one that failed is retried with all after it, in order (those already out go out
    // twice), so the last copies come in the order reported: a member's later change always lands last.
    const lasts = ids.filter((id, i) => ids.lastIndexOf(id) === i);
    expect(lasts).toEqual(changes.map((c) => c.member.id));
    expect(ids.length - n).toBe(ANNOUNCE_WINDOW - 10);
  });

  it("presence's changes and a connection's owed steps are separate queues: neither holds the other up", async () => {
    const { world, membership } = setup();
    world.failing.set("remove", unavailable);
    membership.depart("c", member("m1"));
    await membership.settle("m1").catch(() => {});
    await membership.announce([{ kind: "leave", channel: "c", member: member("gone") }]);
    expect(world.log).toEqual(["publish channel:leave c gone"]);
    expect(membership.owes("m1")).toBe(true);
    expect(membership.owedRemovals()).toHaveLength(1);
  });

  it("retryAnnouncements false (the hub): a change no edge can receive is dropped, silently", async () => {
    const { world, errors, membership } = setup({ retryAnnouncements: false });
    world.failing.set("publish", unavailable);
    await membership.announce([
      { kind: "leave", channel: "c", member: member("a") },
      { kind: "leave", channel: "c", member: member("b") },
    ]);
    world.failing.delete("publish");
    await vi.advanceTimersByTimeAsync(2 * SETTLE_RETRY_MS);
    expect(world.published).toEqual([]);
    expect(errors).toEqual([]);
    // A connection's changes are owed all the same.
    world.failing.set("publish", unavailable);
    await membership.join("c", member("m1"));
    world.failing.delete("publish");
    await vi.advanceTimersByTimeAsync(SETTLE_RETRY_MS);
    expect(world.log).toEqual(["add c m1", "publish channel:join c m1"]);
  });

  it("a node without presence only announces; close() stops retrying", async () => {
    const { world, membership } = setup({ presence: undefined });
    await expect(membership.join("c", member("m1"))).rejects.toThrow(/no presence/);
    world.failing.set("publish", unavailable);
    await membership.announce([{ kind: "leave", channel: "c", member: member("a") }]);
    membership.close();
    world.failing.delete("publish");
    await vi.advanceTimersByTimeAsync(2 * SETTLE_RETRY_MS);
    expect(world.published).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("the hub: what MemoryPresence removes by itself is announced as leaves, and dropped when no edge can hear it", async () => {
    const broker = new MemoryBroker();
    const presence = new MemoryPresence();
    const errors: string[] = [];
    const membership = new Membership({
      broker: broker.attach(() => {}, false),
      eventIds: new IdGenerator("hub"),
      retryAnnouncements: false,
      onError: (_err, context) => errors.push(context),
    });
    presence.add("edge-a", "c", member("a1"));
    presence.add("edge-a", "d", member("a2"));
    presence.add("edge-b", "c", member("b1"));
    // Nobody attached: the hub's broker fails, and no one is there to tell.
    await membership.announce(presence.dropOwner("edge-a"));
    expect(errors).toEqual([]);
    presence.add("edge-a", "c", member("a1"));
    const heard: string[] = [];
    const edge = broker.attach((pub) => {
      const e = fromBinary(EventSchema, pub.event);
      heard.push(`${e.event} ${e.channel} ${(e.payload.value as Member).id} ${pub.origin}`);
    }, true);
    await edge.subscribe("c");
    // A resync of edge-a that re-sends nothing removes a1.
    presence.beginSync("edge-a");
    await membership.announce(presence.endSync("edge-a"));
    expect(heard).toEqual(["channel:leave c a1 a1"]);
    expect(presence.members("c").map((m) => m.id)).toEqual(["b1"]);
    await vi.advanceTimersByTimeAsync(2 * SETTLE_RETRY_MS);
    expect(heard).toHaveLength(1);
  });

  it("is the only announcer: no other source file builds a system event", () => {
    const builders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (path.endsWith(".ts") && /\bsystemEvent\(/.test(readFileSync(path, "utf8"))) builders.push(path);
      }
    };
    walk("src");
    // publication.ts defines the builder; the room is its one caller.
    expect(builders.sort()).toEqual(["src/core/membership.ts", "src/core/publication.ts"]);
  });
});
