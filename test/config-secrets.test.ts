/**
 * Secrets stay secret: a bad value of a setting marked `secret` in the one
 * schema (config.ts) is refused with the setting's name and the rule it
 * broke, and no part of the value (the valid keys beside a bad one
 * included), from the environment or a flag, in loadConfig's error and on
 * the real CLI's stderr. Logs censor the secret settings' fields.
 *
 * A setting marked secret needs its bad values here: the test refuses a
 * secret setting it has no case for.
 *
 * The command suggested for making a key or a secret
 * (GENERATE_SECRET_COMMAND, and every `openssl rand` in the docs) runs here
 * (OpenSSL 3.0 has no -base64url) and its output passes the configuration.
 */
import { execSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { GENERATE_SECRET_COMMAND } from "../src/auth/secret-command.js";
import { flagOf, loadConfigWithFlags, parseArgs } from "../src/config-args.js";
import { ConfigError, loadConfig, SECRET_KEYS, SETTINGS } from "../src/config.js";
import { REDACTED_PATHS } from "../src/log.js";
import { ROOT } from "./helpers/cluster.js";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));
const VALID_KEY = "Zq9xLm2Wv8RtY4uB3nK7";
const OTHER_KEY = "Hj5Gf6Dd8Ss1Aa2Qw3Ee";
/** The shortest run of a value that counts as a part of it. */
const PART = 5;

/** Bad values of every secret setting, each with the rule its error must name. */
const BAD: Record<string, [value: string, rule: RegExp][]> = {
  apiKeys: [
    [`${VALID_KEY}, tiny`, /entry 2 of 2: a key must be 16 to 256 characters/],
    [`${VALID_KEY}:${OTHER_KEY}`, /entry 1 of 1: scope 1 after the colon is unknown/],
    [`${VALID_KEY}:publsh`, /scope 1 after the colon is unknown/],
    [`${OTHER_KEY}, ${VALID_KEY}!`, /entry 2 of 2: a key may only use/],
    [`${VALID_KEY}, ${VALID_KEY}`, /the same key appears twice/],
  ],
  jwtSecret: [["Sh0rtS3cr3tValueQQ", /must be at least 32 characters/]],
  linkSecret: [["Sh0rtL1nkS3cretQQ", /must be at least 32 characters/]],
  redisUrl: [
    ["http://svc:Pa55w0rdZZq@cache.internal:6379", /must be a Redis URL/],
    ["redis://svc:Pa55w0rdZZq@ cache", /must be a Redis URL/],
  ],
};

function refusal(load: () => unknown): string {
  try {
    load();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("the value was accepted");
}

/**
 * The runs of PART characters of value that text contains, but for those
 * that `baseline` (the same refusal of an unrelated value) contains too:
 * the setting's name and rule, as "redis://" in the Redis URL's rule.
 */
function partsIn(text: string, value: string, baseline = ""): string[] {
  const out = new Set<string>();
  for (let i = 0; i + PART <= value.length; i++) {
    const part = value.slice(i, i + PART);
    if (text.includes(part) && !baseline.includes(part)) out.add(part);
  }
  return [...out];
}

/** An unrelated value every secret setting refuses. */
const UNRELATED = "~";

function cli(args: string[], env: NodeJS.ProcessEnv) {
  const res = spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, REALTIME_LOG_LEVEL: "warn", ...env },
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: res.status, output: res.stdout + res.stderr };
}

