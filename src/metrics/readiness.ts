/**
 * Whether a process should receive traffic now. It is NOT ready while it
 * starts, while it drains before stopping, and while any dependency it
 * needs (an edge's link to the API, the API's Redis where used) is down.
 * /readyz (http.ts) and the gRPC health service's overall status follow it.
 */

export type Phase = "starting" | "serving" | "draining";

export interface ReadinessStatus {
  ready: boolean;
  /** "ready", or why not: "starting", "draining", or "<dependency> down". */
  reason: string;
}

export class Readiness {
  private phase: Phase = "starting";
  /** name -> up; a dependency is down until it is reported up. */
  private readonly dependencies = new Map<string, boolean>();
  private readonly listeners = new Set<(status: ReadinessStatus) => void>();
  private last: ReadinessStatus = this.status();

  /**
   * Declares a dependency the process cannot serve without; it counts as
   * down until set(name, true).
   */
  require(name: string): this {
    if (!this.dependencies.has(name)) this.dependencies.set(name, false);
    this.changed();
    return this;
  }

  /** Reports a dependency up or down. */
  set(name: string, up: boolean): void {
    this.dependencies.set(name, up);
    this.changed();
  }

  /** Start-up is over. Ignored once draining: a drain is final. */
  serving(): void {
    if (this.phase === "draining") return;
    this.phase = "serving";
    this.changed();
  }

  /** The process is stopping: not ready from now on. */
  draining(): void {
    this.phase = "draining";
    this.changed();
  }

  status(): ReadinessStatus {
    if (this.phase !== "serving") return { ready: false, reason: this.phase };
    for (const [name, up] of this.dependencies) if (!up) return { ready: false, reason: `${name} down` };
    return { ready: true, reason: "ready" };
  }

  /** Calls listener with every change of status (not with the current one). Returns an unsubscribe. */
  onChange(listener: (status: ReadinessStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    const next = this.status();
    if (next.ready === this.last.ready && next.reason === this.last.reason) return;
    this.last = next;
    for (const listener of this.listeners) listener(next);
  }
}
