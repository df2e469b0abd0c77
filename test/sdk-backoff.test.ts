import { describe, expect, it } from "vitest";
import { backoffDelay, checkBackoffOptions } from "../src/client/backoff.js";

const opts = { initialDelayMs: 100, maxDelayMs: 1_000 };

describe("backoffDelay (full jitter)", () => {
  it("is uniform below a ceiling that doubles per attempt", () => {
    expect(backoffDelay(0, opts, () => 0)).toBe(0);
    expect(backoffDelay(0, opts, () => 0.999_999)).toBe(99);
    expect(backoffDelay(1, opts, () => 0.5)).toBe(100);
    expect(backoffDelay(2, opts, () => 0.5)).toBe(200);
    expect(backoffDelay(3, opts, () => 0.5)).toBe(400);
  });

  it("caps the ceiling at maxDelayMs, even for huge attempt numbers", () => {
    expect(backoffDelay(4, opts, () => 0.999_999)).toBe(999);
    expect(backoffDelay(10, opts, () => 0.5)).toBe(500);
    expect(backoffDelay(5_000, opts, () => 0.5)).toBe(500);
  });

  it("stays in [0, ceiling) with Math.random", () => {
    for (let attempt = 0; attempt < 20; attempt++) {
      for (let i = 0; i < 50; i++) {
        const d = backoffDelay(attempt, opts);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(Math.min(1_000, 100 * 2 ** attempt));
        expect(Number.isInteger(d)).toBe(true);
      }
    }
  });

  it("rejects options that make no sense, naming the option", () => {
    expect(() => checkBackoffOptions({ initialDelayMs: -1, maxDelayMs: 10 })).toThrow(/initialDelayMs/);
    expect(() => checkBackoffOptions({ initialDelayMs: 100, maxDelayMs: 10 })).toThrow(/maxDelayMs/);
    expect(() => checkBackoffOptions({ initialDelayMs: NaN, maxDelayMs: 10 })).toThrow(/initialDelayMs/);
    expect(() => checkBackoffOptions(opts)).not.toThrow();
  });
});
