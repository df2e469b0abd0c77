/**
 * The connection policy (src/core/connections.ts, admission.ts) alone, with
 * an in-memory Transport and a fake Edge, on fake timers: admission and the
 * order of its refusals, the outbound bound, closing means stopping,
 * heartbeats, the outage close and the shutdown spread. The same rules
 * across real processes: ws-closing, ws-close-codes, heartbeat,
 * slow-consumer, shutdown, limits, browser-guards, auth-tokens.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type ConnectRequest, type Refusal } from "../src/core/admission.js";
import { ClientConnection, ConnectionPolicy, type ConnectionPolicyOptions } from "../src/core/connections.js";
import type { Session } from "../src/core/edge.js";
import { ANONYMOUS, type Identity } from "../src/core/identity.js";
import { CLOSE_HANDSHAKE_TIMEOUT_MS, SLOW_CONSUMER_TERMINATE_MS } from "../src/core/limits.js";
import { NOOP_OBSERVER, type DisconnectReason, type DropReason, type RefusalReason } from "../src/core/observer.js";
import type { Connection, Transport } from "../src/core/transport.js";
import { CloseCode } from "../src/protocol/close-codes.js";
import { Encoding } from "../src/protocol/encodings.js";

/** A Transport in memory: records what the policy asks of it; its client answers a close at once. */
class MemoryTransport implements Transport {
  open = true;
  bufferedBytes = 0;
  readonly sent: Uint8Array[] = [];
  readonly closes: [number, string][] = [];
  terminated = 0;
  pings = 0;
  stopped = 0;
  /** Whether the client answers a close frame (then the connection ends with its code). */
  answersClose = true;
  ended = false;
  connection: ClientConnection | undefined;

  send(data: Uint8Array): void {
    this.sent.push(data);
    this.bufferedBytes += data.length;
  }
  /** When close() was called (Date.now, faked). */
  closedAt: number | undefined;
  close(code: number, reason: string): void {
    this.closes.push([code, reason]);
    this.closedAt = Date.now();
    this.open = false;
    if (this.answersClose) queueMicrotask(() => this.end(code));
  }
  terminate(): void {
    this.terminated++;
    this.open = false;
    this.end(1006);
  }
  /** A liveness probe; set to undefined for a transport without one (as SSE would be). */
  ping?: () => void = () => void this.pings++;
  stopReading(): void {
    this.stopped++;
  }
  /** The connection is gone (the transport's 'close'). */
  end(code: number): void {
    if (this.ended) return;
    this.ended = true;
    this.connection!.ended(code);
  }
}

/** The Edge as the policy sees it: records what it is handed. */
function fakeEdge() {
  const received: Uint8Array[] = [];
  const disconnects: DisconnectReason[] = [];
  let leave: Promise<void> = Promise.resolve();
  const edge = {
    received,
    disconnects,
    /** Makes later disconnects resolve only with this promise. */
    leaveWith(p: Promise<void>) {
      leave = p;
    },
    connect(connection: Connection, encoding: Encoding, echo: boolean, identity: Identity): Session {
      connection.send(new TextEncoder().encode(`connected ${encoding} ${echo} ${identity.userId ?? ""}`), true);
      return { identity } as unknown as Session;
    },
    receive(_session: Session, data: Uint8Array) {
      received.push(data);
    },
    disconnect(_session: Session, reason: DisconnectReason = "client") {
      disconnects.push(reason);
      return leave;
    },
  };
  return edge;
}

function counting() {
  const refused: RefusalReason[] = [];
  const dropped: DropReason[] = [];
  return {
    refused,
    dropped,
    observer: {
      ...NOOP_OBSERVER,
      connectionRefused: (r: RefusalReason) => void refused.push(r),
      dropped: (r: DropReason, n: number) => void dropped.push(...Array<DropReason>(n).fill(r)),
    },
  };
}

function setup(options: Partial<ConnectionPolicyOptions> = {}) {
  const edge = fakeEdge();
  const counts = counting();
  const policy = new ConnectionPolicy({ edge, observer: counts.observer, ...options });
  const open = (transport = new MemoryTransport()) => {
    const c = policy.open(transport, Encoding.Json, true, ANONYMOUS);
    transport.connection = c;
    return { c, t: transport };
  };
  return { edge, policy, open, ...counts };
}

