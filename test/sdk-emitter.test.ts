import { describe, expect, it } from "vitest";
import { Emitter } from "../src/client/emitter.js";

interface Events {
  a: number;
  b: string;
}

function make() {
  const errors: { err: unknown; event: string }[] = [];
  const em = new Emitter<Events>((err, event) => errors.push({ err, event }));
  return { em, errors };
}

describe("Emitter", () => {
  it("calls listeners in the order added, then onAny listeners", () => {
    const { em } = make();
    const calls: string[] = [];
    em.onAny((event, p) => calls.push(`any:${event}:${String(p)}`));
    em.on("a", (n) => calls.push(`1:${n}`));
    em.on("a", (n) => calls.push(`2:${n}`));
    expect(em.emit("a", 7)).toBe(true);
    expect(calls).toEqual(["1:7", "2:7", "any:a:7"]);
  });

  it("once runs a listener for one emit only, even when it re-emits", () => {
    const { em } = make();
    let count = 0;
    em.once("a", () => {
      count++;
      em.emit("a", 2);
    });
    em.emit("a", 1);
    em.emit("a", 3);
    expect(count).toBe(1);
    expect(em.listenerCount("a")).toBe(0);
  });

  it("off removes on and once registrations of a listener, or all of an event", () => {
    const { em } = make();
    const seen: number[] = [];
    const cb = (n: number) => seen.push(n);
    const other = (n: number) => seen.push(n * 10);
    em.on("a", cb);
    em.once("a", cb);
    em.on("a", other);
    em.off("a", cb);
    em.emit("a", 1);
    expect(seen).toEqual([10]);
    em.off("a");
    em.emit("a", 2);
    expect(seen).toEqual([10]);
    expect(em.emit("a", 3)).toBe(false);
  });

  it("offAny removes one onAny listener or all", () => {
    const { em } = make();
    const seen: string[] = [];
    const x = () => seen.push("x");
    const y = () => seen.push("y");
    em.onAny(x);
    em.onAny(y);
    em.offAny(x);
    em.emit("b", "s");
    em.offAny();
    em.emit("b", "s");
    expect(seen).toEqual(["y"]);
  });

  it("a listener that throws does not stop the others; the hook gets the error", () => {
    const { em, errors } = make();
    const seen: string[] = [];
    em.on("b", () => {
      throw new Error("boom");
    });
    em.on("b", (s) => seen.push(s));
    em.onAny(() => {
      throw new Error("any boom");
    });
    em.emit("b", "ok");
    expect(seen).toEqual(["ok"]);
    expect(errors.map((e) => [(e.err as Error).message, e.event])).toEqual([
      ["boom", "b"],
      ["any boom", "b"],
    ]);
  });

  it("a hook that throws is contained", () => {
    const em = new Emitter<Events>(() => {
      throw new Error("hook");
    });
    em.on("a", () => {
      throw new Error("listener");
    });
    expect(() => em.emit("a", 1)).not.toThrow();
  });

  it("listeners added or removed during an emit take effect from the next emit", () => {
    const { em } = make();
    const seen: string[] = [];
    const late = () => seen.push("late");
    const victim = () => seen.push("victim");
    em.on("a", () => {
      seen.push("first");
      em.on("a", late);
      em.off("a", victim);
    });
    em.on("a", victim);
    em.emit("a", 1);
    expect(seen).toEqual(["first", "victim"]);
    seen.length = 0;
    em.emit("a", 1);
    expect(seen).toEqual(["first", "late"]);
  });
});
