/**
 * Faults between the API and its edges: no edge, a killed edge, a restarted
 * API. Send never answers OK for nothing; GetMembers is never silently
 * partial; survivors learn of the members that went away.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { createServer } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import type { Member } from "../gen/realtime/client/v1/client_pb.js";
import { startCluster, startProcess, stopAll } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const ok = { case: "json" as const, value: fromJson(ValueSchema, 1) };

afterAll(stopAll);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function until<T>(fn: () => Promise<T>, pred: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch((e: unknown) => e as T);
    if (pred(v) || Date.now() > deadline) return v;
    await sleep(50);
  }
}

describe("availability", () => {
  it("Send and Broadcast are UNAVAILABLE while no edge is connected", async () => {
    const cluster = await startCluster(0);
    const api = realtimeClient(cluster.grpc);
    try {
      await expect(api.send({ channel: "c", event: "e", payload: ok })).rejects.toMatchObject({
        code: status.UNAVAILABLE,
        details: expect.stringMatching(/no edge is connected/),
      });
      await expect(api.broadcast({ event: "e", payload: ok })).rejects.toMatchObject({ code: status.UNAVAILABLE });
      await cluster.addEdge();
      expect((await api.broadcast({ event: "e", payload: ok })).edges).toBe(1);
    } finally {
      api.close();
      await cluster.stop();
    }
  });

  it("a killed edge does not stop delivery to the others; its members vanish after the grace period with channel:leave", async () => {
    const cluster = await startCluster(2, { REALTIME_EDGE_GRACE_MS: "1500" });
    const api = realtimeClient(cluster.grpc);
    const survivor = await TestClient.connect(cluster.ws[0]!, "json");
    const doomed = await TestClient.connect(cluster.ws[1]!, "proto");
    try {
      await survivor.ok({ command: { case: "join", value: { channel: "k" } } });
      await doomed.ok({ command: { case: "join", value: { channel: "k" } } });
      expect((await api.getMembers({ channel: "k" })).members).toHaveLength(2);

      await cluster.edges[1]!.kill();
      const res = await until(
        () => api.send({ channel: "k", event: "after", payload: ok }),
        (r) => r.edges === 1,
      );
      expect(res.edges).toBe(1);
      await survivor.event("after");

      // Within the grace period the list would be wrong: UNAVAILABLE, not partial.
      await expect(api.getMembers({ channel: "k" })).rejects.toMatchObject({ code: status.UNAVAILABLE });
      const leave = await survivor.next(
        (f) =>
          f.frame.case === "event" &&
          f.frame.value.event === "channel:leave" &&
          (f.frame.value.payload.value as Member).id === doomed.id,
        8_000,
      );
      expect(leave).toBeDefined();
      const members = await api.getMembers({ channel: "k" });
      expect(members.members.map((m) => m.id)).toEqual([survivor.id]);
    } finally {
      api.close();
      await survivor.close();
      await cluster.stop();
    }
  });

  it("edges reconnect to a restarted API and restore their subscriptions and members", async () => {
    const linkPort = await freePort();
    const env = { REALTIME_LINK_PORT: String(linkPort) };
    const cluster = await startCluster(1, env);
    const c = await TestClient.connect(cluster.ws[0]!, "json");
    try {
      await c.ok({ command: { case: "updateProfile", value: { data: fromJson(ValueSchema, { name: "ann" }) } } });
      await c.ok({ command: { case: "join", value: { channel: "r" } } });
      await cluster.api.stop();
      // While the link is down the edge answers UNAVAILABLE rather than dropping commands.
      const down = await c.request({ command: { case: "getMembers", value: { channel: "r" } } });
      expect(down.error?.code).toBe(14);

      const api2 = await startProcess("api", { REALTIME_GRPC_PORT: "0", ...env });
      cluster.api = api2;
      const client = realtimeClient(api2.ready.grpc!);
      try {
        const members = await until(
          () => client.getMembers({ channel: "r" }),
          (r) => (r as { members?: unknown[] }).members?.length === 1,
        );
        expect(members.members.map((m) => m.id)).toEqual([c.id]);
        await client.send({ channel: "r", event: "back", payload: ok });
        await c.event("back");
      } finally {
        client.close();
      }
    } finally {
      await c.close();
      await cluster.stop();
    }
  });
});
