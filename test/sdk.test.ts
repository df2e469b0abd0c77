/**
 * The SDK end to end: RealtimeClient against the real API and edge
 * processes (test/helpers/cluster.ts), across two edges so that every
 * message also crosses the link.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import {
  ErrorCode,
  RealtimeClient,
  shouldReconnect,
  type ConnectInfo,
  type DisconnectInfo,
  type EncodingName,
  type MemberEvent,
  type MessageEvent,
  type RealtimeClientOptions,
} from "../src/client/index.js";
import { protoEncoding } from "../src/client/proto.js";
import { rejection, sdkEncoding, waitFor } from "./helpers/sdk.js";

type Received = { event: string; payload: MessageEvent | MemberEvent };

/** A client that records every event it receives. */
class Recorder {
  readonly events: Received[] = [];
  readonly rt: RealtimeClient;
  constructor(options: RealtimeClientOptions) {
    // proto unless a test says otherwise: the SDK's default before it moved to JSON (which tests choose by name).
    this.rt = new RealtimeClient({
      WebSocket,
      encoding: protoEncoding,
      reconnect: { initialDelayMs: 50, maxDelayMs: 250 },
      ...options,
    });
    this.rt.onAny((event, payload) => this.events.push({ event, payload }));
  }
  /** Waits for an event named event for which pred holds. */
  async next<P extends MessageEvent | MemberEvent>(
    event: string,
    pred: (p: P) => boolean = () => true,
    timeoutMs = 5_000,
  ): Promise<P> {
    await waitFor(
      () => this.events.some((e) => e.event === event && pred(e.payload as P)),
      `${event} on ${this.rt.getSocketId()}`,
      timeoutMs,
    );
    return this.events.find((e) => e.event === event && pred(e.payload as P))!.payload as P;
  }
  named(event: string): (MessageEvent | MemberEvent)[] {
    return this.events.filter((e) => e.event === event).map((e) => e.payload);
  }
}

let cluster: Cluster;
const recorders: Recorder[] = [];

function connect(edge: number, options: Partial<RealtimeClientOptions> = {}): Promise<Recorder> {
  const r = new Recorder({ url: cluster.ws[edge]!, ...options });
  recorders.push(r);
  return new Promise((resolve) => r.rt.onConnect(() => resolve(r)));
}

let channelSeq = 0;
/** A channel name no other test uses. */
const channel = (name: string) => `sdk-${name}-${++channelSeq}`;

beforeAll(async () => {
  // Client broadcast is off by default (docs/security.md); these tests use it.
  cluster = await startCluster(2, { REALTIME_ALLOW_CLIENT_BROADCAST: "true" });
}, 60_000);

afterEach(() => {
  for (const r of recorders.splice(0)) r.rt.close();
});

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
}, 30_000);

const pairs: [EncodingName, EncodingName][] = [
  ["proto", "proto"],
  ["json", "json"],
  ["json", "proto"],
  ["proto", "json"],
];

describe.each(pairs)("sender %s, receiver %s", (senderEnc, receiverEnc) => {
  it("join, send and receive across edges; JSON and binary payloads round-trip exactly", async () => {
    const ch = channel("rt");
    const a = await connect(0, { encoding: sdkEncoding(senderEnc) });
    const b = await connect(1, { encoding: sdkEncoding(receiverEnc) });
    await a.rt.join(ch);
    await b.rt.join(ch);

    const json = {
      text: "héllo ✓",
      n: [0, -1, 1.5, 1e21],
      nested: { ok: true, none: null },
      empty: [] as unknown[],
      s: "",
    };
    const sentJson = await a.rt.send(ch, "chat", json);
    const gotJson = await b.next<MessageEvent>("chat", (e) => e.id === sentJson.id);
    expect(gotJson).toEqual({
      channel: ch,
      message: json,
      id: sentJson.id,
      position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
    });

    for (const scalar of ["just a string", 42, false, null]) {
      const sent = await a.rt.send(ch, "scalar", scalar);
      expect((await b.next<MessageEvent>("scalar", (e) => e.id === sent.id)).message).toEqual(scalar);
    }

    const bytes = new Uint8Array(256).map((_, i) => i);
    const sentBin = await a.rt.send(ch, "bin", bytes);
    const gotBin = await b.next<MessageEvent>("bin", (e) => e.id === sentBin.id);
    expect(gotBin.message).toBeInstanceOf(Uint8Array);
    expect(Array.from(gotBin.message as Uint8Array)).toEqual(Array.from(bytes));

    const sentEmpty = await a.rt.send(ch, "bin", new Uint8Array(0));
    const gotEmpty = await b.next<MessageEvent>("bin", (e) => e.id === sentEmpty.id);
    expect(gotEmpty.message).toBeInstanceOf(Uint8Array);
    expect((gotEmpty.message as Uint8Array).length).toBe(0);

    // The sender got its own events too (echo defaults to true), with the same ids.
    await a.next<MessageEvent>("bin", (e) => e.id === sentBin.id);
    expect((a.named("chat")[0] as MessageEvent).message).toEqual(json);
  });
});

