/**
 * Embedded mode, the API (the hub) restarted: a member who left while the
 * hub was down gets its channel:leave to every other edge's clients once
 * the hub is back, and GetMembers no longer lists it. Real processes: an
 * API on a fixed link port, killed (-9) and started again on it, and three
 * edges that reconnect to it by themselves.
 */
import { afterAll, describe, expect, it } from "vitest";
import { startCluster, startProcess, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { freePort } from "./helpers/net.js";
import { eventually } from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

const clients: TestClient[] = [];
let cluster: Cluster | undefined;

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await cluster?.stop();
  await stopAll();
}, 60_000);

describe("embedded mode: the API restarted", () => {
  it("a member who left while the hub was down: its channel:leave reaches every other edge's clients", async () => {
    const env = { REALTIME_LINK_PORT: String(await freePort()) };
    cluster = await startCluster(3, env);
    const stayers: TestClient[] = [];
    for (const ws of cluster.ws) {
      for (let i = 0; i < 2; i++) {
        const c = await TestClient.connect(ws, "json");
        clients.push(c);
        await c.ok({ command: { case: "join", value: { channel: "room" } } });
        stayers.push(c);
      }
    }
    const leaver = await TestClient.connect(cluster.ws[2]!, "json");
    clients.push(leaver);
    await leaver.ok({ command: { case: "join", value: { channel: "room" } } });
    await eventually(
      () => stayers.every((c) => c === stayers.at(-1) || c.told("channel:join", "room").includes(leaver.id)),
      5_000,
      "everyone told of the leaver's join",
    );

    await cluster.api.kill();
    await leaver.close();
    // Long enough for the edges' reconnect backoff to reach its ceiling:
    // then they come back at different times, up to 3 s apart.
    await sleep(4_000);
    // The same link port: the edges reconnect to the new API by themselves.
    cluster.api = await startProcess("api", { ...env, REALTIME_GRPC_PORT: "0", REALTIME_HTTP_PORT: "0" });
    const api = realtimeClient(cluster.api.ready.grpc!);
    try {
      await eventually(
        async () => {
          const ids = (await api.getMembers({ channel: "room" })).members.map((m) => m.id).sort();
          return JSON.stringify(ids) === JSON.stringify(stayers.map((c) => c.id).sort());
        },
        15_000,
        "GetMembers lists the stayers only",
      );
      const missed = () => stayers.filter((c) => !c.told("channel:leave", "room").includes(leaver.id));
      await eventually(() => missed().length === 0, 10_000, "every stayer told of the leave").catch(() => {});
      console.log(`stayers not told of the leave: ${missed().length} of ${stayers.length}`);
      if (missed().length > 0) console.log(cluster.edges.map((e) => e.stderr()).join("\n=====\n"));
      expect(missed().map((c) => c.id)).toEqual([]);
    } finally {
      api.close();
    }
  }, 60_000);
});
