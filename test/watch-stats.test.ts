/**
 * WatchStats (src/api/stats.ts): the rates of a snapshot from the nodes'
 * totals (statsSnapshot, alone), then end to end over gRPC with real
 * processes (one API, two edges): the interval's bounds, the sums, and
 * rates that are exactly the change of the nodes' totals (NodeInfo) between
 * two snapshots.
 */
import * as grpc from "@grpc/grpc-js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  InfoResponseSchema,
  NodeRole,
  type NodeInfoSchema,
  type WatchStatsResponse,
} from "../gen/realtime/v1/realtime_pb.js";
import { MAX_STATS_INTERVAL_MS, MIN_STATS_INTERVAL_MS, statsSnapshot } from "../src/api/stats.js";
import { useCluster } from "./helpers/fixture.js";
import { waitFor } from "./helpers/sdk.js";
import type { TestClient } from "./helpers/ws-client.js";

type NodeInit = Omit<MessageInitShape<typeof NodeInfoSchema>, "$typeName">;

function info(...nodes: NodeInit[]) {
  return create(InfoResponseSchema, { nodes });
}

function edge(id: string, totals: NodeInit = {}): NodeInit {
  return { id, role: NodeRole.EDGE, startedUnixMs: 1_000n, connections: 2, channels: 1, ...totals };
}

describe("statsSnapshot", () => {
  it("sums the edges; the first snapshot has no rates", () => {
    const { snapshot } = statsSnapshot(
      info({ id: "api", role: NodeRole.API }, edge("a", { messagesIn: 50n }), edge("b", { connections: 3 })),
      10_000,
      undefined,
    );
    expect(snapshot.connections).toBe(5);
    expect(snapshot.channels).toBe(2);
    expect(snapshot.nodes.map((n) => n.id)).toEqual(["api", "a", "b"]);
    expect(snapshot.messagesInPerSecond).toBe(0);
    expect(snapshot.disconnectsPerSecondByReason).toEqual({});
  });

  it("rates are the change of each node's totals over the seconds between the two", () => {
    const first = statsSnapshot(
      info(
        edge("a", { messagesIn: 10n, deliveries: 100n, drops: { closed: 1n }, disconnects: { client: 4n } }),
        edge("b", { messagesIn: 5n, deliveries: 0n }),
      ),
      10_000,
      undefined,
    );
    const { snapshot } = statsSnapshot(
      info(
        edge("a", {
          messagesIn: 30n,
          deliveries: 160n,
          drops: { closed: 3n, slow_consumer: 2n },
          disconnects: { client: 6n, heartbeat: 1n },
        }),
        edge("b", { messagesIn: 25n, deliveries: 40n }),
      ),
      12_000,
      first.sample,
    );
    expect(snapshot.messagesInPerSecond).toBe((20 + 20) / 2);
    expect(snapshot.deliveriesPerSecond).toBe((60 + 40) / 2);
    expect(snapshot.dropsPerSecond).toBe(4 / 2);
    expect(snapshot.disconnectsPerSecondByReason).toEqual({ client: 1, heartbeat: 0.5 });
  });

  it("a node that restarted counts its new totals as its change; a new node only when it started since", () => {
    const first = statsSnapshot(
      info(edge("a", { messagesIn: 1_000n, deliveries: 500n }), edge("b", { deliveries: 7n })),
      10_000,
      undefined,
    );
    const { snapshot } = statsSnapshot(
      info(
        // Restarted with the same id: a new start time, totals from 0.
        edge("a", { startedUnixMs: 10_500n, messagesIn: 8n, deliveries: 4n }),
        // The same start time but a total went down: also a restart.
        edge("b", { deliveries: 2n }),
        // New since the first snapshot: all of it happened in between.
        edge("c", { startedUnixMs: 10_200n, deliveries: 10n }),
        // Absent from the first (unanswered then?) but older: nothing known of its change.
        edge("d", { startedUnixMs: 5_000n, deliveries: 1_000n }),
      ),
      11_000,
      first.sample,
    );
    expect(snapshot.messagesInPerSecond).toBe(8);
    expect(snapshot.deliveriesPerSecond).toBe(4 + 2 + 10);
  });
});

/** The gRPC status a stream ended with. */
function ended(stream: grpc.ClientReadableStream<unknown>): Promise<grpc.StatusObject> {
  return new Promise((resolve) => {
    stream.on("status", resolve);
    stream.on("error", () => {}); // reported through 'status'
    stream.on("data", () => {});
  });
}

const sum = (s: WatchStatsResponse, total: "messagesIn" | "deliveries") =>
  s.nodes.reduce((n, node) => n + Number(node[total]), 0);

const KEY = "watch-stats-key-0123456789";
const PUBLISH_KEY = "watch-stats-publish-0123456789";
const auth = (key: string) => {
  const m = new grpc.Metadata();
  m.set("authorization", `Bearer ${key}`);
  return m;
};

