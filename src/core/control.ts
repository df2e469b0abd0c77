import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ControlReply, ControlSchema, NodeState } from "../../gen/realtime/link/v1/link_pb.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import type { Broker, PublicationHandler, Publication } from "./broker.js";
import { apiChannel, APIS_CHANNEL, controlOf, controlPublication, EDGES_CHANNEL } from "./control-channels.js";
import { CONTROL_REPLY_TIMEOUT_MS } from "./limits.js";
import type { Tap } from "./tap.js";

/** What an API node attaches its receiver with (the watchers' source: a node of the broker that gets no broadcasts). */
export type ControlAttach = (handler: PublicationHandler) => {
  subscribe(channel: string): Promise<void>;
  close(): void;
};

export interface ControlPlaneOptions {
  /** Where questions are published. */
  broker: Broker;
  /** Where the answers are received. */
  attach: ControlAttach;
  /** This API node's id: its answers come on apiChannel(nodeId). */
  nodeId: string;
  /** This node's state, for Info. */
  self: () => NodeState;
  /**
   * Whether other API nodes may exist (Redis mode): this node then answers
   * Info on APIS_CHANNEL, and asks it. Otherwise (the embedded mode's one
   * API node) Info adds this node itself.
   */
  peers: boolean;
  /** This node's message tap (core/tap.ts): told when the tap is announced (Control.tap on APIS_CHANNEL). */
  tap?: Tap;
  /** How long answers are waited for. Default: CONTROL_REPLY_TIMEOUT_MS. */
  timeoutMs?: number;
  onError?: (err: unknown) => void;
}

/** What one question brought back. */
export interface Answers {
  /** One per node that answered, in the order they came. */
  readonly replies: ControlReply[];
  /** Nodes that received the question (the broker's count) and did not answer in time. */
  readonly unanswered: number;
}

/** How often a failed subscription of the control channels is tried again. */
export const CONTROL_RESUBSCRIBE_MS = 1_000;

type Command = MessageInitShape<typeof ControlSchema>["command"];

interface Pending {
  readonly replies: ControlReply[];
  /** How many answers to wait for; undefined until the broker said how many nodes it reached. */
  expected: number | undefined;
  readonly done: (a: Answers) => void;
  timer: NodeJS.Timeout | undefined;
}

/**
 * The API's side of the control plane (core/control-channels.ts): it asks
 * the nodes subscribed to a control channel and collects their answers.
 * The broker says how many nodes a question reached; ask() resolves once
 * that many answered, or at the deadline with the rest counted as
 * unanswered, never claiming an answer it did not get.
 */
