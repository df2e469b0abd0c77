/**
 * Client tokens at the edge: verified at the upgrade (HTTP 401, no
 * connection, when missing or bad), the subject is the user id beside the
 * connection id, private channels need a grant, an expired token closes the
 * connection with 4003 unless refreshed, anonymous connections only where
 * configured, HS256 / RS256 (PEM) / ES256 (JWKS), client send and broadcast
 * permissions. Real API and edge processes on port 0.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect as connectTcp } from "node:net";
import { join } from "node:path";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../gen/realtime/client/v1/client_pb.js";
import { TOKEN_CLOCK_SKEW_MS } from "../src/core/identity.js";
import { startCluster, startProcess, stopAll, type Cluster } from "./helpers/cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./helpers/grpc-client.js";
import { hs256, SECRET, upgrade } from "./helpers/trust.js";
import { sleep, TestClient } from "./helpers/ws-client.js";

let cluster: Cluster;
let api: RealtimeTestClient;
let dir: string;
let rsa: Awaited<ReturnType<typeof generateKeyPair>>;
let es: Awaited<ReturnType<typeof generateKeyPair>>;
const clients: TestClient[] = [];
/** edge 0: HS256 required; edge 1: HS256 or anonymous, client send off; edge 2: RS256 PEM + ES256 JWKS. */
const SECURED = 0;
const ANON = 1;
const PUBLIC_KEYS = 2;

async function connect(edge: number, token?: string, enc: "json" | "proto" = "json"): Promise<TestClient> {
  const c = await TestClient.connect(cluster.ws[edge]!, enc, token === undefined ? "" : `/?token=${token}`);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "switchboard-auth-"));
  rsa = await generateKeyPair("RS256", { extractable: true });
  es = await generateKeyPair("ES256", { extractable: true });
  writeFileSync(join(dir, "rsa.pem"), await exportSPKI(rsa.publicKey));
  writeFileSync(
    join(dir, "jwks.json"),
    JSON.stringify({ keys: [{ ...(await exportJWK(es.publicKey)), kid: "es-1", alg: "ES256", use: "sig" }] }),
  );
  cluster = await startCluster(0);
  await cluster.addEdge({ REALTIME_JWT_SECRET: SECRET });
  await cluster.addEdge({
    REALTIME_JWT_SECRET: SECRET,
    REALTIME_ALLOW_ANONYMOUS: "true",
    REALTIME_ALLOW_CLIENT_SEND: "false",
  });
  await cluster.addEdge({
    REALTIME_JWT_PUBLIC_KEY_FILE: join(dir, "rsa.pem"),
    REALTIME_JWT_JWKS_FILE: join(dir, "jwks.json"),
  });
  api = realtimeClient(cluster.grpc);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  api?.close();
  await cluster?.stop();
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe("at the upgrade", () => {
  it("refuses missing, forged, expired and malformed tokens with 401 and no connection", async () => {
    const url = cluster.ws[SECURED]!;
    const header = (obj: object) => Buffer.from(JSON.stringify(obj)).toString("base64url");
    const cases: [string, Promise<{ status: number; body: string }>, RegExp][] = [
      ["missing", upgrade(url), /a token is required/],
      [
        "forged (other secret)",
        hs256({ sub: "mallory" }, 600, "another-secret-0123456789-0123456789-0123").then((t) =>
          upgrade(`${url}/?token=${t}`),
        ),
        /signature does not verify/,
      ],
      ["expired", hs256({ sub: "alice" }, -60).then((t) => upgrade(`${url}/?token=${t}`)), /expired/],
      [
        "expired beyond the clock skew",
        hs256({ sub: "alice" }, -(TOKEN_CLOCK_SKEW_MS / 1000) - 1).then((t) => upgrade(`${url}/?token=${t}`)),
        /expired/,
      ],
      ["alg none", upgrade(`${url}/?token=${header({ alg: "none" })}.${header({ sub: "root" })}.`), /invalid token/],
      ["no subject", hs256({}).then((t) => upgrade(`${url}/?token=${t}`)), /sub/],
      ["not a JWT", upgrade(`${url}/?token=hello`), /not a well-formed JWT/],
      ["malformed Authorization", upgrade(url, { headers: { authorization: "Basic abc" } }), /Bearer/],
      [
        "two tokens",
        hs256({ sub: "alice" }).then((t) => upgrade(`${url}/?token=${t}&token=${t}`)),
        /more than one token/,
      ],
      [
        "bad channels claim",
        hs256({ sub: "alice", channels: "private:x" as never }).then((t) => upgrade(`${url}/?token=${t}`)),
        /channels claim/,
      ],
    ];
    for (const [name, attempt, reason] of cases) {
      const res = await attempt;
      expect({ name, status: res.status }).toEqual({ name, status: 401 });
      expect(res.body, name).toMatch(reason);
    }
  });

  it("accepts a valid token from the query or the Authorization header", async () => {
    const token = await hs256({ sub: "alice" });
    const viaHeader = await upgrade(cluster.ws[SECURED]!, { headers: { authorization: `Bearer ${token}` } });
    expect(viaHeader.status).toBe(101);
    viaHeader.ws!.close();
    const viaQuery = await upgrade(`${cluster.ws[SECURED]!}/?token=${token}`);
    expect(viaQuery.status).toBe(101);
    viaQuery.ws!.close();
  });
});