describe("WatchStats: API key scope and stream bounds (REALTIME_WATCH_MAX_STREAMS_PER_KEY=2)", () => {
  const keyed = useCluster(0, {
    REALTIME_API_KEYS: `${KEY}:presence,${PUBLISH_KEY}:publish`,
    REALTIME_WATCH_MAX_STREAMS_PER_KEY: "2",
  });

  /** Resolves "open" at the stream's first message, or with its status. */
  const outcome = (stream: grpc.ClientReadableStream<unknown>) =>
    new Promise<"open" | grpc.StatusObject>((resolve) => {
      stream.once("data", () => resolve("open"));
      stream.on("status", resolve);
      stream.on("error", () => {});
    });

  it("is in the presence scope, and counts with WatchChannel towards the key's streams", async () => {
    const denied = await outcome(keyed.api.watchStats({}, auth(PUBLISH_KEY)));
    expect(denied).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    const channel = keyed.api.watchChannel({ channel: "bounded" }, auth(KEY));
    const stats = keyed.api.watchStats({ intervalMs: 250 }, auth(KEY));
    expect(await Promise.all([outcome(channel), outcome(stats)])).toEqual(["open", "open"]);
    const third = await outcome(keyed.api.watchStats({}, auth(KEY)));
    expect(third).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect((third as grpc.StatusObject).details).toMatch(
      /already has 2 WatchChannel, WatchStats, WatchLifecycle or WatchMessages streams open/,
    );
    // Ending one frees its place.
    channel.cancel();
    await new Promise((r) => setTimeout(r, 200));
    const again = keyed.api.watchStats({}, auth(KEY));
    expect(await outcome(again)).toBe("open");
    stats.cancel();
    again.cancel();
  });
});

describe("WatchStats end to end (one API, two edges)", () => {
  const fx = useCluster(2);
  const api = () => fx.api;

  it.each([100, MIN_STATS_INTERVAL_MS - 1, MAX_STATS_INTERVAL_MS + 1])(
    "refuses interval_ms %i with INVALID_ARGUMENT, saying the bounds",
    async (intervalMs) => {
      const status = await ended(api().watchStats({ intervalMs }));
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.details).toBe(`interval_ms must be 250 to 10000 (or 0 for 1000); it is ${intervalMs}`);
    },
  );

  it("streams snapshots with the edges' sums, and rates that are the change of the nodes' totals", async () => {
    // Three members of "room": two on the first edge, one on the second.
    const clients: TestClient[] = [];
    for (const edge of [0, 0, 1]) {
      const c = await fx.client(edge, "json");
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: "room" } } });
    }
    const snapshots: WatchStatsResponse[] = [];
    const stream = api().watchStats({ intervalMs: 250 });
    const status = ended(stream);
    stream.on("data", (s: WatchStatsResponse) => snapshots.push(s));
    const after = async (n: number) => {
      const want = snapshots.length + n;
      await waitFor(() => snapshots.length >= want, `${want} snapshots`);
      return snapshots[snapshots.length - 1]!;
    };

    const first = await after(1);
    expect(first.nodes.map((n) => n.role)).toEqual([NodeRole.API, NodeRole.EDGE, NodeRole.EDGE]);
    expect(first.connections).toBe(3);
    expect(first.channels).toBe(2);
    expect(first.unanswered).toBe(0);
    // Every member saw the joins of those after it: wait for them, then measure from a quiet moment.
    await waitFor(() => clients[0]!.told("channel:join", "room").length >= 2, "the joins");
    const quiet = await after(2);

    // 5 events to 3 members: 15 event frames; 2 pings: 2 client frames; then one client
    // leaves: its channel:leave to the 2 others, 2 more event frames.
    for (let i = 0; i < 5; i++)
      await api().send({ channel: "room", event: "tick", payload: { case: "binary", value: new Uint8Array([i]) } });
    await Promise.all(clients.map((c) => waitFor(() => c.events("tick").length === 5, "5 ticks")));
    await clients[2]!.ok({ command: { case: "ping", value: {} } });
    await clients[2]!.ok({ command: { case: "ping", value: {} } });
    await clients.pop()!.close();
    await waitFor(() => snapshots[snapshots.length - 1]!.connections === 2, "the leave in a snapshot");
    const last = await after(2);

    const window = snapshots.slice(snapshots.indexOf(quiet));
    // Each snapshot's rate times its seconds is the change of the totals since the one before.
    for (let i = 1; i < window.length; i++) {
      const [a, b] = [window[i - 1]!, window[i]!];
      const seconds = Number(b.atUnixMs - a.atUnixMs) / 1000;
      expect(b.deliveriesPerSecond * seconds).toBeCloseTo(sum(b, "deliveries") - sum(a, "deliveries"), 6);
      expect(b.messagesInPerSecond * seconds).toBeCloseTo(sum(b, "messagesIn") - sum(a, "messagesIn"), 6);
    }
    const over = (rate: (s: WatchStatsResponse) => number) =>
      window.slice(1).reduce((n, s, i) => n + (rate(s) * Number(s.atUnixMs - window[i]!.atUnixMs)) / 1000, 0);
    expect(sum(last, "deliveries") - sum(quiet, "deliveries")).toBe(17);
    expect(over((s) => s.deliveriesPerSecond)).toBeCloseTo(17, 6);
    expect(over((s) => s.messagesInPerSecond)).toBeCloseTo(2, 6);
    expect(over((s) => s.disconnectsPerSecondByReason.client ?? 0)).toBeCloseTo(1, 6);
    expect(window.some((s) => s.deliveriesPerSecond > 0)).toBe(true);
    expect(last.connections).toBe(2);
    expect(
      last.nodes.find((n) => n.id === clients[0]!.id.slice(0, clients[0]!.id.lastIndexOf(".")))?.disconnects,
    ).toEqual({});
    expect(Object.values(last.nodes.find((n) => n.role === NodeRole.API)!.disconnects)).toEqual([]);

    stream.cancel();
    expect((await status).code).toBe(grpc.status.CANCELLED);
  }, 40_000);
});