const request = (url = "/", headers: Record<string, string> = {}): ConnectRequest => ({ headers, url });
const never = () => false;
const refusalOf = async (a: ReturnType<ConnectionPolicy["admit"]>) => {
  const r = await a;
  return r.admitted ? undefined : r.refusal;
};

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("admission", () => {
  it("admits a request synchronously when nothing is to be authenticated, with echo, presence and events from the query", () => {
    const { policy } = setup();
    expect(policy.admit(request(), undefined, never)).toEqual({
      admitted: true,
      identity: ANONYMOUS,
      echo: true,
      presence: "single",
      eventBatches: false,
    });
    expect(policy.admit(request("/?events=batch"), undefined, never)).toMatchObject({ eventBatches: true });
    expect(policy.admit(request("/?events=single"), undefined, never)).toMatchObject({ eventBatches: false });
    expect(policy.admit(request("/?events=yes"), undefined, never)).toMatchObject({
      admitted: false,
      refusal: { status: 400, reason: "protocol", message: expect.stringMatching(/events must be single or batch/) },
    });
    expect(policy.admit(request("/?presence=batch"), undefined, never)).toMatchObject({ presence: "batch" });
    expect(policy.admit(request("/?presence=compact"), undefined, never)).toMatchObject({ presence: "compact" });
    expect(policy.admit(request("/?presence=single"), undefined, never)).toMatchObject({ presence: "single" });
    expect(policy.admit(request("/?presence=many"), undefined, never)).toMatchObject({
      admitted: false,
      refusal: {
        status: 400,
        reason: "protocol",
        message: expect.stringMatching(/presence must be single, batch or compact/),
      },
    });
    expect(policy.admit(request("/?echo=false"), undefined, never)).toMatchObject({ echo: false });
    expect(policy.admit(request("/?echo=true"), undefined, never)).toMatchObject({ echo: true });
  });

  it("refuses in the order of admission.ts: the first check that fails is the answer", async () => {
    const handshake: Refusal = { status: 400, reason: "protocol", message: "unsupported subprotocol x" };
    // Each failing condition, in the documented order; case k makes checks k.. fail.
    const conditions: { expect: [number, RefusalReason, RegExp] }[] = [
      { expect: [503, "shutdown", /shutting down/] },
      { expect: [403, "origin", /REALTIME_ALLOWED_HOSTS/] },
      { expect: [403, "origin", /REALTIME_WS_ORIGINS/] },
      { expect: [503, "unavailable", /REALTIME_OUTAGE_CLOSE_MS/] },
      { expect: [503, "limit", /holds 0 connections.*REALTIME_MAX_CONNECTIONS/] },
      { expect: [400, "protocol", /unsupported subprotocol x/] },
      { expect: [400, "protocol", /echo must be true or false, not "maybe"/] },
      { expect: [403, "auth", /bad token/] },
    ];
    for (let k = 0; k < conditions.length; k++) {
      const fails = (i: number) => i >= k;
      const { policy, refused } = setup({
        hosts: () => !fails(1),
        origins: () => !fails(2),
        outage: fails(3) ? { afterMs: 10, spreadMs: 0 } : undefined,
        maxConnections: fails(4) ? 0 : undefined,
        authenticate: () =>
          fails(7)
            ? Promise.reject(Object.assign(new Error("bad token"), { status: 403 }))
            : Promise.resolve(ANONYMOUS),
      });
      if (fails(3)) {
        policy.backendState(false);
        vi.advanceTimersByTime(10);
      }
      if (fails(0)) void policy.close();
      const r = await refusalOf(
        policy.admit(request(fails(6) ? "/?echo=maybe" : "/"), fails(5) ? handshake : undefined, never),
      );
      const [status, reason, message] = conditions[k]!.expect;
      expect(r, `case ${k}`).toMatchObject({ status, reason, message: expect.stringMatching(message) });
      expect(refused, `case ${k}`).toEqual([reason]);
    }
  });

  it("answers an authenticator's rejection with its status, 401 without one", async () => {
    const { policy } = setup({ authenticate: () => Promise.reject(new Error("a token is required")) });
    expect(await refusalOf(policy.admit(request(), undefined, never))).toEqual({
      status: 401,
      reason: "auth",
      message: "a token is required",
    });
  });

  it("counts requests being authenticated towards maxConnections", async () => {
    let pass!: (id: Identity) => void;
    const { policy, open } = setup({
      maxConnections: 2,
      authenticate: () => new Promise<Identity>((resolve) => (pass = resolve)),
    });
    open();
    const pending = policy.admit(request(), undefined, never);
    expect(await refusalOf(policy.admit(request(), undefined, never))).toMatchObject({ status: 503, reason: "limit" });
    pass({ ...ANONYMOUS, userId: "u" });
    expect(await pending).toMatchObject({ admitted: true, identity: { userId: "u" } });
  });

  it("refuses a request authenticated while the edge began to shut down; drops, uncounted, one whose client went away", async () => {
    let pass!: (id: Identity) => void;
    const { policy, refused } = setup({ authenticate: () => new Promise<Identity>((resolve) => (pass = resolve)) });
    const gone = policy.admit(request(), undefined, () => true);
    pass(ANONYMOUS);
    expect(await gone).toEqual({ admitted: false, refusal: undefined });
    expect(refused).toEqual([]);

    const late = policy.admit(request(), undefined, never);
    void policy.close();
    pass(ANONYMOUS);
    expect(await refusalOf(late)).toMatchObject({ status: 503, reason: "shutdown" });
    expect(refused).toEqual(["shutdown"]);
  });
});