export class ControlPlane {
  private readonly pending = new Map<bigint, Pending>();
  private nextId = 0n;
  private readonly node: ReturnType<ControlAttach>;
  private ready: Promise<void>;
  private readonly channels: string[];
  private readonly timeoutMs: number;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: ControlPlaneOptions) {
    this.timeoutMs = options.timeoutMs ?? CONTROL_REPLY_TIMEOUT_MS;
    this.node = options.attach((pub) => this.received(pub));
    this.channels = [apiChannel(options.nodeId), ...(options.peers ? [APIS_CHANNEL] : [])];
    this.ready = this.subscribe();
  }

  /**
   * Subscribes the node's channels. One that fails (Redis not up yet) is
   * tried again every CONTROL_RESUBSCRIBE_MS until it is in effect, so that
   * this node answers Info on its own; ask() waits for it.
   */
  private subscribe(): Promise<void> {
    const ready = Promise.all(this.channels.map((c) => this.node.subscribe(c))).then(() => {});
    ready.catch((err: unknown) => {
      if (this.closed) return;
      this.options.onError?.(err);
      this.retry = setTimeout(() => {
        if (this.ready === ready) this.ready = this.subscribe();
      }, CONTROL_RESUBSCRIBE_MS);
      this.retry.unref();
    });
    return ready;
  }

  /**
   * Publishes command on channel and waits for the answers of the nodes it
   * reached. Rejects with the broker's error (UNAVAILABLE) when it could
   * not be published.
   */
  async ask(channel: string, command: Command): Promise<Answers> {
    try {
      await this.ready;
    } catch {
      clearTimeout(this.retry);
      await (this.ready = this.subscribe()).catch((err: unknown) => {
        throw new RealtimeError(
          Code.Unavailable,
          `this API node cannot receive the edges' answers yet: ${err instanceof Error ? err.message : String(err)}`,
        );
      });
    }
    const id = ++this.nextId;
    let done!: (a: Answers) => void;
    const answered = new Promise<Answers>((resolve) => (done = resolve));
    const pending: Pending = { replies: [], expected: undefined, done, timer: undefined };
    this.pending.set(id, pending);
    try {
      const delivery = await this.options.broker.publish(
        controlPublication(channel, { id, replyTo: apiChannel(this.options.nodeId), command }),
      );
      pending.expected = delivery.edges;
    } catch (err) {
      this.pending.delete(id);
      throw err;
    }
    if (!this.settle(id, pending)) {
      pending.timer = setTimeout(() => this.finish(id, pending), this.timeoutMs);
    }
    return answered;
  }

  /** Info's answers of the API nodes: this node alone without peers, else every one that answers. */
  async apiNodes(): Promise<Answers> {
    if (!this.options.peers) return { replies: [this.selfReply(0n)], unanswered: 0 };
    return this.ask(APIS_CHANNEL, { case: "info", value: {} });
  }

  /**
   * Info's answers of the edges. The embedded hub refuses a publication
   * when no edge is linked: then there are none to list.
   */
  async edgeNodes(): Promise<Answers> {
    try {
      return await this.ask(EDGES_CHANNEL, { case: "info", value: {} });
    } catch (err) {
      if (!this.options.peers && err instanceof RealtimeError && err.code === Code.Unavailable)
        return { replies: [], unanswered: 0 };
      throw err;
    }
  }

  /**
   * Tells every node that the message tap is wanted for forMs (core/tap.ts
   * TapDemand): this one at once, the edges (and, with peers, the other API
   * nodes) with Control.tap, which asks no answer. Never throws; a failed
   * publish is the next announcement's to mend.
   */
  announceTap(forMs: number): void {
    this.options.tap?.want(forMs);
    const command: Command = { case: "tap", value: { forMs } };
    for (const channel of this.options.peers ? [EDGES_CHANNEL, APIS_CHANNEL] : [EDGES_CHANNEL]) {
      this.options.broker
        .publish(controlPublication(channel, { command }))
        .catch((err: unknown) => this.options.onError?.(err));
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    for (const [id, p] of this.pending) this.finish(id, p);
    this.node.close();
  }

  private received(pub: Publication): void {
    let control;
    try {
      control = controlOf(pub);
    } catch (err) {
      this.options.onError?.(err);
      return;
    }
    const command = control.command;
    if (command.case === "reply") {
      const p = this.pending.get(command.value.id);
      if (!p) return; // late: counted as unanswered already
      p.replies.push(command.value);
      this.settle(command.value.id, p);
      return;
    }
    if (command.case === "tap") {
      this.options.tap?.want(command.value.forMs);
      return;
    }
    if (command.case === "info" && control.replyTo !== "") {
      const reply = controlPublication(control.replyTo, {
        id: control.id,
        command: { case: "reply", value: this.selfReply(control.id) },
      });
      this.options.broker.publish(reply).catch((err: unknown) => this.options.onError?.(err));
    }
  }

  private selfReply(id: bigint): ControlReply {
    return {
      $typeName: "realtime.link.v1.ControlReply",
      id,
      connections: 0,
      changed: 0,
      node: this.options.self(),
      details: [],
    };
  }

  /** Finishes the question when every answer is in; true when it did. */
  private settle(id: bigint, p: Pending): boolean {
    if (p.expected === undefined || p.replies.length < p.expected) return false;
    this.finish(id, p);
    return true;
  }

  private finish(id: bigint, p: Pending): void {
    if (!this.pending.delete(id)) return;
    clearTimeout(p.timer);
    p.done({ replies: p.replies, unanswered: Math.max(0, (p.expected ?? 0) - p.replies.length) });
  }
}
