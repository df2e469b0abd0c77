/**
 * The presence settings (core/presence-rules.ts, src/config.ts): the
 * longest prefix wins, as for history, and a bad value stops the process
 * with the variable's name and what to write.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { DEFAULT_PRESENCE_WINDOW_MS, parsePresenceRules, presenceRules } from "../src/core/presence-rules.js";

describe("presence settings", () => {
  it("the longest prefix wins; channels no rule matches take REALTIME_PRESENCE_EVENTS", () => {
    const rules = parsePresenceRules("lobby:=off, lobby:vip:=on ,");
    const on = presenceRules(true, rules);
    expect([on("lobby:1"), on("lobby:vip:1"), on("room:1")]).toEqual([false, true, true]);
    const off = presenceRules(false, rules);
    expect([off("lobby:1"), off("lobby:vip:1"), off("room:1")]).toEqual([false, true, false]);
    expect(presenceRules(true)("any")).toBe(true);
  });

  it("refuses bad values with the variable's name and what to write", () => {
    const bad = {
      REALTIME_PRESENCE_RULES: ["lobby", "lobby:=maybe", "bad prefix=off", "a=on,a=off", "=off", "a="],
      REALTIME_PRESENCE_EVENTS: ["sometimes"],
      REALTIME_PRESENCE_WINDOW_MS: ["-1", "1001", "5ms"],
    };
    for (const [env, values] of Object.entries(bad)) {
      for (const value of values) {
        expect(() => loadConfig({ [env]: value }), `${env}=${value}`).toThrow(ConfigError);
        expect(() => loadConfig({ [env]: value })).toThrow(new RegExp(env));
      }
    }
    expect(() => loadConfig({ REALTIME_PRESENCE_RULES: "lobby:=maybe" })).toThrow(/prefix=on or prefix=off/);
    const ok = loadConfig({ REALTIME_PRESENCE_RULES: "lobby:=off", REALTIME_PRESENCE_EVENTS: "false" });
    expect([ok.presenceRules, ok.presenceEvents, ok.presenceWindowMs]).toEqual([
      "lobby:=off",
      false,
      DEFAULT_PRESENCE_WINDOW_MS,
    ]);
  });
});
