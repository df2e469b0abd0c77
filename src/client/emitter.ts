/**
 * A small listener registry that both browsers and Node can run (no
 * node:events). Its contract, which the SDK's dispatch relies on:
 *  - listeners run synchronously, in the order they were added;
 *  - a listener added or removed during an emit takes effect from the next
 *    emit (each emit walks a snapshot);
 *  - a listener that throws does not stop the others: the error goes to the
 *    `onListenerError` hook given to the constructor.
 */

interface Entry {
  readonly cb: (payload: never) => void;
  readonly once: boolean;
}

/** Listener of every event of an emitter: the event name, then its payload. */
export type AnyListener<M> = (event: keyof M & string, payload: M[keyof M]) => void;

/**
 * Emitter keeps listeners per event name of the map M (event name → payload
 * type); each listener gets one argument, the payload.
 */
export class Emitter<M extends object> {
  readonly #listeners = new Map<string, Entry[]>();
  #any: AnyListener<M>[] = [];

  /**
   * @param onListenerError gets every error a listener throws, with the event
   *   name; it must not throw (what it throws is dropped).
   */
  constructor(private readonly onListenerError: (err: unknown, event: string) => void) {}

  /** Calls cb with the payload of every `event` until off(event, cb). */
  on<K extends keyof M & string>(event: K, cb: (payload: M[K]) => void): void {
    this.#add(event, { cb, once: false });
  }

  /** Calls cb with the payload of the next `event` only. off(event, cb) cancels it. */
  once<K extends keyof M & string>(event: K, cb: (payload: M[K]) => void): void {
    this.#add(event, { cb, once: true });
  }

  /**
   * Removes every registration of cb for event (on and once alike), or every
   * listener of event when cb is omitted.
   */
  off<K extends keyof M & string>(event: K, cb?: (payload: M[K]) => void): void {
    if (cb === undefined) {
      this.#listeners.delete(event);
      return;
    }
    const list = this.#listeners.get(event);
    if (list === undefined) return;
    const kept = list.filter((e) => e.cb !== cb);
    if (kept.length === 0) this.#listeners.delete(event);
    else this.#listeners.set(event, kept);
  }

  /** Calls cb with the name and payload of every event, after that event's own listeners. */
  onAny(cb: AnyListener<M>): void {
    this.#any = [...this.#any, cb];
  }

  /** Removes cb from the onAny listeners, or all of them when cb is omitted. */
  offAny(cb?: AnyListener<M>): void {
    this.#any = cb === undefined ? [] : this.#any.filter((l) => l !== cb);
  }

  /** The number of listeners of event, not counting onAny listeners. */
  listenerCount(event: keyof M & string): number {
    return this.#listeners.get(event)?.length ?? 0;
  }

  /** Removes every listener, onAny ones included. */
  clear(): void {
    this.#listeners.clear();
    this.#any = [];
  }

  /**
   * Calls the listeners of event, then the onAny listeners, with payload.
   * Returns whether any listener was called. Never throws.
   */
  emit<K extends keyof M & string>(event: K, payload: M[K]): boolean {
    const list = this.#listeners.get(event);
    const any = this.#any;
    if (list !== undefined) {
      // Drop once-listeners before calling anything, so that a listener that
      // emits the same event again does not run them twice.
      if (list.some((e) => e.once)) {
        const kept = list.filter((e) => !e.once);
        if (kept.length === 0) this.#listeners.delete(event);
        else this.#listeners.set(event, kept);
      }
      for (const entry of list) {
        this.#call(event, () => (entry.cb as (p: M[K]) => void)(payload));
      }
    }
    for (const cb of any) {
      this.#call(event, () => cb(event, payload));
    }
    return (list?.length ?? 0) + any.length > 0;
  }

  #add(event: string, entry: Entry): void {
    const list = this.#listeners.get(event);
    // Copy on write: an emit in progress keeps walking its own snapshot.
    this.#listeners.set(event, list === undefined ? [entry] : [...list, entry]);
  }

  #call(event: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      try {
        this.onListenerError(err, event);
      } catch {
        // The hook broke its contract; dropping is all that is left to do.
      }
    }
  }
}
