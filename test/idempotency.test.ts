/**
 * The idempotency seam's shared part (core/idempotency.ts) over the
 * in-memory store (core/idempotency-memory.ts), in memory with a clock the
 * test moves: what a retry is answered, what waits, what is forgotten and
 * what is refused. The same rules across processes and Redis are tested in
 * idempotent-publish.test.ts and redis-idempotency.test.ts.
 */
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { EventSchema } from "../gen/realtime/client/v1/client_pb.js";
import {
  checkIdempotencyKey,
  fingerprintOf,
  Idempotency,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  type ClaimState,
  type DoneKey,
  type HeldKey,
  type IdempotencyStore,
} from "../src/core/idempotency.js";
import { MemoryIdempotencyStore } from "../src/core/idempotency-memory.js";
import { createPublication } from "../src/core/publication.js";
import { Code, RealtimeError } from "../src/protocol/errors.js";

function setup(maxKeys = 100, windowMs = 1_000) {
  let now = 0;
  const store = new MemoryIdempotencyStore({ windowMs, maxKeys, now: () => now });
  const idem = new Idempotency({ store });
  return {
    store,
    idem,
    advance: (ms: number) => (now += ms),
  };
}

const held = (c: HeldKey | DoneKey): HeldKey => {
  expect(c.duplicate).toBe(false);
  return c as HeldKey;
};

function codeOf(err: unknown): Code | undefined {
  return err instanceof RealtimeError ? err.code : undefined;
}

