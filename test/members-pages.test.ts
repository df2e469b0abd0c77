/**
 * A client's getMembers comes in pages (protocol.md, GetMembers in
 * client.proto): no reply can close the asking client as a slow consumer,
 * and no members reply on the link can exceed the link's frame limit and
 * take the edge's whole link down. Against real processes; the members are
 * held by a fake edge on the link (test/helpers/fake-edge.ts) so that
 * hundreds of large profiles cost no WebSocket each.
 */
import type { Value } from "@bufbuild/protobuf/wkt";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { RealtimeClient } from "../src/client/index.js";
import { sdkEncoding } from "./helpers/sdk.js";
import { MAX_MEMBERS_PAGE_BYTES } from "../src/core/limits.js";
import { LINK_MAX_FRAME_BYTES } from "../src/wire/link-framing.js";
import { FakeEdge } from "./helpers/fake-edge.js";
import { useCluster } from "./helpers/fixture.js";
import { RawLink } from "./helpers/raw-link.js";
import { NO_REDIS, startTopology, testRedisUrl, uniquePrefix } from "./helpers/redis-topology.js";
import { TestClient, type Enc } from "./helpers/ws-client.js";

const text = (s: string): Value => ({ $typeName: "google.protobuf.Value", kind: { case: "stringValue", value: s } });
/** A profile of about 4 KB (the default profile limit is 4 KiB encoded). */
const profile4k = (n: number) => text(`${n}:`.padEnd(4000, "x"));
/** 4 KB encoded, six times that in JSON: every character is escaped as \u0001. */
const escaped4k = () => text("\u0001".repeat(4000));
/** The size, in bytes, of every reply frame a client received. */
function replySizes(c: TestClient): number[] {
  const sizes: number[] = [];
  c.ws.on("message", (data: Buffer) => sizes.push(data.length));
  return sizes;
}
/** The default outbound queue limit (REALTIME_MAX_OUTBOUND_BYTES). */
const MAX_OUTBOUND = 1024 * 1024;
/** A reply's bytes besides its members: its id and page token. */
const REPLY_OVERHEAD = 1024;

const fakes: FakeEdge[] = [];
const raws: RawLink[] = [];
afterAll(() => {
  for (const f of fakes) f.close();
  for (const r of raws) r.close();
});

