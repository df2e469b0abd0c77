/**
 * GetHistory and WatchChannel's positions and resume (src/api/history.ts,
 * src/api/watch.ts), end to end on real processes: over grpc-js (from gen/)
 * and Connect, in the embedded mode and in the Redis mode. GetHistory reads
 * what a channel keeps (since, limit, reverse; complete = false for a since
 * it cannot answer; nothing for a channel without history); every watched
 * event carries its offset and epoch; a watch with since gets every event
 * it missed, then the live ones, each exactly once and in order, with no
 * snapshot; one that cannot resume gets a snapshot marked resync.
 */
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Realtime, type WatchChannelResponse } from "../gen/realtime/v1/realtime_pb.js";
import { DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT } from "../src/core/limits.js";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import {
  eventually,
  NO_REDIS,
  NO_REDIS_SERVER,
  startOwnTopology,
  startTopology,
  testRedisUrl,
  uniquePrefix,
  type OwnTopology,
  type Topology,
} from "./helpers/redis-topology.js";
import { TestClient } from "./helpers/ws-client.js";

const WAIT_MS = 15_000;
const json = (n: number) => ({ case: "json" as const, value: { kind: { case: "numberValue" as const, value: n } } });
/** The number a message event carries. */
const n = (r: WatchChannelResponse) =>
  r.update.case === "message" && r.update.value.payload.case === "json"
    ? r.update.value.payload.value.kind.value
    : r.update.case;

interface Watch {
  readonly got: WatchChannelResponse[];
  /** Waits until pred holds of what was received. */
  wait(pred: (got: WatchChannelResponse[]) => boolean, what: string): Promise<void>;
  stop(): Promise<void>;
}

interface Api {
  rpc: RealtimeTestClient;
  connect: Client<typeof Realtime>;
}

