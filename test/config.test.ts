/**
 * The one config schema: flags derived from keys, flags over env, a bad
 * value refused by the real CLI (non-zero exit, naming the setting and the
 * rule), --help listing every setting, and the README's table agreeing with
 * the schema.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { flagOf, loadConfigWithFlags, parseArgs } from "../src/config-args.js";
import { CONFIG_END, CONFIG_START, DOCS_WITH_SETTINGS, withConfigTable } from "../src/config-docs.js";
import { ConfigError, loadConfig, SETTINGS } from "../src/config.js";
import { ROOT } from "./helpers/cluster.js";

const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));

/** Runs the CLI to completion (it must exit by itself: help, or a refused config). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const res = spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, REALTIME_LOG_LEVEL: "warn", ...env },
    encoding: "utf8",
    timeout: 20_000,
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe("flags", () => {
  it("are derived from each setting's key", () => {
    expect(flagOf("grpcPort")).toBe("--grpc-port");
    expect(flagOf("maxChannelsPerConnection")).toBe("--max-channels-per-connection");
  });

  it("win over the environment, in both forms, with --no- for booleans", () => {
    const args = parseArgs([
      "api",
      "--grpc-port",
      "0",
      "--ws-port=9001",
      "--no-allow-client-send",
      "--log-level",
      "debug",
    ]);
    expect(args.positional).toEqual(["api"]);
    const config = loadConfigWithFlags(args.values, { REALTIME_GRPC_PORT: "7000", REALTIME_WS_HOST: "0.0.0.0" });
    expect(config.grpcPort).toBe(0);
    expect(config.wsPort).toBe(9001);
    expect(config.wsHost).toBe("0.0.0.0");
    expect(config.allowClientSend).toBe(false);
    expect(config.logLevel).toBe("debug");
  });

  it("override a bad environment value instead of failing on it", () => {
    const args = parseArgs(["--grpc-port", "1"]);
    expect(loadConfigWithFlags(args.values, { REALTIME_GRPC_PORT: "nope" }).grpcPort).toBe(1);
  });

  it("refuse an unknown flag and a flag without its value", () => {
    expect(() => parseArgs(["api", "--grcp-port", "1"])).toThrow(/--grcp-port: unknown flag/);
    expect(() => parseArgs(["api", "--grpc-port"])).toThrow(/--grpc-port: needs a value/);
  });

  it("report every bad value with its source and rule", () => {
    const args = parseArgs(["--ws-port", "70000"]);
    let message = "";
    try {
      loadConfigWithFlags(args.values, { REALTIME_LOG_LEVEL: "loud" });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('--ws-port "70000": must be from 0 to 65535');
    expect(message).toContain(
      'REALTIME_LOG_LEVEL="loud": must be one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it("refuse REALTIME_WRITE_BATCH without a write delay, which it packs by", () => {
    expect(() => loadConfig({ REALTIME_WRITE_BATCH: "true" })).toThrow(
      /REALTIME_WRITE_BATCH=true: needs REALTIME_WRITE_DELAY_MS above 0/,
    );
    expect(() => loadConfig({ REALTIME_WRITE_BATCH: "true", REALTIME_WRITE_DELAY_MS: "0" })).toThrow(ConfigError);
    expect(loadConfig({ REALTIME_WRITE_BATCH: "true", REALTIME_WRITE_DELAY_MS: "5" })).toMatchObject({
      writeBatch: true,
      writeDelayMs: 5,
    });
    const flags = parseArgs(["edge", "--write-batch"]);
    expect(() => loadConfigWithFlags(flags.values, {})).toThrow(/needs REALTIME_WRITE_DELAY_MS above 0/);
  });

  it("are unique: no two settings share a flag or a variable", () => {
    const keys = Object.keys(SETTINGS);
    expect(new Set(keys.map(flagOf)).size).toBe(keys.length);
    expect(new Set(Object.values(SETTINGS).map((s) => s.env)).size).toBe(keys.length);
  });

  it("have defaults that their own rule accepts", () => {
    const config = loadConfig({});
    for (const [key, s] of Object.entries(SETTINGS)) {
      expect(config[key as keyof typeof config]).toEqual(s.default);
      if (s.default !== "") expect(() => (s.parse as (raw: string) => unknown)(String(s.default)), key).not.toThrow();
    }
  });
});

describe("the CLI", () => {
  it("exits non-zero on a bad value, naming the setting and the rule, before it listens", () => {
    const res = cli(["api", "--grpc-port", "0", "--http-port", "0", "--link-port", "0"], {
      REALTIME_MAX_PAYLOAD_BYTES: "12",
    });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('REALTIME_MAX_PAYLOAD_BYTES="12": must be from 1024 to 16777216');
    expect(res.stdout).not.toContain('"ready"');
  });

  it("exits non-zero on a bad flag", () => {
    const res = cli(["edge", "--ws-port", "http"]);
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('--ws-port "http": must be a whole number from 0 to 65535');
  });

  it("prints every setting's flag, variable and default with --help", () => {
    const res = cli(["--help"]);
    expect(res.status).toBe(0);
    for (const [key, s] of Object.entries(SETTINGS)) {
      expect(res.stdout).toContain(flagOf(key));
      expect(res.stdout).toContain(s.env);
      expect(res.stdout).toContain(s.doc);
    }
    expect(cli(["edge", "-h"]).stdout).toContain("Usage: switchboard");
  });
});

describe("the docs' settings tables", () => {
  it("agree with the schema in every doc that has one (npm run docs:config)", () => {
    for (const doc of DOCS_WITH_SETTINGS) {
      const text = readFileSync(new URL(`../${doc}`, import.meta.url), "utf8");
      expect(text, doc).toContain(CONFIG_END);
      expect(withConfigTable(text), `${doc} is out of date: run npm run docs:config`).toBe(text);
    }
  });

  it("name only settings that exist, so a removed one fails the check", () => {
    expect(() => withConfigTable("<!-- config:start REALTIME_NO_SUCH -->\n<!-- config:end -->")).toThrow(
      "no setting REALTIME_NO_SUCH",
    );
    const one = withConfigTable("x\n<!-- config:start REALTIME_TLS_KEY_FILE -->\nstale\n<!-- config:end -->\ny");
    expect(one).toContain("| `REALTIME_TLS_KEY_FILE` |");
    expect(one).not.toContain("stale");
    expect(one.split("\n").filter((l) => l.startsWith("| `REALTIME_"))).toHaveLength(1);
  });
});

describe("README.md", () => {
  it("has the configuration table generated from the schema (npm run docs:config)", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    expect(readme).toContain(CONFIG_START);
    expect(readme).toContain(CONFIG_END);
    const section = (text: string) => text.slice(text.indexOf(CONFIG_START), text.indexOf(CONFIG_END));
    expect(section(readme), "README.md is out of date: run npm run docs:config").toBe(section(withConfigTable(readme)));
    for (const s of Object.values(SETTINGS)) expect(section(readme)).toContain(`\`${s.env}\``);
  });
});
