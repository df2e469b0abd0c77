/** A gRPC server stream opened by a test: what it received so far, and its status once it ended. */
import type * as grpc from "@grpc/grpc-js";

export class StreamWatch<T> {
  readonly got: T[] = [];
  status: grpc.StatusObject | undefined;

  constructor(private readonly stream: grpc.ClientReadableStream<T>) {
    stream.on("data", (r: T) => this.got.push(r));
    stream.on("error", () => {});
    stream.on("status", (s: grpc.StatusObject) => (this.status = s));
  }

  cancel(): void {
    this.stream.cancel();
  }
}
