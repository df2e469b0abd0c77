/**
 * A Connect server stream read as an HTTP-only backend reads it: one POST
 * of an enveloped JSON request (a flag byte, the length as 4 bytes
 * big-endian, the JSON) with fetch, and the enveloped JSON messages of the
 * response parsed as they come, until stop().
 */
export interface ConnectStream {
  /** The messages parsed so far (the end-of-stream envelope included, when it came). */
  readonly messages: unknown[];
  /** The response's HTTP status; 0 until its headers came. */
  status(): number;
  /** Ends the request and waits for the reading to stop. */
  stop(): Promise<void>;
}

export function connectStream(url: string, request: unknown): ConnectStream {
  const controller = new AbortController();
  const body = Buffer.from(JSON.stringify(request));
  const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
  envelope.writeUInt32BE(body.length, 1);
  const messages: unknown[] = [];
  let httpStatus = 0;
  // The response's headers may wait for its first message: read in the background.
  const reading = (async () => {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: envelope,
        signal: controller.signal,
      });
      httpStatus = res.status;
      const reader = res.body!.getReader();
      let buffer = Buffer.alloc(0);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer = Buffer.concat([buffer, Buffer.from(value)]);
        while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
          const size = buffer.readUInt32BE(1);
          messages.push(JSON.parse(buffer.subarray(5, 5 + size).toString()));
          buffer = buffer.subarray(5 + size);
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    messages,
    status: () => httpStatus,
    async stop() {
      controller.abort();
      await reading;
    },
  };
}
