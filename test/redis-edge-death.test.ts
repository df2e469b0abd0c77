/**
 * An edge that dies without cleanup (kill -9) in the Redis mode: its members
 * leave GetMembers (on every API node) and the members on the surviving
 * edges get one channel:leave for each, within the configured bound. Real
 * processes: two API nodes, three edges, the run's Redis (test/helpers/global-setup.ts).
 */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Realtime } from "../gen/realtime/v1/realtime_pb.js";
import { stopAll } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import {
  deletePrefix,
  eventually,
  NO_REDIS,
  startTopology,
  testRedisUrl,
  uniquePrefix,
  type Topology,
} from "./helpers/redis-topology.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

/** The liveness TTL of this test: short, so that the bound is. */
const TTL_MS = 1_500;
/** Documented bound: gone from GetMembers within the TTL, channel:leave within 4/3 of it; plus a second of slack for a loaded machine. */
const LEAVE_BOUND_MS = Math.ceil((TTL_MS * 4) / 3) + 1_000;

let topology: Topology;
let apis: RealtimeTestClient[];
const clients: TestClient[] = [];

const prefix = uniquePrefix("edge-death");

beforeAll(async () => {
  if (NO_REDIS) return;
  topology = await startTopology(2, 3, {
    REALTIME_REDIS_URL: testRedisUrl(),
    REALTIME_REDIS_PREFIX: prefix,
    REALTIME_REDIS_EDGE_TTL_MS: String(TTL_MS),
  });
  apis = topology.grpc.map((address) => realtimeClient(address));
}, 90_000);

afterAll(async () => {
  if (NO_REDIS) return;
  await Promise.all(clients.map((c) => c.close()));
  for (const api of apis ?? []) api.close();
  await topology?.stop();
  await stopAll();
  // The killed edge's tombstone and the sweep's keys would linger for a while: remove them.
  await deletePrefix(prefix);
}, 60_000);

async function client(edge: number) {
  const c = await TestClient.connect(topology.ws[edge]!, "proto");
  clients.push(c);
  return c;
}

const ids = (members: { id: string }[]) => members.map((m) => m.id).sort();
const leavesOf = (c: TestClient, channel: string) =>
  c
    .events("channel:leave")
    .flatMap((e) => (e.channel === channel && e.payload.case === "member" ? [e.payload.value.id] : []));

describe.skipIf(NO_REDIS)("kill -9 of an edge, with Redis", () => {
  it(`its members leave GetMembers and channel:leave reaches the other edges within ${LEAVE_BOUND_MS} ms, once each`, async () => {
    const doomed = [await client(0), await client(0)];
    const survivors = [await client(1), await client(2)];
    for (const c of [...survivors, ...doomed]) await c.ok({ command: { case: "join", value: { channel: "room" } } });
    await doomed[0]!.ok({ command: { case: "join", value: { channel: "only-doomed" } } });
    for (const api of apis)
      expect(ids((await api.getMembers({ channel: "room" })).members)).toEqual(ids([...doomed, ...survivors]));
    // Well past the sweepers' settling time (a TTL after they connected).
    await sleep(TTL_MS);

    const killedAt = Date.now();
    await topology.edges[0]!.kill();

    const goneAfter = await eventually(
      async () => {
        const lists = await Promise.all(apis.map((api) => api.getMembers({ channel: "room" })));
        return lists.every((l) => JSON.stringify(ids(l.members)) === JSON.stringify(ids(survivors)));
      },
      LEAVE_BOUND_MS,
      "members of the killed edge gone from GetMembers on both API nodes",
    );
    await eventually(
      () => survivors.every((s) => JSON.stringify(leavesOf(s, "room").sort()) === JSON.stringify(ids(doomed))),
      Math.max(0, LEAVE_BOUND_MS - (Date.now() - killedAt)),
      "channel:leave for each member of the killed edge on both surviving edges",
    );
    const leftAfter = Date.now() - killedAt;
    expect(goneAfter).toBeLessThanOrEqual(LEAVE_BOUND_MS);
    expect(leftAfter).toBeLessThanOrEqual(LEAVE_BOUND_MS);

    // Two more sweep rounds: no duplicate leave, no leave of a survivor, no ghost channel.
    await sleep(TTL_MS);
    for (const s of survivors) expect(leavesOf(s, "room").sort()).toEqual(ids(doomed));
    for (const api of apis) expect(ids((await api.getMembers({ channel: "only-doomed" })).members)).toEqual([]);
    for (const address of topology.grpc) {
      const list = await createClient(Realtime, createGrpcTransport({ baseUrl: `http://${address}` })).listChannels({});
      expect(list.channels.map((c) => [c.name, c.members])).toEqual([["room", 2]]);
    }
    // The survivors' edges are untouched: they still deliver.
    await apis[1]!.send({ channel: "room", event: "still", payload: { case: "binary", value: new Uint8Array([1]) } });
    for (const s of survivors) await s.event("still");
  }, 30_000);
});