describe("abrupt clients", () => {
  it("survives upgrades reset while their token is verified or after their refusal", async () => {
    const { hostname, port } = new URL(cluster.ws[SECURED]!);
    const good = await hs256({ sub: "reset" });
    await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) =>
          new Promise<void>((resolve) => {
            const token = i % 2 ? good : "bad";
            const socket = connectTcp(Number(port), hostname, () => {
              socket.write(
                `GET /?token=${token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
              );
              setTimeout(() => socket.resetAndDestroy(), i % 4);
            });
            socket.on("error", () => {});
            socket.on("close", () => resolve());
          }),
      ),
    );
    await sleep(200);
    expect(cluster.edges[SECURED]!.child.exitCode).toBeNull();
    const c = await connect(SECURED, good);
    expect(c.id).not.toBe("");
  });
});

describe("identity", () => {
  it("shows the token's subject as user_id beside the connection id, in GetMembers and system events", async () => {
    const alice = await connect(SECURED, await hs256({ sub: "alice" }));
    const bob = await connect(SECURED, await hs256({ sub: "bob@example.com" }), "proto");
    await alice.ok({ command: { case: "join", value: { channel: "who" } } });
    await bob.ok({ command: { case: "join", value: { channel: "who" } } });
    const joined = await alice.event("channel:join", "who");
    expect(joined.payload.case === "member" && joined.payload.value).toMatchObject({
      id: expect.any(String),
      userId: expect.stringMatching(/alice|bob@example.com/),
    });
    const res = await api.getMembers({ channel: "who" });
    expect(res.members.map((m) => [m.id, m.userId]).sort()).toEqual(
      [
        [alice.id, "alice"],
        [bob.id, "bob@example.com"],
      ].sort(),
    );
    const reply = await bob.ok({ command: { case: "getMembers", value: { channel: "who" } } });
    expect(reply.members.map((m) => m.userId).sort()).toEqual(["alice", "bob@example.com"]);
  });
});

describe("private channels", () => {
  it("need a grant in the token: exact names or prefix* patterns; denials are PERMISSION_DENIED replies", async () => {
    const granted = await connect(
      SECURED,
      await hs256({ sub: "carol", channels: ["private:team-1:*", "private:dm-7"] }),
    );
    const plain = await connect(SECURED, await hs256({ sub: "dave" }));
    const join = (c: TestClient, channel: string) => c.request({ command: { case: "join", value: { channel } } });
    expect((await join(granted, "private:team-1:general")).error).toBeUndefined();
    expect((await join(granted, "private:dm-7")).error).toBeUndefined();
    expect((await join(granted, "public-room")).error).toBeUndefined();
    for (const channel of ["private:team-2:general", "private:dm-77", "private:team-1"]) {
      expect((await join(granted, channel)).error?.code, channel).toBe(ErrorCode.PERMISSION_DENIED);
    }
    expect((await join(plain, "private:dm-7")).error).toMatchObject({
      code: ErrorCode.PERMISSION_DENIED,
      message: expect.stringMatching(/private/),
    });
    expect((await join(plain, "public-room")).error).toBeUndefined();
    const members = await plain.request({ command: { case: "getMembers", value: { channel: "private:dm-7" } } });
    expect(members.error?.code).toBe(ErrorCode.PERMISSION_DENIED);
    const send = await plain.request({
      command: {
        case: "send",
        value: {
          channel: "private:dm-7",
          event: "e",
          payload: { case: "json", value: { kind: { case: "numberValue", value: 1 } } },
        },
      },
    });
    expect(send.error?.code).toBe(ErrorCode.PERMISSION_DENIED);
    // The private channel never saw dave.
    expect((await api.getMembers({ channel: "private:dm-7" })).members.map((m) => m.userId)).toEqual(["carol"]);
  });
});

describe("expiry and refresh", () => {
  it("closes a connection whose token expires with 4003", async () => {
    const c = await connect(SECURED, await hs256({ sub: "erin" }, 2));
    await c.ok({ command: { case: "join", value: { channel: "expiry" } } });
    const watcher = await connect(SECURED, await hs256({ sub: "watcher" }));
    await watcher.ok({ command: { case: "join", value: { channel: "expiry" } } });
    const started = Date.now();
    await c.closed;
    expect(c.closeCode).toBe(4003);
    expect(Date.now() - started).toBeLessThan(2_000 + TOKEN_CLOCK_SKEW_MS + 1_500);
    // It left its channels like any closed connection.
    const left = await watcher.event("channel:leave", "expiry");
    expect(left.payload.case === "member" && left.payload.value.userId).toBe("erin");
  });

  it("keeps a connection open past its first expiry when it refreshed in time; refuses bad refreshes", async () => {
    // Echo off: the edge's own removal of a channel is told to the client all the same.
    const c = await connect(SECURED, `${await hs256({ sub: "frank", channels: ["private:frank"] }, 2)}&echo=false`);
    await c.ok({ command: { case: "join", value: { channel: "private:frank" } } });
    const refresh = (token: string) => c.request({ command: { case: "refresh", value: { token } } });
    expect((await refresh("not-a-jwt")).error?.code).toBe(ErrorCode.UNAUTHENTICATED);
    expect((await refresh(await hs256({ sub: "frank" }, -60))).error).toMatchObject({
      code: ErrorCode.UNAUTHENTICATED,
      message: expect.stringMatching(/expired/),
    });
    expect((await refresh(await hs256({ sub: "mallory" }, 600))).error?.code).toBe(ErrorCode.PERMISSION_DENIED);
    // A good refresh without the grant: the connection stays, the private channel is left, and it is told.
    expect((await refresh(await hs256({ sub: "frank" }, 600))).error).toBeUndefined();
    await c.event("channel:leave", "private:frank");
    // Past the first token's exp and the skew.
    await sleep(2_000 + TOKEN_CLOCK_SKEW_MS + 500);
    expect(c.closeCode).toBeUndefined();
    expect((await c.request({ command: { case: "ping", value: {} } })).error).toBeUndefined();
  });
});

describe("clock skew (TOKEN_CLOCK_SKEW_MS, 5 s, docs/security.md)", () => {
  const nowS = () => Math.floor(Date.now() / 1000);
  /** An HS256 token with exactly these claims (no iat unless given). */
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(SECRET));

  it("at the upgrade: exp counts the skew; iat and nbf may be ahead by the skew, no more", async () => {
    const url = cluster.ws[SECURED]!;
    const cases: [string, Record<string, unknown>, number, RegExp?][] = [
      ["expired 1 to 2 s ago", { sub: "skew", exp: nowS() - 1 }, 101],
      ["expired 7 to 8 s ago", { sub: "skew", exp: nowS() - 7 }, 401, /expired/],
      ["issued 2 s ahead", { sub: "skew", iat: nowS() + 2 }, 101],
      ["issued a day ahead", { sub: "skew", iat: nowS() + 86_400 }, 401, /iat claim is in the future/],
      ["not before 2 s ahead", { sub: "skew", nbf: nowS() + 2 }, 101],
      ["not before a day ahead", { sub: "skew", nbf: nowS() + 86_400 }, 401, /nbf/],
    ];
    for (const [name, claims, status, reason] of cases) {
      const res = await upgrade(`${url}/?token=${await token(claims)}`);
      res.ws?.close();
      expect({ name, status: res.status }).toEqual({ name, status });
      if (reason) expect(res.body, name).toMatch(reason);
    }
  });

  it("an open connection is closed with 4003 at exp plus the skew, not at exp", async () => {
    const exp = nowS() + 1;
    const c = await connect(SECURED, await token({ sub: "skew-open", exp }));
    await sleep(exp * 1000 + TOKEN_CLOCK_SKEW_MS - 1_500 - Date.now());
    expect(c.closeCode).toBeUndefined();
    await c.closed;
    const closedAt = Date.now();
    expect(c.closeCode).toBe(4003);
    expect(closedAt).toBeGreaterThanOrEqual(exp * 1000 + TOKEN_CLOCK_SKEW_MS - 50);
    expect(closedAt).toBeLessThan(exp * 1000 + TOKEN_CLOCK_SKEW_MS + 1_500);
  });

  it("on refresh: a token within the skew past its exp is accepted, one issued a day ahead is not", async () => {
    const c = await connect(SECURED, await hs256({ sub: "skew-refresh" }));
    const refresh = async (claims: Record<string, unknown>) =>
      (await c.request({ command: { case: "refresh", value: { token: await token(claims) } } })).error;
    expect(await refresh({ sub: "skew-refresh", exp: nowS() - 1 })).toBeUndefined();
    expect(await refresh({ sub: "skew-refresh", iat: nowS() + 86_400, exp: nowS() + 600 })).toMatchObject({
      code: ErrorCode.UNAUTHENTICATED,
      message: expect.stringMatching(/iat/),
    });
    expect(await refresh({ sub: "skew-refresh", exp: nowS() - 7 })).toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });
});

describe("anonymous connections", () => {
  it("are allowed only where configured: no user id, public channels only; a bad token is still refused", async () => {
    expect((await upgrade(cluster.ws[SECURED]!)).status).toBe(401);
    const anon = await connect(ANON);
    expect((await anon.request({ command: { case: "join", value: { channel: "lobby-anon" } } })).error).toBeUndefined();
    expect((await anon.request({ command: { case: "join", value: { channel: "private:x" } } })).error?.code).toBe(
      ErrorCode.PERMISSION_DENIED,
    );
    expect((await api.getMembers({ channel: "lobby-anon" })).members).toMatchObject([{ id: anon.id, userId: "" }]);
    expect((await upgrade(`${cluster.ws[ANON]!}/?token=garbage`)).status).toBe(401);
    expect(
      (await anon.request({ command: { case: "refresh", value: { token: await hs256({ sub: "someone" }) } } })).error
        ?.code,
    ).toBe(ErrorCode.PERMISSION_DENIED);
  });
});

describe("public-key tokens", () => {
  it("accept RS256 signed with the PEM key's pair and ES256 with a JWKS key; refuse the rest", async () => {
    const url = cluster.ws[PUBLIC_KEYS]!;
    const exp = Math.floor(Date.now() / 1000) + 600;
    const rs = await new SignJWT({ sub: "rs-user" })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(exp)
      .sign(rsa.privateKey);
    const esToken = await new SignJWT({ sub: "es-user" })
      .setProtectedHeader({ alg: "ES256", kid: "es-1" })
      .setExpirationTime(exp)
      .sign(es.privateKey);
    const other = await generateKeyPair("RS256");
    const wrongKey = await new SignJWT({ sub: "rs-user" })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime(exp)
      .sign(other.privateKey);
    const unknownKid = await new SignJWT({ sub: "es-user" })
      .setProtectedHeader({ alg: "ES256", kid: "nope" })
      .setExpirationTime(exp)
      .sign(es.privateKey);
    const hs = await hs256({ sub: "hs-user" });
    const a = await connect(PUBLIC_KEYS, rs);
    const b = await connect(PUBLIC_KEYS, esToken, "proto");
    await a.ok({ command: { case: "join", value: { channel: "pk" } } });
    await b.ok({ command: { case: "join", value: { channel: "pk" } } });
    expect((await api.getMembers({ channel: "pk" })).members.map((m) => m.userId).sort()).toEqual([
      "es-user",
      "rs-user",
    ]);
    for (const [name, token] of [
      ["wrong key", wrongKey],
      ["unknown kid", unknownKid],
      ["HS256 without a secret", hs],
    ] as const) {
      expect((await upgrade(`${url}/?token=${token}`)).status, name).toBe(401);
    }
  });
});

describe("client permissions", () => {
  it("clients may not broadcast by default, and sending can be switched off", async () => {
    const c = await connect(SECURED, await hs256({ sub: "gina" }));
    const payload = { case: "json" as const, value: { kind: { case: "numberValue" as const, value: 1 } } };
    const b = await c.request({ command: { case: "broadcast", value: { event: "e", payload } } });
    expect(b.error).toMatchObject({
      code: ErrorCode.PERMISSION_DENIED,
      message: expect.stringMatching(/REALTIME_ALLOW_CLIENT_BROADCAST/),
    });
    await c.ok({ command: { case: "join", value: { channel: "chat" } } });
    expect(
      (await c.request({ command: { case: "send", value: { channel: "chat", event: "e", payload } } })).error,
    ).toBeUndefined();
    const anon = await connect(ANON);
    await anon.ok({ command: { case: "join", value: { channel: "chat" } } });
    const s = await anon.request({ command: { case: "send", value: { channel: "chat", event: "e", payload } } });
    expect(s.error).toMatchObject({
      code: ErrorCode.PERMISSION_DENIED,
      message: expect.stringMatching(/REALTIME_ALLOW_CLIENT_SEND/),
    });
  });
});

describe("secure by default", () => {
  it("an edge without a token key refuses to listen beyond loopback, and says how to fix it", async () => {
    await expect(
      startProcess("edge", {
        REALTIME_WS_HOST: "0.0.0.0",
        REALTIME_WS_PORT: "0",
        REALTIME_LINK_URL: cluster.api.ready.link!,
      }),
    ).rejects.toThrow(/refusing to listen on 0\.0\.0\.0 without authentication: set REALTIME_JWT_SECRET/);
  }, 30_000);

  it("refuses a short HS256 secret at start", async () => {
    await expect(
      startProcess("edge", {
        REALTIME_WS_PORT: "0",
        REALTIME_LINK_URL: cluster.api.ready.link!,
        REALTIME_JWT_SECRET: "short",
      }),
    ).rejects.toThrow(/REALTIME_JWT_SECRET.*at least 32/);
  }, 30_000);
});