/** A WatchChannel stream over grpc-js or Connect, collected as it comes. */
function watch(api: Api, over: "grpc" | "connect", req: Parameters<RealtimeTestClient["watchChannel"]>[0]): Watch {
  const got: WatchChannelResponse[] = [];
  let failure: unknown;
  let stop: () => Promise<void>;
  if (over === "grpc") {
    const call = api.rpc.watchChannel(req);
    call.on("data", (r: WatchChannelResponse) => got.push(r));
    const ended = new Promise<void>((resolve) => {
      call.on("error", (err: grpc.ServiceError) => {
        if (err.code !== grpc.status.CANCELLED) failure = err;
        resolve();
      });
      call.on("end", () => resolve());
    });
    stop = async () => {
      call.cancel();
      await ended;
    };
  } else {
    const abort = new AbortController();
    const done = (async () => {
      try {
        for await (const r of api.connect.watchChannel(req as never, { signal: abort.signal })) got.push(r);
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) failure = err;
      }
    })();
    stop = async () => {
      abort.abort();
      await done;
    };
  }
  return {
    got,
    async wait(pred, what) {
      const deadline = Date.now() + WAIT_MS;
      while (!pred(got)) {
        if (failure) throw failure;
        if (Date.now() > deadline) throw new Error(`${over}: waited for ${what}; got ${got.map(n).join(",")}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop: () => stop(),
  };
}

async function sendN(api: Api, channel: string, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) await api.rpc.send({ channel, event: "n", payload: json(i) });
}

async function grpcCode(p: Promise<unknown>): Promise<[number, string] | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    const e = err as grpc.ServiceError;
    return [e.code, e.details];
  }
}

/** The suite, against one API node of a running deployment (embedded or Redis). */
function suite(mode: string, api: () => Api, ws: () => string) {
  it(`${mode}: GetHistory reads what the channel keeps, with since, limit and reverse, the same over Connect`, async () => {
    const channel = `${mode}-read`;
    await sendN(api(), channel, 1, 5);
    const all = await api().rpc.getHistory({ channel });
    expect(all.events.map(n)).toEqual([1, 2, 3, 4, 5]);
    expect(all.events.map((e) => e.offset)).toEqual([1n, 2n, 3n, 4n, 5n]);
    const epoch = all.position!.epoch;
    expect(epoch).not.toBe("");
    expect(all.events.every((e) => e.epoch === epoch && e.id !== "" && e.update.case === "message")).toBe(true);
    expect([all.position!.offset, all.complete]).toEqual([5n, true]);
    const read = async (req: { since?: { offset: bigint; epoch: string }; limit?: number; reverse?: boolean }) => {
      const r = await api().rpc.getHistory({ channel, ...req });
      // Connect answers the same.
      const c = await api().connect.getHistory({ channel, ...req });
      expect(c).toEqual(r);
      return [r.events.map(n), r.complete];
    };
    expect(await read({ since: { offset: 2n, epoch } })).toEqual([[3, 4, 5], true]);
    expect(await read({ since: { offset: 5n, epoch } })).toEqual([[], true]);
    expect(await read({ limit: 2 })).toEqual([[1, 2], true]);
    expect(await read({ since: { offset: 1n, epoch }, limit: 2 })).toEqual([[2, 3], true]);
    expect(await read({ reverse: true })).toEqual([[5, 4, 3, 2, 1], true]);
    expect(await read({ reverse: true, limit: 2 })).toEqual([[5, 4], true]);
    expect(await read({ reverse: true, since: { offset: 2n, epoch } })).toEqual([[5, 4, 3], true]);
  });

  it(`${mode}: limit 0 means ${DEFAULT_HISTORY_LIMIT}; over ${MAX_HISTORY_LIMIT} and a bad channel are INVALID_ARGUMENT`, async () => {
    const channel = `big:${mode}-limits`;
    await sendN(api(), channel, 1, DEFAULT_HISTORY_LIMIT + 5);
    expect((await api().rpc.getHistory({ channel })).events.length).toBe(DEFAULT_HISTORY_LIMIT);
    expect((await api().rpc.getHistory({ channel, limit: MAX_HISTORY_LIMIT })).events.length).toBe(
      DEFAULT_HISTORY_LIMIT + 5,
    );
    const over = await grpcCode(api().rpc.getHistory({ channel, limit: MAX_HISTORY_LIMIT + 1 }));
    expect(over).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringContaining(`at most ${MAX_HISTORY_LIMIT}`)]);
    const connect = await api()
      .connect.getHistory({ channel, limit: MAX_HISTORY_LIMIT + 1 })
      .catch((e: unknown) => ConnectError.from(e));
    expect((connect as ConnectError).code).toBe(Code.InvalidArgument);
    // A bad name: the same answer as GetMembers gives.
    const bad = await grpcCode(api().rpc.getHistory({ channel: "a b" }));
    expect(bad).toEqual(await grpcCode(api().rpc.getMembers({ channel: "a b" })));
    expect(bad).not.toBe("ok");
    expect((bad as [number, string])[0]).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it(`${mode}: complete = false for an epoch that is not the channel's, a position past its end, or events no longer kept`, async () => {
    const channel = `${mode}-gone`;
    await sendN(api(), channel, 1, 3);
    const { position } = await api().rpc.getHistory({ channel, limit: 1 });
    const epoch = position!.epoch;
    for (const since of [
      { offset: 1n, epoch: "not-this" },
      { offset: 0n, epoch: "" },
      { offset: 9n, epoch },
    ]) {
      const r = await api().rpc.getHistory({ channel, since });
      expect([r.events.length, r.complete, r.position]).toEqual([0, false, position]);
    }
    // small: keeps 5 (REALTIME_HISTORY_RULES).
    const small = `small:${mode}`;
    await sendN(api(), small, 1, 8);
    const s = (await api().rpc.getHistory({ channel: small })).position!.epoch;
    const trimmed = await api().rpc.getHistory({ channel: small, since: { offset: 1n, epoch: s } });
    // Not complete: nothing, in both modes (start over without since).
    expect([trimmed.complete, trimmed.events.map(n)]).toEqual([false, []]);
    const kept = await api().rpc.getHistory({ channel: small, since: { offset: 3n, epoch: s } });
    expect([kept.complete, kept.events.map(n)]).toEqual([true, [4, 5, 6, 7, 8]]);
  });

  it(`${mode}: a channel without history: no events, no position; events watched carry none`, async () => {
    const channel = `nohist:${mode}`;
    const w = watch(api(), "grpc", { channel });
    await w.wait((g) => g.length === 1, "the snapshot");
    await sendN(api(), channel, 1, 2);
    await w.wait((g) => g.length === 3, "two events");
    expect(w.got.slice(1).map((r) => [n(r), r.offset, r.epoch])).toEqual([
      [1, 0n, ""],
      [2, 0n, ""],
    ]);
    await w.stop();
    const r = await api().rpc.getHistory({ channel });
    expect([r.events, r.position!.offset, r.position!.epoch, r.complete]).toEqual([[], 0n, "", true]);
    const since = await api().rpc.getHistory({ channel, since: { offset: 0n, epoch: "" } });
    expect(since.complete).toBe(false);
  });

  it(`${mode}: joins, profile updates and leaves are in the history, with their positions, as WatchChannel shows them`, async () => {
    const channel = `${mode}-members`;
    const w = watch(api(), "grpc", { channel });
    await w.wait((g) => g.length === 1, "the snapshot");
    const c = await TestClient.connect(ws(), "json");
    await c.ok({ command: { case: "join", value: { channel } } });
    await api().rpc.send({ channel, event: "n", payload: json(1) });
    await c.close();
    await w.wait((g) => g.some((r) => r.update.case === "leave"), "the leave");
    const watched = w.got.slice(1);
    expect(watched.map(n)).toEqual(["join", 1, "leave"]);
    // Positions: consecutive, in one epoch.
    expect(watched.map((r) => r.offset)).toEqual([1n, 2n, 3n]);
    const history = await api().rpc.getHistory({ channel });
    expect(history.events).toEqual(watched);
    expect(history.position).toEqual({ $typeName: "realtime.v1.StreamPosition", offset: 3n, epoch: watched[0]!.epoch });
    await w.stop();
  });

  for (const over of ["grpc", "connect"] as const) {
    it(`${mode} ${over}: a watch with since gets what it missed, then live events, each once, in order, without a snapshot`, async () => {
      const channel = `${mode}-resume-${over}`;
      const first = watch(api(), over, { channel });
      await first.wait((g) => g.length === 1, "the snapshot");
      expect(first.got[0]!.resync).toBe(false);
      await sendN(api(), channel, 1, 3);
      await first.wait((g) => g.length === 4, "three events");
      const last = first.got.at(-1)!;
      expect([n(last), last.offset]).toEqual([3, 3n]);
      await first.stop();
      // Sent while no watch is open.
      await sendN(api(), channel, 4, 3);
      const second = watch(api(), over, { channel, since: { offset: last.offset, epoch: last.epoch } });
      // Sent while the watch starts: whether they come from history or live, once each.
      await sendN(api(), channel, 7, 3);
      await second.wait((g) => g.length >= 6, "six events");
      await sendN(api(), channel, 10, 1);
      await second.wait((g) => g.some((r) => n(r) === 10), "the tenth");
      expect(second.got.map(n)).toEqual([4, 5, 6, 7, 8, 9, 10]);
      expect(second.got.map((r) => r.offset)).toEqual([4n, 5n, 6n, 7n, 8n, 9n, 10n]);
      expect(second.got.every((r) => r.epoch === last.epoch)).toBe(true);
      await second.stop();
      // Resuming where the channel is: nothing to send until the next event.
      const at = second.got.at(-1)!;
      const third = watch(api(), over, { channel, since: { offset: at.offset, epoch: at.epoch } });
      // The history read is done once the stream answers a later event; until then, nothing.
      await sendN(api(), channel, 11, 1);
      await third.wait((g) => g.length >= 1, "the eleventh");
      expect(third.got.map(n)).toEqual([11]);
      await third.stop();
    });
  }

  it(`${mode}: a watch with since that cannot resume starts with a snapshot marked resync, then live events`, async () => {
    const channel = `${mode}-resync`;
    const c = await TestClient.connect(ws(), "json");
    await c.ok({ command: { case: "join", value: { channel } } });
    await sendN(api(), channel, 1, 2);
    const epoch = (await api().rpc.getHistory({ channel })).position!.epoch;
    const small = `small:${mode}-resync`;
    await sendN(api(), small, 1, 8);
    const smallEpoch = (await api().rpc.getHistory({ channel: small })).position!.epoch;
    const cases: [string, Parameters<RealtimeTestClient["watchChannel"]>[0]][] = [
      ["another epoch", { channel, since: { offset: 1n, epoch: "not-this" } }],
      ["past the end", { channel, since: { offset: 50n, epoch } }],
      ["no longer kept", { channel: small, since: { offset: 1n, epoch: smallEpoch } }],
      ["no history", { channel: `nohist:${mode}-resync`, since: { offset: 1n, epoch: "" } }],
    ];
    for (const [why, req] of cases) {
      const w = watch(api(), "grpc", req);
      await w.wait((g) => g.length >= 1 && g.at(-1)!.update.case === "members", `${why}: the snapshot`);
      const snapshot = w.got[0]!;
      expect([why, snapshot.update.case, snapshot.resync]).toEqual([why, "members", true]);
      if (req.channel === channel)
        expect(snapshot.update.value).toMatchObject({ members: [{ id: c.id }], complete: true });
      await sendN(api(), req.channel!, 100, 1);
      await w.wait((g) => g.some((r) => n(r) === 100), `${why}: a live event`);
      expect(w.got.slice(1).map(n)).toEqual([100]);
      await w.stop();
    }
    await c.close();
  });
}

describe("embedded mode", () => {
  let cluster: Cluster;
  let api: Api;
  beforeAll(async () => {
    cluster = await startCluster(1, { REALTIME_HISTORY_RULES: "small:=5,nohist:=0,big:=200" });
    api = {
      rpc: realtimeClient(cluster.grpc),
      connect: createClient(
        Realtime,
        createConnectTransport({ baseUrl: `http://${cluster.http}`, httpVersion: "1.1" }),
      ),
    };
  }, 60_000);
  afterAll(async () => {
    api?.rpc.close();
    await cluster?.stop();
    await stopAll();
  });
  suite(
    "embedded",
    () => api,
    () => cluster.ws[0]!,
  );
});

describe.skipIf(NO_REDIS)("Redis mode", () => {
  let topology: Topology;
  let api: Api;
  beforeAll(async () => {
    topology = await startTopology(1, 1, {
      REALTIME_REDIS_URL: testRedisUrl(),
      REALTIME_REDIS_PREFIX: uniquePrefix("history-api"),
      REALTIME_HISTORY_RULES: "small:=5,nohist:=0,big:=200",
    });
    api = {
      rpc: realtimeClient(topology.grpc[0]!),
      connect: createClient(
        Realtime,
        createConnectTransport({ baseUrl: `http://${topology.apis[0]!.ready.http}`, httpVersion: "1.1" }),
      ),
    };
  }, 90_000);
  afterAll(async () => {
    api?.rpc.close();
    await topology?.stop();
    await stopAll();
  });
  suite(
    "redis",
    () => api,
    () => topology.ws[0]!,
  );
});

describe.skipIf(NO_REDIS_SERVER)("Redis away, then back empty", () => {
  let own: OwnTopology;
  let api: Api;
  beforeAll(async () => {
    own = await startOwnTopology("history-api-outage", 1, 1);
    api = {
      rpc: own.apis[0]!,
      connect: createClient(
        Realtime,
        createConnectTransport({ baseUrl: `http://${own.topology.apis[0]!.ready.http}`, httpVersion: "1.1" }),
      ),
    };
  }, 90_000);
  afterAll(async () => {
    await own?.stop();
  });

  it("GetHistory and a watch with since are UNAVAILABLE while Redis is away; after, the old position resyncs", async () => {
    const channel = "outage";
    await sendN(api, channel, 1, 3);
    const before = await api.rpc.getHistory({ channel });
    const since = before.position!;
    expect(since.offset).toBe(3n);
    const w = watch(api, "grpc", { channel, since: { offset: 1n, epoch: since.epoch } });
    await w.wait((g) => g.length === 2, "the two missed");

    await own.redis.kill();
    // Never a partial or empty answer: UNAVAILABLE.
    await eventually(
      async () => (await grpcCode(api.rpc.getHistory({ channel })).then((c) => c !== "ok" && c[0])) === 14,
      10_000,
      "GetHistory UNAVAILABLE",
    );
    const connect = await api.connect.getHistory({ channel }).catch((e: unknown) => ConnectError.from(e));
    expect((connect as ConnectError).code).toBe(Code.Unavailable);
    await expect(w.wait(() => false, "the watch to end")).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const during = watch(api, "grpc", { channel, since: { offset: 3n, epoch: since.epoch } });
    await expect(during.wait(() => false, "the watch to fail")).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });

    // Back without its data: a new epoch; the old position cannot resume.
    await own.redis.start();
    await eventually(
      async () => (await api.rpc.getHistory({ channel })).position!.epoch !== since.epoch,
      20_000,
      "history readable again",
    );
    const after = await api.rpc.getHistory({ channel, since: { offset: 3n, epoch: since.epoch } });
    expect([after.complete, after.events]).toEqual([false, []]);
    // The snapshot the watch falls back to is refused until every edge has
    // re-registered (never a partial list): wait for presence to answer.
    await eventually(
      async () => (await grpcCode(api.rpc.getMembers({ channel }))) === "ok",
      20_000,
      "presence readable again",
    );
    // The node's subscriber connection comes back on its own schedule: until
    // it has, a watch is refused with UNAVAILABLE ("try again shortly"), as a
    // client would retry, so does the test.
    let resumed!: Watch;
    let unexpected: unknown;
    await eventually(
      async () => {
        resumed = watch(api, "grpc", { channel, since: { offset: 3n, epoch: since.epoch } });
        try {
          await resumed.wait((g) => g.length === 1, "the snapshot");
          return true;
        } catch (err) {
          if ((err as grpc.ServiceError).code === grpc.status.UNAVAILABLE) return false;
          unexpected = err;
          return true;
        }
      },
      20_000,
      "a watch accepted again",
    );
    if (unexpected) throw unexpected;
    expect([resumed.got[0]!.update.case, resumed.got[0]!.resync]).toEqual(["members", true]);
    await eventually(
      async () => (await grpcCode(api.rpc.send({ channel, event: "n", payload: json(4) }))) === "ok",
      20_000,
      "Send accepted again",
    );
    await resumed.wait((g) => g.some((r) => n(r) === 4), "a live event");
    await resumed.stop();
  });
});
