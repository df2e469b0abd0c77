/**
 * The edge core with in-memory fakes of its seams: membership, commands,
 * echo, system events, fan-out and what GetConnections tells of a
 * connection, without processes or sockets.
 */
import { create, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  ClientFrameSchema,
  EventSchema,
  PresenceChangeSchema,
  ServerFrameSchema,
  type Event,
  type Presence,
  type ServerFrame,
} from "../gen/realtime/client/v1/client_pb.js";
import { historyRules } from "../src/core/history-rules.js";
import { createPublication } from "../src/core/publication.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import {
  Edge,
  MAX_HELD_PRESENCE_EVENTS,
  MAX_PRESENCE_FRAMES_PER_SECOND,
  MAX_PRESENCE_FRAME_BYTES,
  type EdgeOptions,
  type PresenceForm,
  type Session,
} from "../src/core/edge.js";
import { SETTLE_RETRY_MS } from "../src/core/membership.js";
import { NOOP_OBSERVER } from "../src/core/observer.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";
import { DEFAULT_LIMITS, MAX_CHANNELS_LISTED, MAX_CONNECTIONS_LISTED } from "../src/core/limits.js";
import { describeConnections } from "../src/core/edge-control.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { parsePresenceRules, presenceRules } from "../src/core/presence-rules.js";
import type { Connection } from "../src/core/transport.js";
import { Encoding } from "../src/protocol/encodings.js";
import { presenceEvents } from "../src/protocol/presence-changes.js";

class FakeTransport implements Connection {
  readonly sent: Uint8Array[] = [];
  frames(): ServerFrame[] {
    return this.sent.map((b) => fromJsonString(ServerFrameSchema, new TextDecoder().decode(b)));
  }
  events(name?: string) {
    return this.frames().flatMap((f) =>
      f.frame.case === "event" && (!name || f.frame.value.event === name) ? [f.frame.value] : [],
    );
  }
  replies() {
    return this.frames().flatMap((f) => (f.frame.case === "reply" ? [f.frame.value] : []));
  }
  /** Every event, from event and presence frames, in order. */
  allEvents(): Event[] {
    return this.frames().flatMap((f) =>
      f.frame.case === "event" ? [f.frame.value] : f.frame.case === "presence" ? presenceEvents(f.frame.value) : [],
    );
  }
  send(data: Uint8Array): void {
    this.sent.push(data);
  }
  close(): void {}
}

