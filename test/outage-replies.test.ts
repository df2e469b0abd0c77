/**
 * A reply tells the truth while the rest of the service is away (embedded
 * mode: the API process stopped and started again on the same link port).
 * UNAVAILABLE means nothing changed anywhere: a leave or an updateProfile
 * answered UNAVAILABLE leaves the member exactly as it was, in GetMembers
 * and in what peers are told. A connection that closes meanwhile still
 * ends in a channel:leave for its peers once the API is back. Real API and
 * edge processes; clients in both encodings.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, it } from "vitest";
import type { Member } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, startProcess, stopAll } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { eventually, freePort } from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const UNAVAILABLE = 14;

afterAll(stopAll);

const profile = (v: unknown) => ({ data: fromJson(ValueSchema, v as never) });
/** The system events about `id` on channel, as [event name, profile] pairs. */
const about = (c: TestClient, channel: string, id: string) =>
  c
    .events()
    .filter((e) => e.channel === channel && e.payload.case === "member" && e.payload.value.id === id)
    .map((e) => [e.event, toJson(ValueSchema, (e.payload.value as Member).data ?? fromJson(ValueSchema, null))]);

describe("replies while the API is away (embedded mode)", () => {
  it("leave and updateProfile answered UNAVAILABLE change nothing; a close meanwhile is announced once it is back", async () => {
    const env = { REALTIME_LINK_PORT: String(await freePort()) };
    const cluster = await startCluster(2, env);
    // a (JSON), b (binary) and c (it closes during the outage) on edge 0,
    // with the peer p0; the peer p1 on edge 1. An event published while an
    // edge's own link is down is lost for its clients (at most once), so
    // the close's channel:leave, published as soon as edge 0 is back, is
    // awaited on the peer of edge 0.
    const a = await TestClient.connect(cluster.ws[0]!, "json");
    const b = await TestClient.connect(cluster.ws[0]!, "proto");
    const c = await TestClient.connect(cluster.ws[0]!, "json");
    const p0 = await TestClient.connect(cluster.ws[0]!, "json");
    const p1 = await TestClient.connect(cluster.ws[1]!, "proto");
    const peers = [p0, p1];
    try {
      await b.ok({ command: { case: "updateProfile", value: profile({ name: "bob" }) } });
      for (const x of [p0, p1, a, b, c]) await x.ok({ command: { case: "join", value: { channel: "r" } } });
      for (const p of peers) await eventually(() => about(p, "r", c.id).length > 0, 5_000, "the peers saw c join");
      const before = peers.map((p) => p.events().length);

      await cluster.api.stop();
      const leave = await a.request({ command: { case: "leave", value: { channel: "r" } } });
      expect(leave.error?.code).toBe(UNAVAILABLE);
      const update = await b.request({ command: { case: "updateProfile", value: profile({ name: "robert" }) } });
      expect(update.error?.code).toBe(UNAVAILABLE);
      await c.close();
      await sleep(200);

      const api2 = await startProcess("api", { REALTIME_GRPC_PORT: "0", REALTIME_HTTP_PORT: "0", ...env });
      cluster.api = api2;
      const grpc = realtimeClient(api2.ready.grpc!);
      try {
        // The closed connection's peers are told it left, once the API is back.
        await p0.next(
          (f) =>
            f.frame.case === "event" &&
            f.frame.value.event === "channel:leave" &&
            (f.frame.value.payload.value as Member).id === c.id,
          15_000,
        );
        await eventually(
          async () => {
            const res = await grpc.getMembers({ channel: "r" }).catch(() => undefined);
            return res?.members.length === 4;
          },
          15_000,
          "GetMembers lists p0, p1, a and b again",
        );
        const members = (await grpc.getMembers({ channel: "r" })).members;
        expect(members.map((m) => m.id).sort()).toEqual([p0.id, p1.id, a.id, b.id].sort());
        // b's profile is the one it had: the update was refused.
        expect(toJson(ValueSchema, members.find((m) => m.id === b.id)!.data!)).toEqual({ name: "bob" });
        // Peers were told nothing about a and b, and c's leave once.
        await sleep(1_500);
        peers.forEach((p, i) => {
          const told = p.events().slice(before[i]);
          expect(told.filter((e) => e.payload.case === "member" && e.payload.value.id !== c.id)).toEqual([]);
        });
        expect(about(p0, "r", c.id).filter(([name]) => name === "channel:leave")).toHaveLength(1);
        // a is still in the channel: it receives what is sent there, and its
        // retried leave works and is announced on both edges.
        await grpc.send({ channel: "r", event: "back", payload: { case: "json", value: fromJson(ValueSchema, 1) } });
        await a.event("back", "r");
        await a.ok({ command: { case: "leave", value: { channel: "r" } } });
        for (const p of peers) await eventually(() => about(p, "r", a.id).length > 1, 5_000, "the peers saw a leave");
        await b.ok({ command: { case: "updateProfile", value: profile({ name: "robert" }) } });
        const updated = await p1.event("channel:update", "r");
        expect(toJson(ValueSchema, (updated.payload.value as Member).data!)).toEqual({ name: "robert" });
      } finally {
        grpc.close();
      }
    } finally {
      for (const x of [a, b, p0, p1]) await x.close();
      await cluster.stop();
    }
  }, 90_000);
});