describe("client getMembers pages", () => {
  const f = useCluster(1);
  const ids = (prefix: string, count: number) =>
    Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(6, "0")}`);

  async function fake(name: string): Promise<FakeEdge> {
    const e = await FakeEdge.connect(f.cluster.api.ready.link!, name);
    fakes.push(e);
    return e;
  }

  /** Walks every page of channel; fails if a reply is an error. */
  async function walk(c: TestClient, channel: string, pageSize?: number): Promise<{ ids: string[]; pages: number }> {
    const out: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const reply = await c.ok({ command: { case: "getMembers", value: { channel, pageSize, pageToken } } });
      out.push(...reply.members.map((m) => m.id));
      pageToken = reply.nextPageToken;
      pages++;
      expect(pages).toBeLessThan(1000);
    } while (pageToken !== "");
    return { ids: out, pages };
  }

  it("300 members with 4 KB profiles: the asking client is not closed and gets every member over pages", async () => {
    await (await fake("fake-4k")).addMembers(["big4k"], 300, "m", profile4k);
    for (const enc of ["json", "proto"] as Enc[]) {
      const c = await f.client(0, enc);
      const sizes = replySizes(c);
      // A client that sends no page fields (an older one) gets the first page, and a token for the next.
      const first = await c.ok({ command: { case: "getMembers", value: { channel: "big4k" } } });
      expect(first.members.length).toBeGreaterThan(0);
      expect(first.members.length).toBeLessThanOrEqual(100);
      expect(first.nextPageToken).not.toBe("");
      expect(first.members.map((m) => m.id)).toEqual(ids("m", 300).slice(0, first.members.length));
      expect((first.members[0]!.data!.kind.value as string).length).toBe(4000);
      const all = await walk(c, "big4k");
      expect(all.ids).toEqual(ids("m", 300));
      // The largest page asked for still fits the client's queue with room to spare.
      const big = await walk(c, "big4k", 1000);
      expect(big.ids).toEqual(ids("m", 300));
      expect(Math.max(...sizes)).toBeLessThan(MAX_OUTBOUND / 2);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MEMBERS_PAGE_BYTES + REPLY_OVERHEAD);
      expect(c.closeCode).toBeUndefined();
    }
  });

  it("a page is bounded in bytes too: profiles that JSON escapes to six times their size never close a JSON client", async () => {
    await (await fake("fake-esc")).addMembers(["escaped"], 100, "e", escaped4k);
    for (const enc of ["json", "proto"] as Enc[]) {
      const c = await f.client(0, enc);
      const sizes = replySizes(c);
      const all = await walk(c, "escaped");
      expect(all.ids).toEqual(ids("e", 100));
      expect(all.pages).toBeGreaterThan(enc === "json" ? 5 : 1);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(MAX_MEMBERS_PAGE_BYTES + REPLY_OVERHEAD);
      expect(c.closeCode).toBeUndefined();
    }
  });

  it("the SDK's getMembers reads every page; getMembersPage reads one", async () => {
    for (const encoding of ["json", "proto"] as const) {
      const rt = new RealtimeClient({ url: f.cluster.ws[0]!, WebSocket, encoding: sdkEncoding(encoding) });
      await new Promise<void>((resolve) => rt.onConnect(() => resolve()));
      const members = await rt.getMembers("big4k");
      expect(members.map((m) => m.id)).toEqual(ids("m", 300));
      expect((members[299]!.data as string).startsWith("299:")).toBe(true);
      const page = await rt.getMembersPage("big4k", { pageSize: 7 });
      expect(page.members.map((m) => m.id)).toEqual(ids("m", 7));
      const next = await rt.getMembersPage("big4k", { pageSize: 7, pageToken: page.nextPageToken });
      expect(next.members.map((m) => m.id)).toEqual(ids("m", 14).slice(7));
      rt.close();
    }
  });

  it("a page token from another channel is INVALID_ARGUMENT", async () => {
    const c = await f.client(0, "json");
    const first = await c.ok({ command: { case: "getMembers", value: { channel: "big4k", pageSize: 5 } } });
    const wrong = await c.request({
      command: { case: "getMembers", value: { channel: "escaped", pageToken: first.nextPageToken } },
    });
    expect(wrong.error?.code).toBe(3);
    expect(wrong.error?.message).toMatch(/channel/);
  });

  it("members totalling more than the link's frame limit: no link reply exceeds it, and the edge keeps its link", async () => {
    // 100 members of ~700 KB each: 70 MB, more than LINK_MAX_FRAME_BYTES (64 MiB).
    const size = 700_000;
    expect(100 * size).toBeGreaterThan(LINK_MAX_FRAME_BYTES);
    await (await fake("fake-huge")).addMembers(["huge"], 100, "h", (n) => text(`${n}:`.padEnd(size, "y")));
    const watcher = await f.client(0, "proto");
    await watcher.ok({ command: { case: "join", value: { channel: "after-huge" } } });

    // A client of the real edge: one page, and the edge's link stays up.
    const c = await f.client(0, "proto");
    const reply = await c.request({ command: { case: "getMembers", value: { channel: "huge", pageSize: 3 } } });
    expect(reply.error).toBeUndefined();
    expect(reply.members.length).toBeGreaterThanOrEqual(1);
    expect(reply.members[0]!.id).toBe("h000000");
    expect(reply.nextPageToken).not.toBe("");
    await f.api.send({ channel: "after-huge", event: "still-linked", payload: { case: "json", value: text("ok") } });
    await watcher.event("still-linked", "after-huge");
    expect((await fetch(`${f.cluster.ws[0]!.replace(/^ws/, "http")}/readyz`)).status).toBe(200);

    // On the link itself: pages are bounded and add up to everyone; the
    // old unbounded request fails instead of sending an oversize frame.
    const r = await RawLink.connect(f.cluster.api.ready.link!);
    raws.push(r);
    r.send({ id: 0, frame: { case: "hello", value: { edgeId: "raw-pager" } } });
    const seen: string[] = [];
    let after = "";
    for (;;) {
      const page = await r.request({ frame: { case: "membersPage", value: { channel: "huge", after, limit: 1000 } } });
      expect(page?.error).toBeUndefined();
      seen.push(...page!.members.map((m) => m.id));
      if (!page!.more) break;
      after = page!.members.at(-1)!.id;
    }
    expect(seen).toEqual(ids("h", 100));
    const legacy = await r.request({ frame: { case: "members", value: "huge" } }, 20_000);
    expect(r.readError).toBeUndefined();
    expect(legacy?.error?.code).toBe(8);
    expect(Math.max(...r.sizes)).toBeLessThanOrEqual(LINK_MAX_FRAME_BYTES);
    expect(r.closedAt).toBeUndefined();
  }, 60_000);
});

describe.skipIf(NO_REDIS)("client getMembers pages in Redis mode", () => {
  const prefix = uniquePrefix("members-pages");
  it("pages by id over Redis too", async () => {
    const t = await startTopology(1, 1, { REALTIME_REDIS_URL: testRedisUrl(), REALTIME_REDIS_PREFIX: prefix });
    const clients: TestClient[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        const c = await TestClient.connect(t.ws[0]!, "json");
        await c.ok({ command: { case: "join", value: { channel: "paged" } } });
        clients.push(c);
      }
      const asker = clients[0]!;
      const seen: string[] = [];
      let pageToken = "";
      do {
        const reply = await asker.ok({
          command: { case: "getMembers", value: { channel: "paged", pageSize: 5, pageToken } },
        });
        expect(reply.members.length).toBeLessThanOrEqual(5);
        seen.push(...reply.members.map((m) => m.id));
        pageToken = reply.nextPageToken;
      } while (pageToken !== "");
      expect(seen).toEqual(clients.map((c) => c.id).sort());
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await t.stop();
    }
  }, 60_000);
});