function setup(limits = DEFAULT_LIMITS) {
  const broker = new MemoryBroker();
  const presence = new MemoryPresence();
  let edge!: Edge;
  const node = broker.attach((pub) => edge.deliver(pub), true);
  const view = presence.view("edge-1");
  edge = new Edge({ broker: node, presence: view, limits, allowClientBroadcast: true });
  const connect = (echo = true) => {
    const t = new FakeTransport();
    const s = edge.connect(t, Encoding.Json, echo);
    return { t, s };
  };
  const cmd = async (s: Session, init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => {
    edge.receive(s, new TextEncoder().encode(toJsonString(ClientFrameSchema, create(ClientFrameSchema, init))), false);
    await s.queue;
  };
  return { edge, broker, presence, view, node, connect, cmd };
}

const down = async (): Promise<never> => {
  throw new RealtimeError(Code.Unavailable, "the link is down");
};
const errorOf = (c: { t: FakeTransport }) => c.t.replies().at(-1)!.error?.code;
const memberIds = (events: { payload: { value?: unknown } }[]) =>
  events.map((e) => (e.payload.value as { id: string }).id);

describe("edge core", () => {
  it("join is idempotent: one channel:join, one member", async () => {
    const { connect, cmd, presence } = setup();
    const a = connect();
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    await cmd(a.s, { id: 2, command: { case: "join", value: { channel: "c" } } });
    expect(a.t.events("channel:join")).toHaveLength(1);
    expect(presence.members("c").map((m) => m.id)).toEqual([a.s.id]);
    expect(a.t.replies().map((r) => [r.id, r.error?.code])).toEqual([
      [1, undefined],
      [2, undefined],
    ]);
  });

  it("echo off hides a connection's own join, update and message, not others'", async () => {
    const { connect, cmd } = setup();
    const a = connect(false);
    const b = connect(true);
    await cmd(b.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    await cmd(a.s, {
      id: 2,
      command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "ann" } } } },
    });
    await cmd(a.s, {
      id: 3,
      command: {
        case: "send",
        value: { channel: "c", event: "msg", payload: { case: "binary", value: new Uint8Array([1]) } },
      },
    });
    expect(a.t.events().map((e) => e.event)).toEqual([]); // a saw none of its own
    expect(b.t.events().map((e) => e.event)).toEqual(["channel:join", "channel:join", "channel:update", "msg"]);
    // The per-call flag overrides the connection default.
    await cmd(a.s, {
      id: 4,
      command: {
        case: "send",
        value: { channel: "c", event: "msg", echo: true, payload: { case: "binary", value: new Uint8Array([2]) } },
      },
    });
    expect(a.t.events("msg")).toHaveLength(1);
  });

  it("leave with echo delivers the leaver's own channel:leave; others get it either way", async () => {
    const { connect, cmd } = setup();
    const a = connect();
    const b = connect();
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    await cmd(b.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    await cmd(a.s, { id: 2, command: { case: "leave", value: { channel: "c" } } });
    expect(a.t.events("channel:leave").map((e) => e.payload.value)).toMatchObject([{ id: a.s.id }]);
    expect(b.t.events("channel:leave")).toHaveLength(1);
    // Leaving again is not an error and sends nothing.
    await cmd(a.s, { id: 3, command: { case: "leave", value: { channel: "c" } } });
    expect(b.t.events("channel:leave")).toHaveLength(1);
  });

  it("a closed connection leaves every channel and the broker subscription goes with the last member", async () => {
    const { connect, cmd, edge, presence, node } = setup();
    const a = connect();
    const b = connect();
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c1" } } });
    await cmd(a.s, { id: 2, command: { case: "join", value: { channel: "c2" } } });
    await cmd(b.s, { id: 1, command: { case: "join", value: { channel: "c1" } } });
    await edge.disconnect(a.s);
    expect(b.t.events("channel:leave")).toHaveLength(1);
    expect(presence.members("c1").map((m) => m.id)).toEqual([b.s.id]);
    expect(presence.members("c2")).toEqual([]);
    expect([...node.channels]).toEqual(["c1"]);
    expect(edge.snapshot().channels).toEqual(["c1"]);
  });

  it("send requires membership; bad names and missing payloads get INVALID_ARGUMENT", async () => {
    const { connect, cmd } = setup();
    const a = connect();
    await cmd(a.s, {
      id: 1,
      command: {
        case: "send",
        value: { channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array() } },
      },
    });
    await cmd(a.s, { id: 2, command: { case: "join", value: { channel: "bad channel" } } });
    await cmd(a.s, { id: 3, command: { case: "join", value: { channel: "c" } } });
    await cmd(a.s, {
      id: 4,
      command: {
        case: "send",
        value: { channel: "c", event: "channel:join", payload: { case: "binary", value: new Uint8Array() } },
      },
    });
    await cmd(a.s, { id: 5, command: { case: "send", value: { channel: "c", event: "e" } } });
    const codes = a.t.replies().map((r) => [r.id, r.error?.code ?? 0]);
    expect(codes).toEqual([
      [1, Code.FailedPrecondition],
      [2, Code.InvalidArgument],
      [3, 0],
      [4, Code.InvalidArgument],
      [5, Code.InvalidArgument],
    ]);
    expect(a.t.replies()[3]!.error!.message).toMatch(/reserved/);
  });

  it("limits: channels per connection, profile size and event size", async () => {
    const { connect, cmd } = setup({ maxChannelsPerConnection: 2, maxProfileBytes: 64, maxPayloadBytes: 1024 });
    const a = connect();
    for (const ch of ["a", "b", "c"]) await cmd(a.s, { id: 1, command: { case: "join", value: { channel: ch } } });
    await cmd(a.s, {
      id: 2,
      command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "x".repeat(100) } } } },
    });
    await cmd(a.s, {
      id: 3,
      command: {
        case: "send",
        value: { channel: "a", event: "e", payload: { case: "binary", value: new Uint8Array(2000) } },
      },
    });
    expect(a.t.replies().map((r) => r.error?.code ?? 0)).toEqual([
      0,
      0,
      Code.ResourceExhausted,
      Code.ResourceExhausted,
      Code.ResourceExhausted,
    ]);
  });

  it("a join whose presence write fails changed nothing: UNAVAILABLE, not listed, and a retry is a clean join", async () => {
    const { connect, cmd, presence, view, edge } = setup();
    const a = connect();
    const add = view.add;
    view.add = down;
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    expect(errorOf(a)).toBe(Code.Unavailable);
    expect(presence.members("c")).toEqual([]);
    expect(edge.snapshot()).toEqual({ channels: [], members: [] });
    view.add = add;
    await cmd(a.s, { id: 2, command: { case: "join", value: { channel: "c" } } });
    expect(errorOf(a)).toBeUndefined();
    expect(a.t.events("channel:join")).toHaveLength(1);
    expect(presence.members("c").map((m) => m.id)).toEqual([a.s.id]);
  });

  it("a join whose channel:join cannot be published stands: ok, and the event is published before the next command", async () => {
    const { connect, cmd, presence, node } = setup();
    const peer = connect();
    await cmd(peer.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    const a = connect();
    const publish = node.publish.bind(node);
    node.publish = down;
    await cmd(a.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    expect(errorOf(a)).toBeUndefined();
    // Its own channel:join comes with its position once published, as the peer's: once the broker is back.
    expect(memberIds(a.t.events("channel:join"))).toEqual([]);
    expect(memberIds(peer.t.events("channel:join"))).toEqual([peer.s.id]);
    expect(presence.members("c").map((m) => m.id)).toEqual([peer.s.id, a.s.id]);
    node.publish = publish;
    await cmd(a.s, {
      id: 2,
      command: {
        case: "send",
        value: { channel: "c", event: "e", payload: { case: "binary", value: new Uint8Array([1]) } },
      },
    });
    expect(peer.t.events().map((e) => e.event)).toEqual(["channel:join", "channel:join", "e"]);
    expect(memberIds(peer.t.events("channel:join"))).toEqual([peer.s.id, a.s.id]);
    expect(memberIds(a.t.events("channel:join"))).toEqual([a.s.id]);
  });

  it("a leave whose presence write fails changed nothing: UNAVAILABLE, still a member here and in presence", async () => {
    const { connect, cmd, presence, view, edge, node } = setup();
    const a = connect();
    const peer = connect();
    for (const c of [a, peer]) await cmd(c.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    const remove = view.remove;
    view.remove = down;
    await cmd(a.s, { id: 2, command: { case: "leave", value: { channel: "c" } } });
    expect(errorOf(a)).toBe(Code.Unavailable);
    expect(a.t.events("channel:leave")).toEqual([]);
    expect(peer.t.events("channel:leave")).toEqual([]);
    expect(presence.members("c").map((m) => m.id)).toEqual([a.s.id, peer.s.id]);
    expect(edge.snapshot().members.map((m) => m.member.id)).toEqual([a.s.id, peer.s.id]);
    await cmd(peer.s, {
      id: 2,
      command: {
        case: "send",
        value: { channel: "c", event: "still", payload: { case: "binary", value: new Uint8Array([1]) } },
      },
    });
    expect(a.t.events("still")).toHaveLength(1);
    expect([...node.channels]).toEqual(["c"]);
    view.remove = remove;
    await cmd(a.s, { id: 3, command: { case: "leave", value: { channel: "c" } } });
    expect(memberIds(peer.t.events("channel:leave"))).toEqual([a.s.id]);
  });

  it("a leave whose channel:leave cannot be published stands, and the event follows once the broker is back", async () => {
    const { connect, cmd, presence, node } = setup();
    const a = connect();
    const peer = connect();
    for (const c of [a, peer]) await cmd(c.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    const publish = node.publish.bind(node);
    node.publish = down;
    await cmd(a.s, { id: 2, command: { case: "leave", value: { channel: "c" } } });
    expect(errorOf(a)).toBeUndefined();
    expect(presence.members("c").map((m) => m.id)).toEqual([peer.s.id]);
    expect(peer.t.events("channel:leave")).toEqual([]);
    // Meanwhile a ping works; a command that needs the service waits for what is owed first.
    await cmd(a.s, { id: 3, command: { case: "ping", value: {} } });
    expect(errorOf(a)).toBeUndefined();
    await cmd(a.s, { id: 4, command: { case: "join", value: { channel: "d" } } });
    expect(errorOf(a)).toBe(Code.Unavailable);
    node.publish = publish;
    // No command needed: the retry timer publishes it.
    await new Promise((r) => setTimeout(r, SETTLE_RETRY_MS + 200));
    expect(memberIds(peer.t.events("channel:leave"))).toEqual([a.s.id]);
  });

  it("an updateProfile whose first presence write fails keeps the old profile; one that fails later stands", async () => {
    const { connect, cmd, presence, view } = setup();
    const a = connect();
    const peer = connect();
    for (const ch of ["c1", "c2"]) {
      for (const c of [a, peer]) await cmd(c.s, { id: 1, command: { case: "join", value: { channel: ch } } });
    }
    const profile = (v: string) => ({ data: { kind: { case: "stringValue" as const, value: v } } });
    const add = view.add;
    view.add = down;
    await cmd(a.s, { id: 2, command: { case: "updateProfile", value: profile("new") } });
    expect(errorOf(a)).toBe(Code.Unavailable);
    expect(a.s.profile).toBeUndefined();
    expect(presence.members("c1").find((m) => m.id === a.s.id)?.data).toBeUndefined();
    expect(peer.t.events("channel:update")).toEqual([]);
    // The first channel's write works, the second's fails: the change stands.
    let calls = 0;
    view.add = (channel, member) => (++calls === 1 ? add(channel, member) : down());
    await cmd(a.s, { id: 3, command: { case: "updateProfile", value: profile("newer") } });
    expect(errorOf(a)).toBeUndefined();
    expect(peer.t.events("channel:update").map((e) => e.channel)).toEqual(["c1"]);
    view.add = add;
    await cmd(a.s, { id: 4, command: { case: "getMembers", value: { channel: "c2" } } });
    expect(peer.t.events("channel:update").map((e) => e.channel)).toEqual(["c1", "c2"]);
    for (const ch of ["c1", "c2"]) {
      expect(presence.members(ch).find((m) => m.id === a.s.id)?.data?.kind.value).toBe("newer");
    }
  });

  it("a connection that closes while presence is away is held until its removal is done, then announced", async () => {
    const { connect, cmd, presence, view, edge } = setup();
    const a = connect();
    const peer = connect();
    for (const c of [a, peer]) await cmd(c.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    const remove = view.remove;
    view.remove = down;
    await edge.disconnect(a.s);
    // Gone here; still held for the resync, so that the hub keeps it until its leave.
    expect(edge.sessions.has(a.s.id)).toBe(false);
    expect(
      edge
        .snapshot()
        .members.map((m) => m.member.id)
        .sort(),
    ).toEqual([a.s.id, peer.s.id].sort());
    expect(peer.t.events("channel:leave")).toEqual([]);
    view.remove = remove;
    await new Promise((r) => setTimeout(r, SETTLE_RETRY_MS + 200));
    expect(memberIds(peer.t.events("channel:leave"))).toEqual([a.s.id]);
    expect(presence.members("c").map((m) => m.id)).toEqual([peer.s.id]);
    expect(edge.snapshot().members.map((m) => m.member.id)).toEqual([peer.s.id]);
  });

  it("a publication is encoded once per encoding for all recipients", async () => {
    const { edge, connect, cmd, node } = setup();
    const clients = [connect(), connect(), connect()];
    for (const c of clients) await cmd(c.s, { id: 1, command: { case: "join", value: { channel: "c" } } });
    const before = clients.map((c) => c.t.sent.length);
    const { createPublication } = await import("../src/core/publication.js");
    const { EventSchema } = await import("../gen/realtime/client/v1/client_pb.js");
    await node.publish(
      createPublication(
        create(EventSchema, {
          id: "x",
          channel: "c",
          event: "e",
          payload: { case: "binary", value: new Uint8Array([7]) },
        }),
        1024,
      ),
    );
    const frames = clients.map((c, i) => c.t.sent[before[i]!]);
    expect(frames[0]).toBeDefined();
    expect(frames[1]).toBe(frames[0]);
    expect(frames[2]).toBe(frames[0]);
    expect(edge.sessions.size).toBe(3);
  });
});

/** An edge over a hub whose channels keep size events of history (so their events have positions). */
function historyEdge(size: number, options: Partial<EdgeOptions> = {}) {
  const broker = new MemoryBroker(undefined, historyRules(size, 0));
  const presence = new MemoryPresence();
  let edge!: Edge;
  const node = broker.attach((pub) => edge.deliver(pub), true);
  edge = new Edge({
    broker: node,
    presence: presence.view("edge-1"),
    limits: DEFAULT_LIMITS,
    allowClientBroadcast: true,
    ...options,
  });
  return { broker, presence, node, edge };
}

describe("edge core: channel order", () => {
  function positioned(size = 100, options: Partial<EdgeOptions> = {}) {
    const { broker, edge } = historyEdge(size, options);
    const t = new FakeTransport();
    const s = edge.connect(t, Encoding.Json, false);
    /** The nth event, accepted by the API at acceptedUnixMs (0n: not stamped). */
    const event = (n: number, acceptedUnixMs = 0n) =>
      createPublication(
        create(EventSchema, {
          id: `e${n}`,
          channel: "c",
          event: "n",
          payload: { case: "binary", value: new Uint8Array([n]) },
        }),
        1_000,
        "",
        false,
        acceptedUnixMs,
      );
    /** Numbers and keeps n's event without delivering it: lost on the way to the edge. */
    const lose = (n: number, acceptedUnixMs = 0n) => broker.streams.assign(event(n, acceptedUnixMs));
    const got = () => t.events("n").map((e) => [(e.payload.value as Uint8Array)[0], e.offset]);
    const join = async () => {
      edge.receive(s, new TextEncoder().encode(JSON.stringify({ id: 1, join: { channel: "c" } })), false);
      await s.queue;
    };
    return { broker, edge, t, event, lose, got, join };
  }
  const settled = () => new Promise((r) => setTimeout(r, 10));

  it("drops a publication it already delivered", async () => {
    const { broker, edge, event, got, join } = positioned();
    await join();
    broker.publish(event(1));
    const again = broker.streams.read("c", { limit: 10 }).publications.at(-1)!;
    edge.deliver(again);
    expect(got()).toEqual([[1, 2n]]);
  });

  it("fills a gap from history before delivering what came after it, in order, once", async () => {
    const { broker, lose, event, got, join, t } = positioned();
    await join();
    broker.publish(event(1));
    lose(2);
    lose(3);
    broker.publish(event(4));
    broker.publish(event(5));
    await settled();
    expect(got()).toEqual([
      [1, 2n],
      [2, 3n],
      [3, 4n],
      [4, 5n],
      [5, 6n],
    ]);
    expect(t.frames().filter((f) => f.frame.case === "resync")).toEqual([]);
  });

  it("observes the delivery latency of live publications the API stamped, once each, not of what it filled from history", async () => {
    const delivered: [broadcast: boolean, seconds: number][] = [];
    const observer = { ...NOOP_OBSERVER, delivered: (b: boolean, s: number) => void delivered.push([b, s]) };
    const { broker, lose, event, got, join } = positioned(100, { observer });
    await join(); // its channel:join: a system event, not stamped
    const accepted = BigInt(Date.now() - 50);
    broker.publish(event(1, accepted));
    lose(2, accepted);
    // 3 shows the gap: 2 and 3 come from history (recovered, not measured).
    broker.publish(event(3, accepted));
    await settled();
    broker.publish(event(4, accepted));
    broker.publish(event(5)); // not stamped
    expect(got().map(([n]) => n)).toEqual([1, 2, 3, 4, 5]);
    expect(delivered).toHaveLength(2); // 1 and 4
    for (const [broadcast, seconds] of delivered) {
      expect(broadcast).toBe(false);
      expect(seconds).toBeGreaterThanOrEqual(0.05);
      expect(seconds).toBeLessThan(5);
    }
    // This clock behind the API's: 0, not negative.
    broker.publish(event(6, BigInt(Date.now() + 60_000)));
    expect(delivered.at(-1)).toEqual([false, 0]);
    // A broadcast, under its own scope.
    await broker.publish({ ...event(7, accepted), channel: "" });
    expect(delivered.at(-1)?.[0]).toBe(true);
    expect(delivered).toHaveLength(4);
  });

  it("sends Resync when the gap is no longer in history, then goes on", async () => {
    const { broker, lose, event, got, join, t } = positioned(2);
    await join();
    broker.publish(event(1));
    for (let n = 2; n <= 5; n++) lose(n);
    broker.publish(event(6));
    await settled();
    const resyncs = t.frames().flatMap((f) => (f.frame.case === "resync" ? [f.frame.value] : []));
    expect(resyncs.map((r) => [r.channel, r.position?.offset])).toEqual([["c", 2n]]);
    expect(got()).toEqual([
      [1, 2n],
      [6, 7n],
    ]);
  });

  it("sends Resync when the channel's epoch changes under it (its history was lost)", async () => {
    const { broker, edge, event, got, join, t } = positioned();
    await join();
    broker.publish(event(1));
    edge.deliver({ ...event(2), offset: 1n, epoch: "new-epoch" });
    expect(t.frames().filter((f) => f.frame.case === "resync")).toHaveLength(1);
    expect(got()).toEqual([
      [1, 2n],
      [2, 1n],
    ]);
  });

  it("does not hand a connection again what its replay gave it (the edge's own fill reads the same history)", async () => {
    const { broker, edge, lose, got, join } = positioned();
    await join(); // the first connection's channel:join: offset 1
    lose(2);
    lose(3);
    const epoch = broker.streams.read("c", { limit: 1 }).position.epoch;
    const t2 = new FakeTransport();
    const s2 = edge.connect(t2, Encoding.Json, false);
    // Replays 2 and 3; its own channel:join (4) then shows the edge the gap, which it fills for everyone.
    edge.receive(
      s2,
      new TextEncoder().encode(JSON.stringify({ id: 1, join: { channel: "c", since: { offset: "1", epoch } } })),
      false,
    );
    await s2.queue;
    await settled();
    const got2 = t2.events("n").map((e) => [(e.payload.value as Uint8Array)[0], e.offset]);
    expect(got2).toEqual([
      [2, 2n],
      [3, 3n],
    ]);
    expect(got()).toEqual([
      [2, 2n],
      [3, 3n],
    ]);
    expect(t2.frames().filter((f) => f.frame.case === "resync")).toEqual([]);
  });
});

// Presence fan-out (REALTIME_PRESENCE_RULES, presence frames): the window is a minute
// here, so that nothing but the flushes the edge owes sends a held event.
function presenceSetupOf(windowMs = 60_000, form: PresenceForm = "batch") {
  const drops: number[] = [];
  const { node, edge } = historyEdge(100, {
    presenceEvents: presenceRules(true, parsePresenceRules("quiet:=off")),
    presenceWindowMs: windowMs,
    observer: { ...NOOP_OBSERVER, dropped: (reason, n) => void (reason === "closed" && drops.push(n)) },
  });
  const connect = (batches: boolean, echo = true) => {
    const t = new FakeTransport();
    return { t, s: edge.connect(t, Encoding.Json, echo, undefined, batches ? form : "single") };
  };
  const cmd = async (s: Session, init: Parameters<typeof create<typeof ClientFrameSchema>>[1]) => {
    edge.receive(s, new TextEncoder().encode(toJsonString(ClientFrameSchema, create(ClientFrameSchema, init))), false);
    await s.queue;
  };
  const join = (s: Session, channel: string) => cmd(s, { id: 9, command: { case: "join", value: { channel } } });
  const backendSend = (channel: string) =>
    node.publish(
      createPublication(
        create(EventSchema, { id: "m", channel, event: "msg", payload: { case: "binary", value: new Uint8Array() } }),
        1 << 20,
      ),
    );
  return { edge, connect, cmd, join, backendSend, drops };
}

const kinds = (t: FakeTransport) => t.frames().map((f) => f.frame.case);
const summary = (events: Event[]) => events.map((e) => [e.event, e.id, e.offset, e.epoch]);

for (const form of ["batch", "compact"] as const) {
  describe(`edge core: presence (presence=${form})`, () => {
    const presenceSetup = (windowMs?: number) => presenceSetupOf(windowMs, form);
    it("a presence=batch connection gets the same events as one without, grouped, flushed by the next event", async () => {
      const { connect, join, backendSend } = presenceSetup();
      const batched = connect(true, false);
      const plain = connect(false, false);
      await join(batched.s, "c");
      const joined = batched.t.sent.length;
      await join(plain.s, "c");
      const others = [connect(false), connect(false), connect(false)];
      for (const o of others) await join(o.s, "c");
      expect(kinds(batched.t).slice(joined)).toEqual([]); // held: the window is a minute
      await backendSend("c");
      // What both were sent (plain's own join aside): the same events, ids and positions.
      expect(summary(batched.t.allEvents().slice(1))).toEqual(summary(plain.t.allEvents()));
      expect(kinds(batched.t).slice(-2)).toEqual(["presence", "event"]);
      const frame = { events: presenceEvents(batched.t.frames().at(-2)!.frame.value as Presence) };
      expect(frame.events.map((e) => (e.payload.value as { id: string }).id)).toEqual([
        plain.s.id,
        ...others.map((o) => o.s.id),
      ]);
      expect(frame.events.map((e) => e.offset)).toEqual(
        [...frame.events.map((e) => e.offset)].sort((x, y) => (x < y ? -1 : 1)),
      );
      expect(frame.events.every((e) => e.offset > 0n && e.epoch !== "")).toBe(true);
    });

    it("a reply, and the connection's own event, go after what it holds", async () => {
      const { connect, cmd, join } = presenceSetup();
      const w = connect(true, true);
      await join(w.s, "c");
      const a = connect(false);
      const b = connect(false);
      await join(a.s, "c");
      await join(b.s, "c");
      const n = w.t.sent.length;
      await cmd(w.s, {
        id: 2,
        command: { case: "updateProfile", value: { data: { kind: { case: "stringValue", value: "w" } } } },
      });
      expect(kinds(w.t).slice(n)).toEqual(["presence", "event", "reply"]);
      const events = w.t.allEvents().map((e) => [e.event, (e.payload.value as { id: string }).id]);
      expect(events).toEqual([
        ["channel:join", w.s.id],
        ["channel:join", a.s.id],
        ["channel:join", b.s.id],
        ["channel:update", w.s.id],
      ]);
      const offsets = w.t.allEvents().map((e) => e.offset);
      expect(offsets).toEqual([1n, 2n, 3n, 4n]);
    });

    it("a lone held event goes as an event frame; the window sends what is held by itself", async () => {
      const { connect, join } = presenceSetup(5);
      const w = connect(true, false);
      await join(w.s, "c");
      const a = connect(false);
      await join(a.s, "c");
      await expect.poll(() => kinds(w.t).filter((k) => k === "event").length).toBe(1);
      expect(kinds(w.t)).not.toContain("presence");
    });

    it("a channel without presence events: none to anyone, not even echo; the join still has its position", async () => {
      const { connect, cmd, join, backendSend } = presenceSetup();
      const w = connect(true, true);
      const p = connect(false, true);
      await join(w.s, "quiet:x");
      await join(p.s, "quiet:x");
      await cmd(p.s, { id: 3, command: { case: "leave", value: { channel: "quiet:x" } } });
      await backendSend("quiet:x");
      for (const c of [w, p]) expect(c.t.allEvents().filter((e) => e.event.startsWith("channel:"))).toEqual([]);
      expect(w.t.allEvents().map((e) => [e.event, e.offset])).toEqual([["msg", 4n]]); // offsets 1-3: the system events
      const reply = w.t.frames().find((f) => f.frame.case === "reply")!.frame.value as {
        position?: { offset: bigint };
      };
      expect(reply.position?.offset).toBe(1n);
    });
  });

  describe(`edge core: presence windows, held once per channel (presence=${form})`, () => {
    const presenceSetup = (windowMs?: number) => presenceSetupOf(windowMs, form);
    it("a member that joins while the window is open gets only what follows its join, as a plain one does", async () => {
      const { connect, join, backendSend } = presenceSetup();
      const early = connect(true, false);
      await join(early.s, "c");
      await join(connect(false).s, "c");
      const late = connect(true, false);
      const latePlain = connect(false, false);
      await join(latePlain.s, "c");
      await join(late.s, "c");
      const after = [connect(false), connect(false)];
      for (const o of after) await join(o.s, "c");
      await backendSend("c");
      const ids = (t: FakeTransport) => t.allEvents().map((e) => (e.payload.value as { id: string }).id ?? e.event);
      // late joined after latePlain: it has the same events as latePlain minus late's own join (echo off).
      expect(summary(late.t.allEvents())).toEqual(summary(latePlain.t.allEvents().filter((_, i) => i !== 0)));
      expect(ids(late.t)).toEqual([...after.map((o) => o.s.id), "msg"]);
      expect(ids(early.t)).toHaveLength(3 + after.length + 1);
    });

    it("the members that read a whole window get the same bytes, built once", async () => {
      const { connect, join, backendSend } = presenceSetup();
      const a = connect(true, false);
      const b = connect(true, false);
      await join(a.s, "c");
      await join(b.s, "c");
      await backendSend("c"); // ends the window that held b's own join, which a reads and b does not
      const at = [a.t.sent.length, b.t.sent.length];
      for (let i = 0; i < 3; i++) await join(connect(false).s, "c");
      await backendSend("c");
      const frameA = a.t.sent[at[0]!]!;
      expect(b.t.sent[at[1]!]).toBe(frameA); // the very same array
      expect(a.t.frames()[at[0]!]!.frame.case).toBe("presence");
    });

    it("what a window holds for a connection that closed is counted as dropped, not written", async () => {
      const { edge, connect, join, backendSend, drops } = presenceSetup();
      const w = connect(true, false);
      const other = connect(true, false);
      await join(w.s, "c");
      await join(other.s, "c");
      await backendSend("c");
      await join(connect(false).s, "c");
      await join(connect(false).s, "c");
      const sent = w.t.sent.length;
      void edge.disconnect(w.s);
      await w.s.queue;
      expect(w.t.sent.length).toBe(sent);
      expect(drops.reduce((a, b) => a + b, 0)).toBe(2);
      await backendSend("c");
      expect(presenceEvents(other.t.frames().at(-2)!.frame.value as Presence).length).toBeGreaterThanOrEqual(2);
    });

    it("a member that leaves is sent what it was owed before its leave's reply; nothing after", async () => {
      const { connect, cmd, join, backendSend } = presenceSetup();
      const w = connect(true, false);
      await join(w.s, "c");
      const x = connect(false);
      await join(x.s, "c");
      const before = w.t.sent.length;
      await cmd(w.s, { id: 4, command: { case: "leave", value: { channel: "c" } } });
      await join(connect(false).s, "c");
      await backendSend("c");
      const frames = w.t.frames().slice(before);
      expect(frames.map((f) => f.frame.case)).toEqual(["event", "reply"]);
      expect((frames[0]!.frame.value as Event).event).toBe("channel:join");
    });

    it("an event of another channel, or a reply, sends the connection's share of every window first", async () => {
      const { connect, cmd, join, backendSend } = presenceSetup();
      const w = connect(true, false);
      const other = connect(true, false);
      await join(w.s, "a");
      await join(w.s, "b");
      await join(other.s, "a");
      const before = w.t.sent.length;
      await join(connect(false).s, "a");
      await join(connect(false).s, "a");
      await backendSend("b");
      const frames = w.t.frames().slice(before);
      expect(frames.map((f) => f.frame.case)).toEqual(["presence", "event"]);
      expect((frames[1]!.frame.value as Event).channel).toBe("b");
      // other is not in b: its share waits for the window.
      const otherBefore = other.t.sent.length;
      await join(connect(false).s, "a");
      await cmd(w.s, { id: 5, command: { case: "leave", value: { channel: "b" } } });
      expect(
        w.t
          .frames()
          .slice(-2)
          .map((f) => f.frame.case),
      ).toEqual(["event", "reply"]);
      expect(other.t.sent.length).toBe(otherBefore);
    });
  });
}

describe("edge core: presence windows scale with the channel", () => {
  const presenceSetup = presenceSetupOf;
  it("a channel with many members here gets a longer window: members / MAX_PRESENCE_FRAMES_PER_SECOND", async () => {
    const { connect, join } = presenceSetup(10);
    const members = 2_000; // 2,000 / 10,000 per second: 200 ms, where the setting says 10
    for (let i = 0; i < members; i++) await join(connect(false).s, "big");
    const w = connect(true, false);
    const opened = Date.now();
    await join(w.s, "big"); // opens the window (w's own join, which w does not get: echo off)
    const before = w.t.sent.length;
    await join(connect(false).s, "big");
    while (w.t.sent.length === before) await new Promise((r) => setTimeout(r, 5));
    expect(MAX_PRESENCE_FRAMES_PER_SECOND).toBe(10_000);
    expect(Date.now() - opened).toBeGreaterThanOrEqual(((members + 1) * 1_000) / MAX_PRESENCE_FRAMES_PER_SECOND - 2);
    expect(w.t.allEvents().at(-1)!.event).toBe("channel:join");
  });
});

describe("edge core: presence bounds", () => {
  const presenceSetup = presenceSetupOf;
  it("a channel's window holds at most MAX_HELD_PRESENCE_EVENTS, and no presence frame lists more than MAX_PRESENCE_FRAME_BYTES", async () => {
    const { connect, join } = presenceSetup();
    const w = connect(true, false);
    await join(w.s, "c");
    const before = w.t.sent.length;
    // The window opened with w's own join (not for w: echo is off), so it is full after MAX - 1 more.
    for (let i = 0; i < MAX_HELD_PRESENCE_EVENTS - 2; i++) await join(connect(false).s, "c");
    expect(w.t.sent.length).toBe(before);
    await join(connect(false).s, "c");
    // Nothing else was sent to w and the window is a minute: the bound sent them.
    const frames = w.t.frames().slice(before);
    const listed = frames.flatMap((f) => (f.frame.case === "presence" ? f.frame.value.events : []));
    expect(listed).toHaveLength(MAX_HELD_PRESENCE_EVENTS - 1);
    expect(frames.length).toBeGreaterThan(1);
    for (const f of frames) {
      const events = f.frame.case === "presence" ? f.frame.value.events : [];
      const bytes = events.reduce((n, e) => n + toBinary(EventSchema, { ...e, offset: 0n, epoch: "" }).length, 0);
      expect(bytes).toBeLessThanOrEqual(MAX_PRESENCE_FRAME_BYTES);
    }
  });
});

describe("edge core: compact presence frames", () => {
  it("list the changes, at most MAX_PRESENCE_FRAME_BYTES of them, in about half the bytes of the events form", async () => {
    const sizes: Record<string, { listed: number; bytes: number; frames: ServerFrame[] }> = {};
    for (const form of ["batch", "compact"] as const) {
      const { connect, join } = presenceSetupOf(60_000, form);
      const w = connect(true, false);
      await join(w.s, "c");
      const before = w.t.sent.length;
      for (let i = 0; i < MAX_HELD_PRESENCE_EVENTS - 1; i++) await join(connect(false).s, "c");
      const frames = w.t.frames().slice(before);
      const bytes = w.t.sent.slice(before).reduce((n, b) => n + b.length, 0);
      sizes[form] = { listed: frames.flatMap((f) => presenceEvents(f.frame.value as Presence)).length, bytes, frames };
    }
    const compact = sizes.compact!;
    expect(compact.listed).toBe(MAX_HELD_PRESENCE_EVENTS - 1);
    expect(compact.frames.length).toBeGreaterThan(1);
    for (const f of compact.frames) {
      const p = f.frame.value as Presence;
      expect(p.events).toEqual([]);
      expect(p.channel).toBe("c");
      const bytes = p.changes.reduce((n, c) => {
        const size = toBinary(PresenceChangeSchema, c).length;
        return n + 1 + (size < 128 ? 1 : 2) + size; // tag, length, the change
      }, 0);
      expect(bytes).toBeLessThanOrEqual(MAX_PRESENCE_FRAME_BYTES);
    }
    expect(compact.bytes).toBeLessThan(sizes.batch!.bytes * 0.6);
  });
});

describe("edge core: connection details (GetConnections)", () => {
  it("describes a connection: its channels by name, at most MAX_CHANNELS_LISTED, and how many it is in", async () => {
    const { edge, connect, cmd } = setup({ ...DEFAULT_LIMITS, maxChannelsPerConnection: MAX_CHANNELS_LISTED + 20 });
    const before = Date.now();
    const a = connect();
    const names = Array.from({ length: MAX_CHANNELS_LISTED + 20 }, (_, i) => `ch-${String(i).padStart(3, "0")}`);
    for (const channel of [...names].reverse()) await cmd(a.s, { command: { case: "join", value: { channel } } });
    const [d] = describeConnections([edge.facts(a.s)], "edge-1");
    expect(d).toMatchObject({ id: a.s.id, userId: "", edgeId: "edge-1", encoding: Encoding.Json });
    expect(d!.channels).toEqual(names.slice(0, MAX_CHANNELS_LISTED));
    expect(d!.channelCount).toBe(MAX_CHANNELS_LISTED + 20);
    expect(Number(d!.connectedUnixMs)).toBeGreaterThanOrEqual(before);
    expect(Number(d!.connectedUnixMs)).toBeLessThanOrEqual(Date.now());
  });

  it("lists the oldest MAX_CONNECTIONS_LISTED connections first, ties by id", () => {
    const facts = (id: string, connectedUnixMs: number) => ({
      id,
      userId: "u",
      channels: new Set<string>(),
      connectedUnixMs,
      encoding: Encoding.Proto,
      profile: undefined,
    });
    const all = Array.from({ length: MAX_CONNECTIONS_LISTED + 5 }, (_, i) => facts(`e.${i}`, 10_000 - i));
    all.push(facts("e.b", 1), facts("e.a", 1));
    const listed = describeConnections(all, "e");
    expect(listed.length).toBe(MAX_CONNECTIONS_LISTED);
    expect(listed.slice(0, 3).map((c) => c.id)).toEqual(["e.a", "e.b", `e.${MAX_CONNECTIONS_LISTED + 4}`]);
    expect(listed.map((c) => Number(c.connectedUnixMs))).toEqual(
      listed.map((c) => Number(c.connectedUnixMs)).sort((x, y) => x - y),
    );
  });
});
