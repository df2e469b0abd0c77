/** Small waits and assertions shared by the SDK's test files. */
import { expect } from "vitest";
import {
  RealtimeClientError,
  type ClientEncoding,
  type EncodingName,
  type RealtimeClient,
} from "../../src/client/index.js";
import { protoEncoding } from "../../src/client/proto.js";

/** The `encoding` option that selects an encoding by its name (proto is imported, as a user imports it). */
export function sdkEncoding(name: EncodingName): "json" | ClientEncoding {
  return name === "proto" ? protoEncoding : "json";
}

/** Polls cond until it holds; fails naming what it waited for. */
export async function waitFor(cond: () => boolean, what = "condition", timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves once the client is connected (at once if it is). */
export function connected(rt: RealtimeClient): Promise<void> {
  return new Promise((resolve) => (rt.isConnected() ? resolve() : rt.onConnect(() => resolve())));
}

/** The RealtimeClientError p rejects with; fails if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<RealtimeClientError> {
  const err = await p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RealtimeClientError);
  return err as RealtimeClientError;
}
