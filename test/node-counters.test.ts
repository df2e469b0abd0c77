/**
 * NodeCounters (src/core/node-counters.ts): the Observer it wraps still gets
 * every call, and the totals count what Info reports: client frames,
 * event frames (not replies), drops and disconnects by reason.
 */
import { describe, expect, it } from "vitest";
import { NodeCounters } from "../src/core/node-counters.js";
import { NOOP_OBSERVER, type Observer } from "../src/core/observer.js";

describe("NodeCounters", () => {
  it("counts messages in, event frames out, drops and disconnects by reason, and passes every call on", () => {
    const calls: string[] = [];
    const inner = Object.fromEntries(
      Object.keys(NOOP_OBSERVER).map((name) => [
        name,
        (...args: unknown[]) => calls.push(`${name}(${args.join(",")})`),
      ]),
    ) as unknown as Observer;
    const counters = new NodeCounters();
    const o = counters.observing(inner);
    expect(counters.totals()).toEqual({ messagesIn: 0n, deliveries: 0n, drops: {}, disconnects: {} });
    o.messageIn("join");
    o.messageIn("invalid");
    o.messageOut("event", 5);
    o.messageOut("reply", 2);
    o.dropped("closed", 3);
    o.dropped("slow_consumer", 1);
    o.dropped("closed", 1);
    o.connectionClosed("client");
    o.connectionClosed("heartbeat");
    o.connectionClosed("client");
    expect(counters.totals()).toEqual({
      messagesIn: 2n,
      deliveries: 5n,
      drops: { closed: 4n, slow_consumer: 1n },
      disconnects: { client: 2n, heartbeat: 1n },
    });
    expect(calls).toEqual([
      "messageIn(join)",
      "messageIn(invalid)",
      "messageOut(event,5)",
      "messageOut(reply,2)",
      "dropped(closed,3)",
      "dropped(slow_consumer,1)",
      "dropped(closed,1)",
      "connectionClosed(client)",
      "connectionClosed(heartbeat)",
      "connectionClosed(client)",
    ]);
    // Every method of the Observer reaches the inner one, counted or not.
    for (const name of Object.keys(NOOP_OBSERVER)) (o as unknown as Record<string, () => void>)[name]!();
    expect(new Set(calls.map((c) => c.slice(0, c.indexOf("("))))).toEqual(new Set(Object.keys(NOOP_OBSERVER)));
  });
});
