/**
 * switchboard: the programmatic entry points, to run the API process or an
 * edge process inside a program of your own (the CLI, src/cli.ts, is such a
 * caller). Importing this module starts nothing, opens nothing and reads no
 * environment: each start function does its work when called and resolves
 * once it listens; `stop()` on the handle it returns closes everything it
 * opened.
 *
 * @example
 * import { createLogger, loadConfig, startApi, startEdge } from "switchboard";
 * const config = loadConfig(process.env, { grpcPort: 0, httpPort: 0, linkPort: 0, wsPort: 0 });
 * const api = await startApi(config, createLogger("api"));
 * const edge = await startEdge({ ...config, linkUrl: api.addresses.link! }, createLogger("edge"));
 * // ... api.addresses.grpc, edge.addresses.ws ...
 * await edge.stop();
 * await api.stop();
 *
 * The client SDK is the other entry point, `switchboard/client`, and its own
 * package, `@switchboard/client` (packages/client/).
 */
export { ConfigError, loadConfig, type Config } from "./config.js";
export { createLogger, type Logger } from "./log.js";
export { startApi, type ApiHandle } from "./roles/api.js";
export { startEdge, type EdgeHandle } from "./roles/edge.js";
