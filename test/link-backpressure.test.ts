/**
 * The hub drops the link of an edge that falls LINK_MAX_BUFFERED_BYTES
 * behind, and says so as a value: Observer.dropped("edge_backpressure", 1)
 * (the metric switchboard_drops_total{reason="edge_backpressure"}),
 * not a string that a caller must recognise in its error callback. A raw
 * edge that stops reading its socket, against an in-process LinkServer.
 */
import { create } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { EventSchema } from "../gen/realtime/client/v1/client_pb.js";
import { MemoryBroker } from "../src/core/broker-memory.js";
import { LINK_MAX_BUFFERED_BYTES } from "../src/core/limits.js";
import { NOOP_OBSERVER, type DropReason, type Observer } from "../src/core/observer.js";
import { MemoryPresence } from "../src/core/presence-memory.js";
import { createPublication } from "../src/core/publication.js";
import { LinkServer } from "../src/link/link-server.js";
import { RawLink } from "./helpers/raw-link.js";

const EVENT_BYTES = 60 * 1024;

describe("an edge that falls behind", () => {
  const drops: [DropReason, number][] = [];
  const errors: string[] = [];
  const observer: Observer = { ...NOOP_OBSERVER, dropped: (reason, count) => drops.push([reason, count]) };
  const broker = new MemoryBroker();
  const server = new LinkServer({
    broker,
    presence: new MemoryPresence(),
    graceMs: 0,
    announce: async () => {},
    observer,
    onError: (err) => errors.push((err as Error).message),
  });
  let edge: RawLink | undefined;
  afterAll(async () => {
    edge?.close();
    await server.close();
  });

  it("loses its link, and the observer is told once, with the edge_backpressure reason", async () => {
    const address = await server.listen(0, "127.0.0.1");
    edge = await RawLink.connect(`127.0.0.1:${address.port}`);
    expect((await edge.request({ frame: { case: "hello", value: { edgeId: "slow" } } }))?.error).toBeUndefined();
    expect((await edge.request({ frame: { case: "subscribe", value: "room" } }))?.error).toBeUndefined();
    edge.socket.pause();
    const api = broker.attach(() => {}, false);
    const payload = { case: "binary" as const, value: new Uint8Array(EVENT_BYTES) };
    for (let i = 0; drops.length === 0 && i * EVENT_BYTES < 2 * LINK_MAX_BUFFERED_BYTES; i++) {
      const event = create(EventSchema, { id: `e${i}`, channel: "room", event: "fill", payload });
      await api.publish(createPublication(event, 2 * EVENT_BYTES)).catch(() => {});
      if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    // Reading again, the edge finds its link closed.
    edge.socket.resume();
    expect(await edge.closedWithin(5_000)).toBe(true);
    expect(drops).toEqual([["edge_backpressure", 1]]);
    expect(errors).toEqual([expect.stringMatching(/^edge slow fell \d+ bytes behind; dropping its link$/)]);
  });
});
