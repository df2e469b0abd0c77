/**
 * The two deployments a backend-facing feature is tested in, with the
 * same shape: the embedded mode (one API, two edges over the link; both
 * `apis` entries are that one API) and the Redis mode (two API nodes, two
 * edges, under a prefix of their own, deleted at the end).
 */
import type { Proc } from "./cluster.js";
import { startCluster } from "./cluster.js";
import { realtimeClient, type RealtimeTestClient } from "./grpc-client.js";
import { deletePrefix, NO_REDIS, startTopology, testRedisUrl, uniquePrefix } from "./redis-topology.js";

export interface Setup {
  apis: RealtimeTestClient[];
  http: string[];
  ws: string[];
  edges: Proc[];
  stop(): Promise<void>;
}

export interface Mode {
  name: string;
  skip: boolean;
  start(): Promise<Setup>;
}

/** The two modes; env for every process, plus what only one mode's processes get. */
export function twoModes(
  prefixName: string,
  env: NodeJS.ProcessEnv,
  only: { embedded?: NodeJS.ProcessEnv; redis?: NodeJS.ProcessEnv } = {},
): Mode[] {
  return [
    {
      name: "embedded: one API, two edges",
      skip: false,
      async start() {
        const c = await startCluster(2, { ...env, ...only.embedded });
        const api = realtimeClient(c.grpc);
        return {
          apis: [api, api],
          http: [c.http, c.http],
          ws: c.ws,
          edges: c.edges,
          stop: async () => {
            api.close();
            await c.stop();
          },
        };
      },
    },
    {
      name: "Redis: two API nodes, two edges",
      skip: NO_REDIS,
      async start() {
        const prefix = uniquePrefix(prefixName);
        const t = await startTopology(2, 2, {
          REALTIME_REDIS_URL: testRedisUrl(),
          REALTIME_REDIS_PREFIX: prefix,
          ...env,
          ...only.redis,
        });
        const apis = t.grpc.map(realtimeClient);
        return {
          apis,
          http: t.apis.map((a) => a.ready.http!),
          ws: t.ws,
          edges: t.edges,
          stop: async () => {
            for (const a of apis) a.close();
            await t.stop();
            await deletePrefix(prefix);
          },
        };
      },
    },
  ];
}
