/**
 * The pure rules of src/auth, where a slip would open a door: the API key
 * syntax and its comparison, what counts as loopback, channel grant
 * patterns, and the token verifier's refusal of algorithm confusion.
 */
import { createSecretKey, generateKeyPairSync } from "node:crypto";
import { Code, type ConnectError } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { ApiKeyring, parseApiKeys } from "../src/auth/api-keys.js";
import { checkExposure, isLoopback } from "../src/auth/exposure.js";
import { ChannelGrants } from "../src/core/identity.js";
import { createTokenVerifier } from "../src/auth/tokens.js";

const K1 = "k1-0123456789abcdef0123";
const K2 = "k2-0123456789abcdef0123";

function code(fn: () => unknown): Code | "ok" {
  try {
    fn();
    return "ok";
  } catch (err) {
    return (err as ConnectError).code;
  }
}

describe("REALTIME_API_KEYS", () => {
  it("parses keys separated by commas, spaces or newlines, with scopes joined by +", () => {
    const keys = parseApiKeys(` ${K1},${K2}:publish+GetMembers\n`);
    expect(keys).toHaveLength(2);
    expect(keys[0]!.methods).toBeUndefined();
    expect([...keys[1]!.methods!].sort()).toEqual(["Broadcast", "GetMembers", "Publish", "Send", "SendBatch"]);
    expect(parseApiKeys(`${K1}:*`)[0]!.methods).toBeUndefined();
    expect(parseApiKeys("")).toEqual([]);
  });

  it("refuses short keys, bad characters, unknown scopes and duplicates, without quoting the key", () => {
    for (const [raw, why] of [
      ["short", /16 to 256/],
      [`${K1}!`, /may only use/],
      [`${K1}:write`, /scope 1 after the colon is unknown/],
      [`${K1},${K1}`, /appears twice/],
      [`${K1}:`, /scope 1 after the colon is unknown/],
    ] as const) {
      expect(() => parseApiKeys(raw)).toThrow(why);
      try {
        parseApiKeys(raw);
      } catch (err) {
        expect((err as Error).message).not.toContain(K1);
      }
    }
  });

  it("authorizes only exact keys, only as Bearer, only within scope", () => {
    const ring = new ApiKeyring(parseApiKeys(`${K1}, ${K2}:presence`));
    expect(code(() => ring.authorize(`Bearer ${K1}`, "Send"))).toBe("ok");
    expect(code(() => ring.authorize(`bearer  ${K1} `, "Send"))).toBe("ok");
    expect(code(() => ring.authorize(`Bearer ${K2}`, "WatchChannel"))).toBe("ok");
    expect(code(() => ring.authorize(`Bearer ${K2}`, "Send"))).toBe(Code.PermissionDenied);
    for (const header of [
      null,
      "",
      K1,
      `Basic ${K1}`,
      `Bearer ${K1}x`,
      `Bearer ${K1.slice(1)}`,
      `Bearer ${K1} ${K2}`,
      "Bearer ",
    ]) {
      expect(
        code(() => ring.authorize(header, "Send")),
        String(header),
      ).toBe(Code.Unauthenticated);
    }
    expect(new ApiKeyring([]).authorize(null, "Send")).toBeUndefined();
  });
});

describe("exposure", () => {
  it("knows loopback from everything else", () => {
    for (const h of [
      "127.0.0.1",
      "127.1.2.3",
      "::1",
      "[::1]",
      "localhost",
      "LOCALHOST",
      "api.localhost",
      "::ffff:127.0.0.1",
    ])
      expect(isLoopback(h), h).toBe(true);
    for (const h of [
      "0.0.0.0",
      "::",
      "10.0.0.1",
      "192.168.1.1",
      "example.com",
      "localhost.example.com",
      "128.0.0.1",
      "::2",
    ])
      expect(isLoopback(h), h).toBe(false);
  });

  it("refuses non-loopback without credentials unless insecure", () => {
    expect(checkExposure(["0.0.0.0"], false, false, "fix")).toMatchObject({
      ok: false,
      message: expect.stringMatching(/0\.0\.0\.0.*fix.*REALTIME_INSECURE/),
    });
    expect(checkExposure(["127.0.0.1", "10.0.0.1"], false, false, "fix")).toMatchObject({ ok: false });
    expect(checkExposure(["0.0.0.0"], false, true, "fix")).toEqual({ ok: true, mode: "insecure" });
    expect(checkExposure(["0.0.0.0"], true, false, "fix")).toEqual({ ok: true, mode: "secured" });
    expect(checkExposure(["127.0.0.1", "localhost"], false, false, "fix")).toEqual({ ok: true, mode: "loopback" });
  });
});

describe("channel grants", () => {
  it("match exact names, and prefixes only with a trailing *", () => {
    const g = new ChannelGrants(["private:a", "private:team-1:*"]);
    expect(g.allows("private:a")).toBe(true);
    expect(g.allows("private:ab")).toBe(false);
    expect(g.allows("private:team-1:x")).toBe(true);
    expect(g.allows("private:team-1:")).toBe(true);
    expect(g.allows("private:team-10")).toBe(false);
    expect(new ChannelGrants(["private:*x"]).allows("private:anything")).toBe(false);
    expect(new ChannelGrants(["*"]).allows("private:anything")).toBe(true);
    expect(new ChannelGrants([]).allows("private:a")).toBe(false);
  });
});

describe("token verifier", () => {
  it("refuses HS256 tokens signed with the public key's bytes (algorithm confusion) and alg none", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const verifier = createTokenVerifier({ publicKeyPem: pem });
    expect(verifier.algorithms).toEqual(["RS256"]);
    const confused = await new SignJWT({ sub: "x" })
      .setProtectedHeader({ alg: "HS256" })
      .sign(createSecretKey(Buffer.from(pem)));
    await expect(verifier.verify(confused)).rejects.toThrow(/HS256 are not accepted|alg/);
    const none = `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from('{"sub":"x"}').toString("base64url")}.`;
    await expect(verifier.verify(none)).rejects.toThrow();
    const good = await new SignJWT({ sub: "x", channels: ["private:x"] })
      .setProtectedHeader({ alg: "RS256" })
      .setExpirationTime("1m")
      .sign(privateKey);
    const id = await verifier.verify(good);
    expect(id.userId).toBe("x");
    expect(id.grants.allows("private:x")).toBe(true);
    expect(id.expiresAt! - Date.now()).toBeGreaterThan(50_000);
  });

  it("refuses to start with an unusable key", () => {
    expect(() => createTokenVerifier({ secret: "short" })).toThrow(/at least 32/);
    expect(() => createTokenVerifier({ publicKeyPem: "not a key" })).toThrow(/PEM/);
    const ed = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
    expect(() => createTokenVerifier({ publicKeyPem: ed })).toThrow(/RSA.*EC P-256/);
    expect(() => createTokenVerifier({})).toThrow(/no token key/);
  });
});