describe("echo", () => {
  it("the per-call echo overrides the connection's default, for events and system events", async () => {
    const ch = channel("echo");
    const quiet = await connect(0, { echo: false });
    const loud = await connect(1);
    await loud.rt.join(ch);

    await quiet.rt.join(ch); // connection default: no own channel:join
    await quiet.rt.updateProfile({ name: "q" }, true); // but its own channel:update
    const s1 = await quiet.rt.send(ch, "m", 1); // no own event
    const s2 = await quiet.rt.send(ch, "m", 2, true); // own event

    const l1 = await loud.rt.send(ch, "m", 3, false); // loud opts out once
    await loud.next<MessageEvent>("m", (e) => e.id === s2.id);
    await quiet.next<MessageEvent>("m", (e) => e.id === l1.id);
    await quiet.next<MemberEvent>("channel:update", (e) => e.message.id === quiet.rt.getSocketId());
    // Ordered per connection: once the later event arrived, the earlier one would have too.
    expect(quiet.named("m").map((e) => (e as MessageEvent).id)).toEqual([s2.id, l1.id]);
    expect(quiet.named("channel:join")).toEqual([]);
    expect(loud.named("m").map((e) => (e as MessageEvent).id)).toEqual([s1.id, s2.id]);
  });
});

describe("system events", () => {
  it("onJoin, onUpdate and onLeave carry {channel, message: {id, data}}, with echo flags", async () => {
    const ch = channel("sys");
    const watcher = await connect(0);
    const joins: MemberEvent[] = [];
    const updates: MemberEvent[] = [];
    const leaves: MemberEvent[] = [];
    watcher.rt.onJoin((e) => joins.push(e));
    watcher.rt.onUpdate((e) => updates.push(e));
    watcher.rt.onLeave((e) => leaves.push(e));
    await watcher.rt.join(ch, false);

    const member = await connect(1, { encoding: "json" });
    const mine: string[] = [];
    member.rt.onJoin(() => mine.push("join"));
    member.rt.onUpdate(() => mine.push("update"));
    member.rt.onLeave(() => mine.push("leave"));
    await member.rt.updateProfile({ name: "ann", tags: ["x"] });
    const id = member.rt.getSocketId()!;
    await member.rt.join(ch, true);
    await watcher.next("channel:join", (e: MemberEvent) => e.message.id === id);
    expect(joins).toEqual([
      {
        channel: ch,
        message: { id, data: { name: "ann", tags: ["x"] }, userId: "" },
        position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
      },
    ]);

    await member.rt.updateProfile("just a string", false);
    await watcher.next("channel:update", (e: MemberEvent) => e.message.data === "just a string");
    expect(updates).toEqual([
      {
        channel: ch,
        message: { id, data: "just a string", userId: "" },
        position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
      },
    ]);

    await member.rt.leave(ch, true);
    await watcher.next("channel:leave", (e: MemberEvent) => e.message.id === id);
    expect(leaves).toEqual([
      {
        channel: ch,
        message: { id, data: "just a string", userId: "" },
        position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
      },
    ]);

    await member.next("channel:leave");
    // join (echo true) and leave (echo true) came back; the update (echo false) did not.
    expect(mine).toEqual(["join", "leave"]);
    // The watcher joined with echo false: it never saw itself.
    expect(joins.concat(updates, leaves).every((e) => e.message.id === id)).toBe(true);
  });

  it("a member that disconnects leaves its channels: the others get channel:leave", async () => {
    const ch = channel("drop");
    const watcher = await connect(0);
    await watcher.rt.join(ch);
    const member = await connect(1);
    const id = member.rt.getSocketId()!;
    await member.rt.join(ch);
    member.rt.close();
    expect((await watcher.next<MemberEvent>("channel:leave", (e) => e.message.id === id)).channel).toBe(ch);
  });
});

