/**
 * The seam between the harness and a system under test. One adapter per
 * system (ws.ts, socketio.ts, switchboard.ts) implements SystemAdapter; its
 * three parts run in three kinds of process:
 *
 *   start()            the coordinator: launch the server process(es)
 *   connect()          a load-client worker: one client connection
 *   createPublisher()  the publisher worker: the out-of-process publisher
 *
 * An adapter module must be cheap to import in every one of them: load
 * heavy dependencies (gRPC, protobuf) lazily inside the part that needs them.
 */
import type { ManagedProcess, SpawnSpec } from "../lib/proc.js";

/** What every bench event carries: the only fields the harness reads. */
export interface BenchPayload {
  /** Send time, µs since the epoch (lib/clock.ts nowMicros()). */
  t: number;
  /** The phase (measurement window) the event belongs to. */
  k: number;
  /** Padding to the configured payload size. */
  p?: string;
}

/** Called for every application event a client receives. */
export type DeliverySink = (sentMicros: number, phase: number) => void;

export interface ClientConnection {
  /** Joins a channel; resolves when the server acknowledged the join. */
  join(channel: string): Promise<void>;
  close(): void;
}

export interface Publisher {
  /** Publishes to one channel; resolves when the server acknowledged it. */
  publish(channel: string, payload: BenchPayload): Promise<void>;
  /** Publishes to every client connection; resolves on acknowledgement. */
  broadcast(payload: BenchPayload): Promise<void>;
  /** Lists a channel's members; resolves with how many there are. */
  members(channel: string): Promise<number>;
  close(): Promise<void>;
}

/** A running deployment of a system. */
export interface Deployment {
  /** Where clients connect; several for several edges (clients spread over them). */
  clientUrls: string[];
  /** Where the publisher connects. */
  publishUrl: string;
  /** Every server process, for CPU and RSS accounting (summed). */
  processes: ManagedProcess[];
}

export interface StartContext {
  /** Spawns a Node process owned by the current run (stopped with it). */
  spawn(spec: SpawnSpec): Promise<ManagedProcess>;
  /** Absolute path of the repository root (the cwd of the service processes). */
  repoRoot: string;
}

export interface SystemAdapter {
  /** The id used on the command line (`--systems`) and in results. */
  readonly name: string;
  /** One line for the report: what exactly is measured. */
  readonly description: string;
  /**
   * Why members() is not comparable or not available, or undefined when it
   * is. Scenario `members` reports N/A with this text.
   */
  readonly membersUnsupported?: string;
  start(ctx: StartContext): Promise<Deployment>;
  connect(url: string, onDelivery: DeliverySink, onClose: (reason: string) => void): Promise<ClientConnection>;
  createPublisher(url: string): Promise<Publisher>;
}
