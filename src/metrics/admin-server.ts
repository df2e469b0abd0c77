/**
 * A small HTTP server for a role that has no HTTP server of its own (the
 * API serves gRPC over HTTP/2 only): it answers the ops endpoints and 404
 * for anything else.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { OPS_PATHS, type OpsHandler } from "./http.js";

export interface AdminServer {
  /** Where it listens, as http://host:port. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startAdminServer(handler: OpsHandler, port: number, host: string): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    if (handler(req, res)) return;
    const body = `not found: this is a Switchboard admin endpoint (${OPS_PATHS.join(", ")})\n`;
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const h = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${h}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
