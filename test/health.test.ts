// grpc.health.v1.Health behaves as health-checking.md says: Check, Watch and
// List over a real grpc-js server and client.
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { addService, serviceDefinition, type AddServiceOptions } from "../src/api/grpc/adapter.js";
import { createHealth, OVERALL_SERVICE, ServingStatus, type HealthState } from "../src/api/health.js";
import { watchLeaks } from "./helpers/leaks.js";

const REALTIME = "realtime.v1.Realtime";
const methods = serviceDefinition(Health);

// No leaked handles once every server and client is closed.
const leaks = watchLeaks();
beforeAll(() => leaks.start());
afterAll(async () => {
  await leaks.check();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function serve(options?: AddServiceOptions): Promise<{ health: HealthState; client: grpc.Client }> {
  const health = createHealth();
  const server = new grpc.Server();
  addService(server, health.service, health.impl, options);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  cleanups.push(() => client.close());
  return { health, client };
}

function check(client: grpc.Client, service: string): Promise<ServingStatus | grpc.ServiceError> {
  const m = methods.check!;
  return new Promise((resolve) =>
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, { service }, (err, res) =>
      resolve(err ?? (res as { status: ServingStatus }).status),
    ),
  );
}

/** Starts a Watch; next() resolves with each status in turn. */
function watch(client: grpc.Client, service: string) {
  const m = methods.watch!;
  const call = client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, { service });
  const received: ServingStatus[] = [];
  const waiting: (() => void)[] = [];
  call.on("data", (r: { status: ServingStatus }) => {
    received.push(r.status);
    waiting.splice(0).forEach((wake) => wake());
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("error", () => {}); // reported through 'status'
  let read = 0;
  return {
    call,
    ended,
    async next(): Promise<ServingStatus> {
      while (received.length <= read) await new Promise<void>((wake) => waiting.push(wake));
      return received[read++];
    },
  };
}

describe("Check", () => {
  it("answers SERVING for the overall status and NOT_FOUND for an unknown service", async () => {
    const { health, client } = await serve();
    expect(await check(client, OVERALL_SERVICE)).toBe(ServingStatus.SERVING);
    expect((await check(client, REALTIME)) as grpc.ServiceError).toMatchObject({ code: grpc.status.NOT_FOUND });
    health.set(REALTIME, ServingStatus.SERVING);
    expect(await check(client, REALTIME)).toBe(ServingStatus.SERVING);
    health.set(OVERALL_SERVICE, ServingStatus.NOT_SERVING);
    expect(await check(client, OVERALL_SERVICE)).toBe(ServingStatus.NOT_SERVING);
  });
});

describe("Watch", () => {
  it("sends the current status at once, then each change, until cancelled", async () => {
    const { health, client } = await serve();
    health.set(REALTIME, ServingStatus.SERVING);
    const w = watch(client, REALTIME);
    expect(await w.next()).toBe(ServingStatus.SERVING);
    health.set(REALTIME, ServingStatus.SERVING); // no change: nothing sent
    health.set(REALTIME, ServingStatus.NOT_SERVING);
    expect(await w.next()).toBe(ServingStatus.NOT_SERVING);
    health.set(REALTIME, ServingStatus.SERVING);
    expect(await w.next()).toBe(ServingStatus.SERVING);
    w.call.cancel();
    expect((await w.ended).code).toBe(grpc.status.CANCELLED);
  });

  it("sends SERVICE_UNKNOWN for an unknown service without ending, then its status once set", async () => {
    const { health, client } = await serve();
    const w = watch(client, "later.v1.Service");
    expect(await w.next()).toBe(ServingStatus.SERVICE_UNKNOWN);
    health.set("later.v1.Service", ServingStatus.SERVING);
    expect(await w.next()).toBe(ServingStatus.SERVING);
    w.call.cancel();
    await w.ended;
  });

  it("ends with UNAVAILABLE on shutdown, after NOT_SERVING, so the server can stop", async () => {
    const shutdown = new AbortController();
    const { health, client } = await serve({ shutdownSignal: shutdown.signal });
    const w = watch(client, OVERALL_SERVICE);
    expect(await w.next()).toBe(ServingStatus.SERVING);
    health.set(OVERALL_SERVICE, ServingStatus.NOT_SERVING);
    expect(await w.next()).toBe(ServingStatus.NOT_SERVING);
    shutdown.abort();
    expect((await w.ended).code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe("List", () => {
  it("lists every service with its status", async () => {
    const { health, client } = await serve();
    health.set(REALTIME, ServingStatus.NOT_SERVING);
    const m = methods.list!;
    const res = await new Promise<{ statuses: Record<string, { status: ServingStatus }> }>((resolve, reject) =>
      client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, (err, r) =>
        err ? reject(err) : resolve(r as never),
      ),
    );
    expect(Object.fromEntries(Object.entries(res.statuses).map(([k, v]) => [k, v.status]))).toEqual({
      [OVERALL_SERVICE]: ServingStatus.SERVING,
      [REALTIME]: ServingStatus.NOT_SERVING,
    });
  });
});