describe("secret settings", () => {
  it("are marked in the schema: API keys, the JWT secret, the Redis URL (it may hold a password), and each has cases here", () => {
    expect(SECRET_KEYS).toEqual(expect.arrayContaining(["apiKeys", "jwtSecret", "redisUrl"]));
    expect(Object.keys(BAD).sort()).toEqual([...SECRET_KEYS].sort());
  });

  for (const key of Object.keys(BAD)) {
    const s = SETTINGS[key as keyof typeof SETTINGS];
    it(`${s.env}: refused with the setting and the rule, never a part of the value (env and flag)`, () => {
      const envBaseline = refusal(() => loadConfig({ [s.env]: UNRELATED }));
      const flagBaseline = refusal(() => loadConfigWithFlags(parseArgs([flagOf(key), UNRELATED]).values, {}));
      for (const [value, rule] of BAD[key]!) {
        const fromEnv = refusal(() => loadConfig({ [s.env]: value }));
        expect(fromEnv).toContain(s.env);
        expect(fromEnv).toMatch(rule);
        expect(partsIn(fromEnv, value, envBaseline), fromEnv).toEqual([]);
        const fromFlag = refusal(() => loadConfigWithFlags(parseArgs([flagOf(key), value]).values, {}));
        expect(fromFlag).toContain(flagOf(key));
        expect(fromFlag).toMatch(rule);
        expect(partsIn(fromFlag, value, flagBaseline), fromFlag).toEqual([]);
      }
    });
  }

  it("the CLI refuses them (exit 2) without printing any part of them", () => {
    for (const key of Object.keys(BAD)) {
      const s = SETTINGS[key as keyof typeof SETTINGS];
      const role = s.roles[0]!;
      const [value] = BAD[key]![0]!;
      const baseline = cli([role], { [s.env]: UNRELATED }).output + cli([role, flagOf(key), UNRELATED], {}).output;
      for (const [res, named] of [
        [cli([role], { [s.env]: value }), s.env],
        [cli([role, flagOf(key), value], {}), flagOf(key)],
      ] as const) {
        expect(res.status, res.output).toBe(2);
        expect(res.output).toContain(named);
        expect(partsIn(res.output, value, baseline), res.output).toEqual([]);
      }
    }
  }, 120_000);

  it("are censored in logs, at the top level and one object down", () => {
    for (const key of SECRET_KEYS) {
      expect(REDACTED_PATHS).toContain(key);
      expect(REDACTED_PATHS).toContain(`*.${key}`);
    }
  });
});

/** The settings whose value a person makes with the suggested command (a key-like secret added later belongs here). */
const GENERATED = ["apiKeys", "jwtSecret", "linkSecret"] as const;

/** Every `openssl rand ...` that README.md and docs/ suggest, and every one written in src/ outside the constant. */
function suggestedCommands(): { inDocs: string[]; inSource: string[] } {
  const docs = [
    "README.md",
    ...readdirSync(join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => `docs/${f}`),
  ];
  const inDocs = docs.flatMap((f) => readFileSync(join(ROOT, f), "utf8").match(/openssl rand(?: [-\w]+)+/g) ?? []);
  const walk = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(`${dir}/${e.name}`) : e.name.endsWith(".ts") ? [`${dir}/${e.name}`] : [],
    );
  const inSource = walk("src")
    .filter((f) => f !== "src/auth/secret-command.ts")
    .filter((f) => readFileSync(join(ROOT, f), "utf8").includes("openssl rand"));
  return { inDocs: [...new Set(inDocs)], inSource };
}

describe("the suggested command for a new key or secret", () => {
  it("is the one command everywhere: the errors name it, the docs write it, no source file spells another", () => {
    const { inDocs, inSource } = suggestedCommands();
    expect(inSource, "write GENERATE_SECRET_COMMAND instead").toEqual([]);
    expect(inDocs.length).toBeGreaterThan(0);
    expect(inDocs).toEqual(inDocs.map(() => GENERATE_SECRET_COMMAND));
    expect(refusal(() => loadConfig({ REALTIME_API_KEYS: "short" }))).toContain(GENERATE_SECRET_COMMAND);
    expect(refusal(() => loadConfig({ REALTIME_JWT_SECRET: "short" }))).toContain(GENERATE_SECRET_COMMAND);
  });

  it("runs with the machine's openssl, and what it prints is accepted as an API key, two keys and a JWT secret", () => {
    const { inDocs } = suggestedCommands();
    for (const command of new Set([GENERATE_SECRET_COMMAND, ...inDocs])) {
      const made = () => execSync(command, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
      const [a, b] = [made(), made()];
      expect(a).not.toBe(b);
      for (const key of GENERATED) {
        const s = SETTINGS[key];
        expect(() => loadConfig({ [s.env]: a }), `${command} for ${s.env}`).not.toThrow();
      }
      expect(loadConfig({ REALTIME_API_KEYS: `${a},${b}` }).apiKeys).toBe(`${a},${b}`);
      expect(loadConfig({ REALTIME_JWT_SECRET: a }).jwtSecret).toBe(a);
    }
  });
});
