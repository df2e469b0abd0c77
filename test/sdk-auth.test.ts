/**
 * The SDK's tokens end to end: an edge that requires JWTs (HS256), the
 * `token` option as a function, refreshToken, and the reconnect after the
 * edge closes an expired connection with 4003.
 */
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import {
  CloseCode,
  ErrorCode,
  RealtimeClient,
  type DisconnectInfo,
  type MemberEvent,
  type RealtimeClientOptions,
} from "../src/client/index.js";
import { protoEncoding } from "../src/client/proto.js";
import { connected, rejection, waitFor } from "./helpers/sdk.js";

const SECRET = "sdk-auth-test-secret-0123456789abcdef";

/** A token for sub, valid for ttlSeconds, granting the private channels given. */
function token(sub: string, ttlSeconds = 3_600, channels: string[] = ["private:sdk-*"]): Promise<string> {
  return new SignJWT({ channels })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(SECRET));
}

let cluster: Cluster;
const clients: RealtimeClient[] = [];

function client(options: Partial<RealtimeClientOptions>): RealtimeClient {
  const rt = new RealtimeClient({
    url: cluster.ws[0]!,
    WebSocket,
    encoding: protoEncoding, // the binary frames these tests were written with, unless one says otherwise
    reconnect: { initialDelayMs: 50, maxDelayMs: 250 },
    ...options,
  });
  clients.push(rt);
  return rt;
}

beforeAll(async () => {
  cluster = await startCluster(1, { REALTIME_JWT_SECRET: SECRET });
}, 60_000);

afterEach(() => {
  for (const rt of clients.splice(0)) rt.close();
});

afterAll(async () => {
  await cluster?.stop();
  await stopAll();
}, 30_000);

describe("tokens", () => {
  it("connects with a token: members carry the user id; private channels need a grant", async () => {
    const alice = client({ token: () => token("alice") });
    const bob = client({ token: () => token("bob", 3_600, []) });
    await Promise.all([connected(alice), connected(bob)]);
    await alice.join("private:sdk-room");
    const denied = await rejection(bob.join("private:sdk-room"));
    expect(denied.code).toBe(ErrorCode.PermissionDenied);
    await bob.join("public-sdk-room");
    await alice.join("public-sdk-room");
    const members = await bob.getMembers("public-sdk-room");
    expect(members.map((m) => m.userId).sort()).toEqual(["alice", "bob"]);
  });

  it("refreshToken keeps an expiring connection open; a token for another user or a bad one is refused", async () => {
    const rt = client({ token: await token("carol", 2) });
    await connected(rt);
    const disconnects: DisconnectInfo[] = [];
    rt.onDisconnect((i) => disconnects.push(i));
    await rt.refreshToken(await token("carol"));
    expect((await rejection(rt.refreshToken(await token("mallory")))).code).toBe(ErrorCode.PermissionDenied);
    expect((await rejection(rt.refreshToken("not-a-jwt"))).code).toBe(ErrorCode.Unauthenticated);
    await new Promise((r) => setTimeout(r, 3_000)); // past the first token's exp
    expect(disconnects).toEqual([]);
    expect(rt.isConnected()).toBe(true);
  });

  it("after 4003 (token expired) it reconnects with a fresh token from the token function and restores its session", async () => {
    let issued = 0;
    const subject = client({
      // The first token expires in 2 s; later ones last.
      token: () => token("dave", issued++ === 0 ? 2 : 3_600),
    });
    const watcher = client({ token: () => token("erin") });
    await Promise.all([connected(subject), connected(watcher)]);
    const joins: MemberEvent[] = [];
    watcher.onJoin((e) => joins.push(e));
    await watcher.join("private:sdk-expiry");
    await subject.updateProfile({ name: "dave" });
    await subject.join("private:sdk-expiry");
    const firstId = subject.getSocketId();

    const disconnects: DisconnectInfo[] = [];
    subject.onDisconnect((i) => disconnects.push(i));
    await waitFor(() => disconnects.length > 0, "the 4003 close");
    expect(disconnects[0]).toMatchObject({ code: CloseCode.TokenExpired, willReconnect: true });
    await waitFor(() => subject.isConnected(), "the reconnect");
    expect(issued).toBe(2);
    const secondId = subject.getSocketId()!;
    expect(secondId).not.toBe(firstId);
    await waitFor(() => joins.some((e) => e.message.id === secondId), "the re-join");
    expect(joins.find((e) => e.message.id === secondId)).toEqual({
      channel: "private:sdk-expiry",
      message: { id: secondId, data: { name: "dave" }, userId: "dave" },
      position: { offset: expect.any(BigInt) as bigint, epoch: expect.any(String) as string },
    });
  });

  it("without a token the upgrade is refused (HTTP 401), which the SDK can only see as a dropped connection", async () => {
    const rt = client({ reconnect: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 } });
    const disconnects: DisconnectInfo[] = [];
    rt.onDisconnect((i) => disconnects.push(i));
    await waitFor(() => rt.getState() === "closed", "giving up");
    expect(disconnects).toEqual([{ code: 1006, reason: expect.any(String), willReconnect: false }]);
  });
});
