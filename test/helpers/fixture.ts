/**
 * A cluster for one test file: started before its tests, stopped after them
 * with every client the tests opened through it.
 */
import { afterAll, beforeAll } from "vitest";
import { startCluster, stopAll, type Cluster } from "./cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./grpc-client.js";
import { TestClient, type Enc } from "./ws-client.js";

export interface ClusterFixture {
  /** Set once beforeAll ran. */
  readonly cluster: Cluster;
  /** A grpc-js client of the cluster's API. */
  readonly api: RealtimeTestClient;
  /** Every client connected through client() so far. */
  readonly clients: readonly TestClient[];
  /** Connects a raw client to edge number `edge`; closed after the file. */
  client(edge: number, enc: Enc, query?: string): Promise<TestClient>;
}

/**
 * edges: how many edges, all with env; or one edge per element, each with
 * env and that element's settings.
 */
export function useCluster(edges: number | readonly NodeJS.ProcessEnv[], env: NodeJS.ProcessEnv = {}): ClusterFixture {
  let cluster: Cluster | undefined;
  let api: RealtimeTestClient | undefined;
  const clients: TestClient[] = [];
  beforeAll(async () => {
    cluster = await startCluster(typeof edges === "number" ? edges : 0, env);
    if (typeof edges !== "number") for (const extra of edges) await cluster.addEdge(extra);
    api = realtimeClient(cluster.grpc);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    api?.close();
    await cluster?.stop();
    await stopAll();
  });
  return {
    get cluster() {
      return cluster!;
    },
    get api() {
      return api!;
    },
    clients,
    async client(edge, enc, query = "") {
      const c = await TestClient.connect(cluster!.ws[edge]!, enc, query);
      clients.push(c);
      return c;
    },
  };
}
