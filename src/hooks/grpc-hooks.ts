/**
 * The hooks adapter: calls the backend's realtime.v1.Hooks over gRPC
 * (grpc-js, plaintext, one channel per edge), for core/hooks.ts. Every call
 * carries its deadline; a status other than OK, or the deadline, rejects.
 */
import * as grpc from "@grpc/grpc-js";
import { Hooks as HooksService } from "../../gen/realtime/v1/hooks_pb.js";
import type { HooksClient } from "../core/hooks.js";
import { serviceDefinition } from "../api/grpc/adapter.js";

const Client = grpc.makeGenericClientConstructor(serviceDefinition(HooksService), "Hooks");

/** A HooksClient of the server at address (host:port), and its close. */
export function grpcHooksClient(address: string): HooksClient & { close(): void } {
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as grpc.Client &
    Record<
      string,
      (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<unknown>) => void
    >;
  const call =
    <Req, Res>(name: string) =>
    (req: Req, timeoutMs: number): Promise<Res> =>
      new Promise((resolve, reject) => {
        client[name]!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          err
            ? reject(
                new Error(err.code === grpc.status.DEADLINE_EXCEEDED ? "no answer within the deadline" : err.message),
              )
            : resolve(res as Res),
        );
      });
  return {
    onConnect: call("onConnect"),
    onJoin: call("onJoin"),
    onClientSend: call("onClientSend"),
    close: () => client.close(),
  };
}