describe("a connection", () => {
  it("is handed to the Edge, which writes to it through the transport", () => {
    const { open } = setup();
    const { t } = open();
    expect(new TextDecoder().decode(t.sent[0])).toBe("connected realtime.v1.json true ");
  });

  it("closes with 4001 on the frame that would overflow its queue; that frame and later ones are dropped", () => {
    const { open, dropped } = setup({ maxOutboundBytes: 100 });
    const { c, t } = open();
    t.answersClose = false;
    t.bufferedBytes = 0;
    c.send(new Uint8Array(60), false);
    c.send(new Uint8Array(40), false);
    expect(t.sent).toHaveLength(3);
    c.send(new Uint8Array(1), false);
    expect(t.closes).toEqual([[CloseCode.SlowConsumer, expect.stringMatching(/slow consumer/)]]);
    c.send(new Uint8Array(1), false);
    expect(t.sent).toHaveLength(3);
    expect(dropped).toEqual(["slow_consumer", "slow_consumer"]);
    // Its close waits behind its unread bytes: SLOW_CONSUMER_TERMINATE_MS without a heartbeat.
    vi.advanceTimersByTime(SLOW_CONSUMER_TERMINATE_MS - 1);
    expect(t.terminated).toBe(0);
    vi.advanceTimersByTime(1);
    expect(t.terminated).toBe(1);
  });

  it("gives a slow consumer the heartbeat's timeout to read its close frame, when there is a heartbeat", () => {
    const { open } = setup({ maxOutboundBytes: 10, heartbeat: { intervalMs: 60_000, timeoutMs: 7_000 } });
    const { c, t } = open();
    t.answersClose = false;
    c.send(new Uint8Array(11), false);
    vi.advanceTimersByTime(6_999);
    expect(t.terminated).toBe(0);
    vi.advanceTimersByTime(1);
    expect(t.terminated).toBe(1);
  });

  it("closing means stopping: after the decision nothing reaches the Edge, the first frame stops the reading, the socket goes after the timeout", async () => {
    const { open, edge, dropped } = setup();
    const { c, t } = open();
    t.answersClose = false;
    c.received(new Uint8Array([1]), true);
    expect(edge.received).toHaveLength(1);

    c.close(CloseCode.PolicyViolation, "error budget spent");
    c.close(CloseCode.TokenExpired, "token expired");
    expect(t.closes).toEqual([[CloseCode.PolicyViolation, "error budget spent"]]);
    c.received(new Uint8Array([2]), true);
    c.answered();
    expect(edge.received).toHaveLength(1);
    expect(t.stopped).toBe(2);
    c.send(new Uint8Array(1), true);
    expect(dropped).toEqual(["closed"]);

    vi.advanceTimersByTime(CLOSE_HANDSHAKE_TIMEOUT_MS - 1);
    expect(t.terminated).toBe(0);
    vi.advanceTimersByTime(1);
    expect(t.terminated).toBe(1);
    await Promise.resolve();
    // Recorded under the edge's decision, not the 1006 of the cut.
    expect(edge.disconnects).toEqual(["limit"]);
  });

  it("a close the transport made on its own is the decision: recorded with its code, the socket goes after the timeout", () => {
    const { open, edge } = setup();
    const { c, t } = open();
    expect(c.failed(CloseCode.BadFrame)).toBe(true);
    expect(c.failed(CloseCode.InvalidUtf8)).toBe(false);
    c.received(new Uint8Array([1]), false);
    expect(edge.received).toHaveLength(0);
    vi.advanceTimersByTime(CLOSE_HANDSHAKE_TIMEOUT_MS);
    expect(t.terminated).toBe(1);
    expect(edge.disconnects).toEqual(["protocol"]);

    // After the edge's own decision, the transport's close is not one.
    const other = open();
    other.t.answersClose = false;
    other.c.close(CloseCode.TokenExpired, "token expired");
    expect(other.c.failed(CloseCode.BadFrame)).toBe(false);
    other.t.end(1000);
    expect(edge.disconnects).toEqual(["protocol", "auth"]);
  });

  it("ends with the reason of the client's code when nothing was decided", () => {
    const { open, edge } = setup();
    open().t.end(1000);
    open().t.end(1001);
    open().t.end(1006);
    open().t.end(1011);
    expect(edge.disconnects).toEqual(["client", "client", "abnormal", "error"]);
  });
});

