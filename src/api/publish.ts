/**
 * The Publish stream (realtime.v1.Realtime/Publish): many events on one
 * call, acknowledged cumulatively. Transport-free: it reads an async
 * iterable of requests and yields responses, so every adapter that serves
 * the ServiceImpl serves it.
 *
 * Guarantees:
 * - requests are handled (checked, encoded, handed to the broker) in stream
 *   order, one at a time as they arrive; the broker's publishes are started
 *   in that order, so events to one channel keep it;
 * - `handled` in a response counts a prefix of the stream: every request
 *   below it has settled (published, or failed and listed in `errors` of
 *   this or an earlier response); it never goes back;
 * - at most one response is waiting to be written at any time: acks that
 *   come while the transport is busy merge into it, so a slow reader of
 *   responses costs no memory per request;
 * - at most `maxUnacknowledged` requests are read ahead of the last
 *   response written; then reading pauses (the transport's flow control
 *   holds the publisher back) until one is written;
 * - a request that could not be decoded (the transport's request iterator
 *   rejects with UndecodableRequestError) settles as an INVALID_ARGUMENT
 *   error for its index, and reading goes on;
 * - when the requests end, the stream returns once a response has
 *   acknowledged all of them (an empty stream gets one, with handled 0);
 * - when the requests fail (the client cancelled) or `signal` aborts, the
 *   iteration throws that reason; events already handed to the broker are
 *   not recalled.
 * Not guaranteed: that a response comes for every request (acks merge), or
 * at any particular time beyond "at the next turn of the event loop once
 * the request has settled and the transport can take it".
 */
import { create } from "@bufbuild/protobuf";
import {
  PublishErrorSchema,
  PublishResponseSchema,
  type PublishError,
  type PublishRequest,
  type PublishResponse,
} from "../../gen/realtime/v1/realtime_pb.js";
import { asRealtimeError, Code, RealtimeError } from "../protocol/errors.js";
import { UndecodableRequestError } from "./undecodable.js";

/** The event of a request that has one. */
export type PublishEvent = Exclude<PublishRequest["event"], { case: undefined }>;

/**
 * Publishes one request's event (Send or Broadcast); throws (or rejects
 * with) the RealtimeError that Send or Broadcast would have failed with.
 */
export type PublishOne = (event: PublishEvent) => Promise<unknown>;

export async function* publishStream(
  requests: AsyncIterable<PublishRequest>,
  publishOne: PublishOne,
  maxUnacknowledged: number,
  signal: AbortSignal,
): AsyncGenerator<PublishResponse> {
  /** Requests read so far (the next one's index). */
  let received = 0;
  /** Requests settled, as a prefix of the stream. */
  let handled = 0;
  /** `handled` as of the last response yielded. */
  let acknowledged = 0;
  /** Settled requests beyond the prefix, by index: undefined = still in flight. */
  const settled = new Map<number, PublishError | null>();
  /** Errors of the prefix not yet yielded. */
  let errors: PublishError[] = [];
  let readerDone = false;
  let readerError: { err: unknown } | undefined;
  /** Wakes the writer loop (a response is due, or the reader ended). */
  let wakeWriter: (() => void) | undefined;
  /** Wakes the reader once a response went out (room to read ahead). */
  let wakeReader: (() => void) | undefined;

  const wake = () => {
    const w = wakeWriter;
    wakeWriter = undefined;
    w?.();
  };

  const settle = (index: number, error: PublishError | null) => {
    if (index === handled && settled.size === 0) {
      // In order, the usual case: no bookkeeping beyond the count.
      if (error) errors.push(error);
      handled++;
      wake();
      return;
    }
    settled.set(index, error);
    while (settled.has(handled)) {
      const e = settled.get(handled)!;
      settled.delete(handled);
      if (e) errors.push(e);
      handled++;
    }
    wake();
  };

  const fail = (index: number, err: unknown) => {
    const e = asRealtimeError(err);
    settle(index, create(PublishErrorSchema, { index: BigInt(index), code: e.code as number, message: e.message }));
  };

  /**
   * Waits while maxUnacknowledged requests are read ahead of the last
   * response; once aborted, lets the requests go (as a for-await loop
   * would) and returns false.
   */
  const roomToRead = async (it: AsyncIterator<PublishRequest>) => {
    while (received - acknowledged >= maxUnacknowledged && !signal.aborted) {
      await new Promise<void>((resolve) => (wakeReader = resolve));
    }
    if (!signal.aborted) return true;
    await it.return?.();
    return false;
  };

  const read = async () => {
    const it = requests[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<PublishRequest>;
        try {
          next = await it.next();
        } catch (err) {
          // One request that is not protobuf: an error for its index, and
          // the stream goes on (the iterator stays usable; undecodable.ts).
          if (!(err instanceof UndecodableRequestError)) throw err;
          fail(received++, new RealtimeError(Code.InvalidArgument, err.detail));
          if (!(await roomToRead(it))) break;
          continue;
        }
        if (next.done) break;
        const index = received++;
        const event = next.value.event;
        if (event.case === undefined) {
          fail(index, new RealtimeError(Code.InvalidArgument, 'the request is empty: set "send" or "broadcast"'));
        } else {
          try {
            publishOne(event).then(
              () => settle(index, null),
              (err: unknown) => fail(index, err),
            );
          } catch (err) {
            fail(index, err);
          }
        }
        if (!(await roomToRead(it))) break;
      }
    } catch (err) {
      readerError = { err };
    } finally {
      readerDone = true;
      wake();
    }
  };

  const onAbort = () => {
    wake();
    const r = wakeReader;
    wakeReader = undefined;
    r?.();
  };
  signal.addEventListener("abort", onAbort);
  // The reader catches everything itself (readerError); it ends with the
  // requests, or at the abort.
  void read();
  try {
    for (;;) {
      signal.throwIfAborted();
      if (readerError) throw readerError.err;
      if (handled > acknowledged || errors.length > 0) {
        // Let the acks of this turn of the event loop merge into one.
        await new Promise<void>((resolve) => setImmediate(resolve));
        signal.throwIfAborted();
        const response = create(PublishResponseSchema, { handled: BigInt(handled), errors });
        acknowledged = handled;
        errors = [];
        const r = wakeReader;
        wakeReader = undefined;
        r?.();
        yield response;
        continue;
      }
      if (readerDone && handled === received) {
        // Everything is acknowledged; an empty stream still gets its answer.
        if (received === 0) yield create(PublishResponseSchema, { handled: 0n });
        return;
      }
      await new Promise<void>((resolve) => (wakeWriter = resolve));
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    // Unblock a reader waiting for room to read ahead.
    onAbort();
  }
}