describe("idempotency keys", () => {
  it("a retry after the first succeeded gets its result, without holding the key", async () => {
    const { idem } = setup();
    held(await idem.claim("", "k1", "fp")).complete({ messageId: "m1", edges: 2 });
    expect(await idem.claim("", "k1", "fp")).toEqual({ duplicate: true, result: { messageId: "m1", edges: 2 } });
    expect(await idem.claim("", "k1", "fp")).toEqual({ duplicate: true, result: { messageId: "m1", edges: 2 } });
  });

  it("a retry while the first is in flight waits for it: its result, or the key once it failed", async () => {
    const { idem } = setup();
    const first = held(await idem.claim("", "k", "fp"));
    let answered: HeldKey | DoneKey | undefined;
    const retry = idem.claim("", "k", "fp").then((c) => (answered = c));
    await new Promise((r) => setImmediate(r));
    expect(answered).toBeUndefined(); // still waiting
    first.complete({ messageId: "m", edges: 1 });
    expect(await retry).toEqual({ duplicate: true, result: { messageId: "m", edges: 1 } });

    // A first attempt that fails leaves no trace: the waiting retry holds the key then.
    const failing = held(await idem.claim("", "k2", "fp"));
    const retry2 = idem.claim("", "k2", "fp");
    failing.release();
    const second = held(await retry2);
    second.complete({ messageId: "m2", edges: 3 });
    expect(await idem.claim("", "k2", "fp")).toEqual({ duplicate: true, result: { messageId: "m2", edges: 3 } });
  });

  it("a failed attempt does not pin the key: the next one is tried afresh", async () => {
    const { idem, store } = setup();
    held(await idem.claim("", "k", "fp")).release();
    await new Promise((r) => setImmediate(r));
    expect(store.size).toBe(0);
    held(await idem.claim("", "k", "fp"));
  });

  it("the same key with another request is FAILED_PRECONDITION, in flight or done", async () => {
    const { idem } = setup();
    const first = held(await idem.claim("", "k", "fp-a"));
    await expect(idem.claim("", "k", "fp-b")).rejects.toMatchObject({
      code: Code.FailedPrecondition,
      message: expect.stringMatching(/different request.*not delivered.*new key/),
    });
    first.complete({ messageId: "m", edges: 1 });
    const err = await idem.claim("", "k", "fp-b").catch((e: unknown) => e);
    expect(codeOf(err)).toBe(Code.FailedPrecondition);
  });

  it("scopes keys: the same key in two scopes (API keys) is two keys", async () => {
    const { idem } = setup();
    held(await idem.claim("aaaaaaaa", "k", "fp")).complete({ messageId: "a", edges: 1 });
    const other = held(await idem.claim("bbbbbbbb", "k", "fp-other"));
    other.complete({ messageId: "b", edges: 1 });
    expect(await idem.claim("aaaaaaaa", "k", "fp")).toMatchObject({ result: { messageId: "a" } });
    expect(await idem.claim("", "k", "fp")).toMatchObject({ duplicate: false });
  });

  it("forgets a result once the window after its success has passed", async () => {
    const { idem, store, advance } = setup(100, 1_000);
    held(await idem.claim("", "k", "fp")).complete({ messageId: "m", edges: 1 });
    advance(999);
    expect((await idem.claim("", "k", "fp")).duplicate).toBe(true);
    advance(1);
    held(await idem.claim("", "k", "fp")); // a new event now
    // Expired entries are dropped from the front by later claims: no timer, no growth.
    for (let i = 0; i < 50; i++) held(await idem.claim("", `x${i}`, "fp")).complete({ messageId: "m", edges: 0 });
    advance(1_000);
    held(await idem.claim("", "y", "fp"));
    expect(store.size).toBe(2); // "k" in flight, and "y"
  });

  it("when full, refuses new keys with RESOURCE_EXHAUSTED and still answers the ones it holds", async () => {
    const { idem, advance } = setup(3, 1_000);
    for (const k of ["a", "b", "c"]) held(await idem.claim("", k, "fp")).complete({ messageId: k, edges: 1 });
    const err = await idem.claim("", "d", "fp").catch((e: unknown) => e);
    expect(codeOf(err)).toBe(Code.ResourceExhausted);
    expect((err as Error).message).toMatch(/REALTIME_IDEMPOTENCY_MAX_KEYS.*not delivered/);
    expect(await idem.claim("", "a", "fp")).toMatchObject({ duplicate: true, result: { messageId: "a" } });
    advance(1_000);
    held(await idem.claim("", "d", "fp")); // room again once the window passed
  });

  it("waits for an attempt in flight elsewhere (the store says pending) by polling, then takes its result", async () => {
    let state: ClaimState = { state: "pending", fingerprint: "fp" };
    let claims = 0;
    const store: IdempotencyStore = {
      claim: () => (claims++, Promise.resolve(state)),
      complete: () => Promise.resolve(),
      release: () => Promise.resolve(),
    };
    const sleeps: number[] = [];
    const idem = new Idempotency({
      store,
      sleep: (ms) => {
        sleeps.push(ms);
        if (sleeps.length === 8) state = { state: "done", fingerprint: "fp", result: { messageId: "m", edges: 4 } };
        return Promise.resolve();
      },
    });
    expect(await idem.claim("", "k", "fp")).toEqual({ duplicate: true, result: { messageId: "m", edges: 4 } });
    expect(claims).toBe(9);
    expect(sleeps).toEqual([5, 10, 20, 40, 80, 100, 100, 100]);
    // Cancelled while waiting: the wait ends with the signal's reason.
    state = { state: "pending", fingerprint: "fp" };
    const ac = new AbortController();
    const idem2 = new Idempotency({ store, sleep: () => (ac.abort(new Error("cancelled")), Promise.resolve()) });
    await expect(idem2.claim("", "k", "fp", ac.signal)).rejects.toThrow("cancelled");
  });

  it("takes keys of 1 to 128 characters of the channel alphabet, and names the limit otherwise", () => {
    for (const k of ["a", "4b1f0c2e-8d7a-4f3e-9c61-2a5b7d9e0f13", "order/17:try=2+x@y_z.w", "k".repeat(128)]) {
      expect(() => checkIdempotencyKey(k)).not.toThrow();
    }
    expect(() => checkIdempotencyKey("k".repeat(MAX_IDEMPOTENCY_KEY_LENGTH + 1))).toThrow(
      /idempotency_key is 129 characters long; the limit is 128/,
    );
    for (const k of ["a b", "é", "a\n", "a|b", "a,b"]) {
      expect(() => checkIdempotencyKey(k)).toThrow(/character outside/);
    }
  });

  it("fingerprints a request by its channel, event and payload, not by its event id", () => {
    const fp = (id: string, channel: string, event: string, text: string) => {
      const pub = createPublication(
        create(EventSchema, {
          id,
          channel,
          event,
          payload: { case: "binary", value: new TextEncoder().encode(text) },
        }),
        65_536,
      );
      return fingerprintOf(pub.event, id);
    };
    const base = fp("abc.1", "room", "chat", "hello");
    expect(base).toHaveLength(22);
    expect(fp("zzzzzzzz.1a2b3c", "room", "chat", "hello")).toBe(base);
    expect(fp("abc.1", "room2", "chat", "hello")).not.toBe(base);
    expect(fp("abc.1", "room", "chat2", "hello")).not.toBe(base);
    expect(fp("abc.1", "room", "chat", "hello!")).not.toBe(base);
    expect(fp("abc.1", "", "chat", "hello")).not.toBe(base); // a Broadcast
  });
});