describe("heartbeat", () => {
  it("pings every interval; terminates, timeout later, whoever has not answered (4002); skips connections without a probe or closing", () => {
    const { open, edge } = setup({ heartbeat: { intervalMs: 1_000, timeoutMs: 300 } });
    const alive = open();
    const dead = open();
    const probeless = open(Object.assign(new MemoryTransport(), { ping: undefined }));
    const closing = open();
    closing.t.answersClose = false;
    closing.c.close(CloseCode.Shutdown, "bye");

    vi.advanceTimersByTime(1_000);
    expect([alive.t.pings, dead.t.pings, closing.t.pings]).toEqual([1, 1, 0]);
    alive.c.answered();
    vi.advanceTimersByTime(299);
    expect(dead.t.terminated).toBe(0);
    vi.advanceTimersByTime(1);
    expect(dead.t.terminated).toBe(1);
    expect(edge.disconnects).toEqual(["heartbeat"]);

    // Rounds later, the one that answers is still there, and so is the one without a probe.
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(700);
      alive.c.answered();
      vi.advanceTimersByTime(300);
    }
    expect(alive.t.terminated).toBe(0);
    expect(probeless.t.terminated).toBe(0);
    expect(alive.t.pings).toBe(4);
  });
});

describe("outage", () => {
  it("keeps clients through a short outage; past afterMs closes them with 4004, spread, and refuses until the backend is back", async () => {
    const { policy, open, edge } = setup({ outage: { afterMs: 1_000, spreadMs: 400 } });
    const clients = [open(), open(), open(), open()];
    policy.backendState(false);
    vi.advanceTimersByTime(999);
    policy.backendState(true);
    policy.backendState(false);
    vi.advanceTimersByTime(999);
    expect(clients.every(({ t }) => t.closes.length === 0)).toBe(true);

    vi.advanceTimersByTime(1);
    expect(await refusalOf(policy.admit(request(), undefined, never))).toMatchObject({
      status: 503,
      reason: "unavailable",
    });
    const start = Date.now();
    await vi.advanceTimersByTimeAsync(400);
    expect(clients.map(({ t }) => t.closes[0]?.[0])).toEqual([4004, 4004, 4004, 4004]);
    expect(edge.disconnects).toEqual(["unavailable", "unavailable", "unavailable", "unavailable"]);
    // One client in each slot of 100 ms.
    expect(clients.map(({ t }) => Math.floor((t.closedAt! - start) / 100))).toEqual([0, 1, 2, 3]);

    policy.backendState(true);
    expect(policy.admit(request(), undefined, never)).toMatchObject({ admitted: true });
  });

  it("does nothing with afterMs 0", () => {
    const { policy, open } = setup({ outage: { afterMs: 0, spreadMs: 0 } });
    const { t } = open();
    policy.backendState(false);
    vi.advanceTimersByTime(3_600_000);
    expect(t.closes).toEqual([]);
    expect(policy.admit(request(), undefined, never)).toMatchObject({ admitted: true });
  });
});

describe("shutdown", () => {
  it("closes every client with the code, spread over the window; resolves once every session has left", async () => {
    const { policy, open, edge } = setup({ heartbeat: { intervalMs: 100, timeoutMs: 50 } });
    const clients = Array.from({ length: 5 }, () => open());
    let left!: () => void;
    edge.leaveWith(new Promise<void>((resolve) => (left = resolve)));
    let done = false;
    const closed = policy.close(CloseCode.Shutdown, "edge shutting down: reconnect", 1_000);
    expect(policy.close()).toBe(closed);
    void closed.then(() => (done = true));

    const start = Date.now();
    await vi.advanceTimersByTimeAsync(1_000);
    // One client in each slot of 200 ms.
    expect(clients.map(({ t }) => Math.floor((t.closedAt! - start) / 200))).toEqual([0, 1, 2, 3, 4]);
    expect(clients.map(({ t }) => t.closes)).toEqual(
      clients.map(() => [[CloseCode.Shutdown, "edge shutting down: reconnect"]]),
    );
    expect(edge.disconnects).toEqual(["shutdown", "shutdown", "shutdown", "shutdown", "shutdown"]);
    // No heartbeat after the close began.
    expect(clients.map(({ t }) => t.pings)).toEqual([0, 0, 0, 0, 0]);
    expect(done).toBe(false);
    left();
    await closed;
    expect(done).toBe(true);
  });

  it("terminateAll destroys every open connection at once", () => {
    const { policy, open, edge } = setup();
    const clients = [open(), open()];
    policy.terminateAll();
    expect(clients.map(({ t }) => t.terminated)).toEqual([1, 1]);
    expect(edge.disconnects).toEqual(["abnormal", "abnormal"]);
  });
});