describe("getMembers", () => {
  it("lists every member with its profile, null without one", async () => {
    const ch = channel("members");
    const a = await connect(0, { encoding: "json" });
    const b = await connect(1);
    await a.rt.updateProfile({ name: "a" });
    await a.rt.join(ch);
    await b.rt.join(ch);
    const expected = [
      { id: a.rt.getSocketId(), data: { name: "a" }, userId: "" },
      { id: b.rt.getSocketId(), data: null, userId: "" },
    ].sort((x, y) => x.id!.localeCompare(y.id!));
    const byId = (list: { id: string }[]) => [...list].sort((x, y) => x.id.localeCompare(y.id));
    expect(byId(await a.rt.getMembers(ch))).toEqual(expected);
    expect(byId(await b.rt.getMembers(ch))).toEqual(expected);
    expect(await b.rt.getMembers(channel("nobody"))).toEqual([]);
  });
});

describe("broadcast", () => {
  it("reaches every connection on every edge, with channel ''", async () => {
    const a = await connect(0);
    const b = await connect(1, { encoding: "json" });
    const sent = await a.rt.broadcast("news", { v: 1 }, false);
    expect(await b.next<MessageEvent>("news", (e) => e.id === sent.id)).toEqual({
      channel: "",
      message: { v: 1 },
      id: sent.id,
    });
    const bin = await b.rt.broadcast("news", new Uint8Array([9, 8, 7]));
    const got = await a.next<MessageEvent>("news", (e) => e.id === bin.id);
    expect(Array.from(got.message as Uint8Array)).toEqual([9, 8, 7]);
    expect(a.named("news").some((e) => (e as MessageEvent).id === sent.id)).toBe(false);
  });
});

describe("errors", () => {
  it("an error reply rejects the call with the edge's code and message", async () => {
    const a = await connect(0);
    const notJoined = await rejection(a.rt.send(channel("nope"), "e", {}));
    expect(notJoined.code).toBe(ErrorCode.FailedPrecondition);
    expect(notJoined.codeName).toBe("FAILED_PRECONDITION");
    expect(notJoined.message).toMatch(/join/);

    const badChannel = await rejection(a.rt.join("spaces are not allowed"));
    expect(badChannel.code).toBe(ErrorCode.InvalidArgument);
    expect(badChannel.codeName).toBe("INVALID_ARGUMENT");

    const ch = channel("err");
    await a.rt.join(ch);
    const reserved = await rejection(a.rt.send(ch, "channel:join", {}));
    expect(reserved.code).toBe(ErrorCode.InvalidArgument);
    expect(reserved.message).toMatch(/reserved/);

    const tooBig = await rejection(a.rt.updateProfile({ blob: "x".repeat(5_000) }));
    expect(tooBig.code).toBe(ErrorCode.ResourceExhausted);

    // The connection is still usable after errors.
    await a.rt.send(ch, "e", "fine");
  });
});

