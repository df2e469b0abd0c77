/**
 * Presence events per channel prefix (REALTIME_PRESENCE_RULES) and
 * presence frames (presence=batch, REALTIME_PRESENCE_WINDOW_MS), end to
 * end, in both encodings: real processes, real WebSocket clients.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Event, Member, Presence } from "../gen/realtime/client/v1/client_pb.js";
import { RealtimeClient, type MemberEvent } from "../src/client/index.js";
import { presenceEvents } from "../src/protocol/presence-changes.js";
import { useCluster } from "./helpers/fixture.js";
import { sdkEncoding, waitFor } from "./helpers/sdk.js";
import type { Enc, TestClient } from "./helpers/ws-client.js";

// A long window, so that joins made together surely fall in one (the test waits for what it expects, never for time).
const f = useCluster(2, { REALTIME_PRESENCE_RULES: "quiet:=off,quiet:loud:=on", REALTIME_PRESENCE_WINDOW_MS: "1000" });
const json = (v: unknown) => fromJson(ValueSchema, v as never);
const N = 8;

/** Sends a marker event to channel from the API and waits until each client has it: what came before has arrived. */
async function settle(channel: string, ...cs: TestClient[]): Promise<void> {
  const res = await f.api.send({ channel, event: "marker", payload: { case: "json", value: json(null) } });
  for (const c of cs) await c.next((fr) => fr.frame.case === "event" && fr.frame.value.id === res.messageId);
}

/** Every system event c received on channel, flattened from event and presence frames, in arrival order. */
function systemEvents(c: TestClient, channel: string): Event[] {
  return c.frames
    .flatMap((fr) =>
      fr.frame.case === "event" ? [fr.frame.value] : fr.frame.case === "presence" ? presenceEvents(fr.frame.value) : [],
    )
    .filter((e) => e.channel === channel && e.event.startsWith("channel:"));
}

/** N clients on edge 0 join channel at once. */
async function joinMany(channel: string, enc: Enc): Promise<TestClient[]> {
  const joiners = await Promise.all(Array.from({ length: N }, () => f.client(0, enc, "?echo=false")));
  await Promise.all(joiners.map((j) => j.ok({ command: { case: "join", value: { channel } } })));
  return joiners;
}

describe.each(["json", "proto"] as const)("presence (%s)", (enc) => {
  it("a prefix with presence events off: no system events to members, but GetMembers lists them", async () => {
    const channel = `quiet:${enc}`;
    const watcher = await f.client(1, enc, "?presence=batch");
    const plain = await f.client(1, enc);
    await watcher.ok({ command: { case: "join", value: { channel } } });
    await plain.ok({ command: { case: "join", value: { channel } } });
    const joiners = await joinMany(channel, enc);
    await joiners[0]!.ok({ command: { case: "leave", value: { channel } } });
    await settle(channel, watcher, plain);
    expect(systemEvents(watcher, channel)).toEqual([]);
    expect(systemEvents(plain, channel)).toEqual([]);
    expect(watcher.frames.some((fr) => fr.frame.case === "presence")).toBe(false);
    const { members } = await f.api.getMembers({ channel });
    expect(members.map((m) => m.id).sort()).toEqual(
      [watcher.id, plain.id, ...joiners.slice(1).map((j) => j.id)].sort(),
    );
    // The longest prefix wins: quiet:loud: has them.
    const loud = `quiet:loud:${enc}`;
    await watcher.ok({ command: { case: "join", value: { channel: loud } } });
    const a = await f.client(0, enc);
    await a.ok({ command: { case: "join", value: { channel: loud } } });
    await settle(loud, watcher);
    expect(systemEvents(watcher, loud).map((e) => (e.payload.value as Member).id)).toEqual([watcher.id, a.id]);
  });

  it.each(["batch", "compact"] as const)(
    "joins within a window reach a presence=%s client in fewer frames, all in order with positions; others get one frame each",
    async (form) => {
      const channel = `${form}:${enc}`;
      const batched = await f.client(1, enc, `?presence=${form}`);
      const plain = await f.client(1, enc);
      await batched.ok({ command: { case: "join", value: { channel } } });
      await plain.ok({ command: { case: "join", value: { channel } } });
      const joiners = await joinMany(channel, enc);
      await settle(channel, batched, plain);

      // What both were sent: the changes of the joiners.
      const ofJoiners = (e: Event) => joiners.some((j) => j.id === memberId(e));
      const got = systemEvents(batched, channel).filter(ofJoiners);
      const single = systemEvents(plain, channel).filter(ofJoiners);
      // The same events, in the same order, with the same ids and positions as the single frames.
      expect(got.map((e) => [e.id, e.event, e.offset, e.epoch])).toEqual(
        single.map((e) => [e.id, e.event, e.offset, e.epoch]),
      );
      const joins = got.filter((e) => e.event === "channel:join");
      expect(joins.map(memberId).sort()).toEqual(joiners.map((j) => j.id).sort());
      for (const e of joins) {
        expect(e.epoch).not.toBe("");
        expect(e.offset).toBeGreaterThan(0n);
      }
      const offsets = got.map((e) => e.offset);
      expect(offsets).toEqual([...offsets].sort((x, y) => (x < y ? -1 : 1)));
      expect(new Set(offsets).size).toBe(offsets.length);

      const presenceFrames = batched.frames.filter((fr) => fr.frame.case === "presence");
      expect(presenceFrames.length).toBeGreaterThan(0);
      for (const fr of presenceFrames) {
        const frame = fr.frame.value as Presence;
        // The form asked for: the events, or the changes (about half the bytes).
        expect(form === "batch" ? frame.events.length : frame.changes.length).toBeGreaterThanOrEqual(2);
        expect(form === "batch" ? frame.changes : frame.events).toEqual([]);
        expect(new Set(presenceEvents(frame).map((e) => e.channel)).size).toBe(1);
      }
      const framesWithJoins = batched.frames.filter(
        (fr) => (fr.frame.case === "event" && fr.frame.value.event === "channel:join") || fr.frame.case === "presence",
      ).length;
      expect(framesWithJoins).toBeLessThan(N);
      // The client that did not ask gets one event frame per change, never a presence frame.
      expect(plain.frames.some((fr) => fr.frame.case === "presence")).toBe(false);
      expect(single.filter((e) => e.event === "channel:join").length).toBe(N);
    },
  );

  it("the SDK opts in and emits one channel:join per member, with its position, from presence frames", async () => {
    const channel = `sdk:${enc}`;
    const rt = new RealtimeClient({ url: f.cluster.ws[1]!, WebSocket, encoding: sdkEncoding(enc) });
    const seen: MemberEvent[] = [];
    rt.on("channel:join", (e: MemberEvent) => seen.push(e));
    try {
      await rt.join(channel);
      const joiners = await joinMany(channel, enc);
      await waitFor(() => seen.length >= N + 1, "every channel:join");
      // Its own first (echo), then the joiners'.
      expect(seen.shift()!.message.id).toBe(rt.getSocketId());
      expect(seen.map((e) => e.message.id).sort()).toEqual(joiners.map((j) => j.id).sort());
      for (const e of seen) {
        expect(e.channel).toBe(channel);
        expect(e.position?.epoch).toBeTruthy();
      }
      const offsets = seen.map((e) => e.position!.offset);
      expect(offsets).toEqual([...offsets].sort((x, y) => (x < y ? -1 : 1)));
    } finally {
      rt.close();
    }
  });
});

function memberId(e: Event): string {
  return e.payload.case === "member" ? e.payload.value.id : "";
}