describe("reconnect", () => {
  it("after its edge restarts on the same port, the SDK re-joins and restores its profile", async () => {
    const proc = await cluster.addEdge();
    const url = proc.ready.ws!;
    const port = new URL(url).port;
    const ch = channel("restart");

    const watcher = await connect(0, { encoding: "json" });
    await watcher.rt.join(ch);
    const subject = new Recorder({ url, reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
    recorders.push(subject);
    const connects: ConnectInfo[] = [];
    const disconnects: DisconnectInfo[] = [];
    subject.rt.onConnect((i) => connects.push(i));
    subject.rt.onDisconnect((i) => disconnects.push(i));
    await subject.rt.updateProfile({ name: "phoenix" });
    await subject.rt.join(ch);
    const firstId = subject.rt.getSocketId()!;
    await watcher.next<MemberEvent>("channel:join", (e) => e.message.id === firstId);

    // The edge goes away: its clients leave their channels.
    await proc.stop();
    await watcher.next<MemberEvent>("channel:leave", (e) => e.message.id === firstId);
    await waitFor(() => disconnects.length >= 1, "onDisconnect", 15_000);
    // GoingAway (1001) or Shutdown (4000): either says "come back".
    expect(disconnects[0]!.willReconnect).toBe(true);
    expect(shouldReconnect(disconnects[0]!.code)).toBe(true);
    expect(subject.rt.isConnected()).toBe(false);

    // A call made while the edge is down waits for the reconnect.
    const queued = subject.rt.send(ch, "msg", { while: "down" });

    await cluster.addEdge({ REALTIME_WS_PORT: port });
    await waitFor(() => connects.length === 2, "the reconnect", 15_000);
    const secondId = subject.rt.getSocketId()!;
    expect(secondId).not.toBe(firstId);
    expect(connects[1]).toEqual({ id: secondId, reconnected: true });

    // The other client sees the member again, with its profile.
    const rejoined = await watcher.next<MemberEvent>("channel:join", (e) => e.message.id === secondId);
    expect(rejoined).toEqual({
      channel: ch,
      message: { id: secondId, data: { name: "phoenix" }, userId: "" },
      position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
    });
    const members = await watcher.rt.getMembers(ch);
    expect(members).toContainEqual({ id: secondId, data: { name: "phoenix" }, userId: "" });
    expect(members.map((m) => m.id)).not.toContain(firstId);

    // The re-join used echo false: the subject did not see its own second join.
    expect(subject.named("channel:join").filter((e) => (e as MemberEvent).message.id === secondId)).toEqual([]);

    // Messages flow both ways, the queued one first.
    const q = await queued;
    expect((await watcher.next<MessageEvent>("msg", (e) => e.id === q.id)).message).toEqual({ while: "down" });
    const back = await watcher.rt.send(ch, "msg", "welcome back");
    expect((await subject.next<MessageEvent>("msg", (e) => e.id === back.id)).message).toBe("welcome back");
  }, 30_000);

  it("after its edge is killed (no close frame), the SDK reconnects to its replacement and restores its session", async () => {
    const proc = await cluster.addEdge();
    const url = proc.ready.ws!;
    const port = new URL(url).port;
    const ch = channel("killed");

    const watcher = await connect(1);
    await watcher.rt.join(ch);
    const subject = new Recorder({ url, encoding: "json", reconnect: { initialDelayMs: 50, maxDelayMs: 250 } });
    recorders.push(subject);
    const disconnects: DisconnectInfo[] = [];
    subject.rt.onDisconnect((i) => disconnects.push(i));
    await new Promise<void>((resolve) => subject.rt.onConnect(() => resolve()));
    await subject.rt.join(ch);
    await subject.rt.updateProfile(["profile", "set", "after", "join"]);
    const firstId = subject.rt.getSocketId()!;

    await proc.kill();
    await waitFor(() => disconnects.length >= 1, "onDisconnect", 15_000);
    expect(disconnects[0]).toMatchObject({ code: 1006, willReconnect: true });

    await cluster.addEdge({ REALTIME_WS_PORT: port });
    await waitFor(() => subject.rt.isConnected(), "the reconnect", 15_000);
    const secondId = subject.rt.getSocketId()!;
    const rejoined = await watcher.next<MemberEvent>("channel:join", (e) => e.message.id === secondId);
    expect(rejoined.message.data).toEqual(["profile", "set", "after", "join"]);
    const sent = await subject.rt.send(ch, "msg", new Uint8Array([1, 2, 3]));
    expect(
      Array.from((await watcher.next<MessageEvent>("msg", (e) => e.id === sent.id)).message as Uint8Array),
    ).toEqual([1, 2, 3]);

    // The API drops the dead edge's member once its grace period ends.
    await watcher.next<MemberEvent>("channel:leave", (e) => e.message.id === firstId, 20_000);
    const members = await watcher.rt.getMembers(ch);
    expect(members.map((m) => m.id).sort()).toEqual([watcher.rt.getSocketId()!, secondId].sort());
  }, 45_000);
});
