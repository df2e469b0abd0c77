/**
 * A Redis Cluster of the test's own: MASTERS redis-servers with
 * --cluster-enabled on free ports of 127.0.0.1, joined by
 * `redis-cli --cluster create` (no replicas, no persistence), that a test
 * can stop and start one master of (it comes back with its slots, empty).
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { freePort, answersPing } from "./net.js";

const run = promisify(execFile);

/** The masters of a test cluster: the fewest Redis Cluster accepts. */
export const CLUSTER_MASTERS = 3;
/** How long the cluster has to agree on its slots (cluster_state:ok on every node). */
const CLUSTER_OK_TIMEOUT_MS = 20_000;
/** A master that stops answering counts as failed after this (cluster-node-timeout). */
const CLUSTER_NODE_TIMEOUT_MS = 2_000;

export class OwnRedisCluster {
  readonly ports: number[];
  private readonly children: (ChildProcess | undefined)[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), "sb-cluster-"));

  /** ports: where its masters listen (a test that points a node at one before it is up); free ones by default. */
  constructor(ports: number[] = []) {
    this.ports = [...ports];
  }

  /** A seed URL: the first master (every node knows the whole cluster). */
  get url(): string {
    return `redis://127.0.0.1:${this.ports[0]}`;
  }

  async start(): Promise<void> {
    while (this.ports.length < CLUSTER_MASTERS) this.ports.push(await freePort());
    await Promise.all(this.ports.map((_, i) => this.startNode(i)));
    await run("redis-cli", [
      "--cluster",
      "create",
      ...this.ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    await this.waitOk();
  }

  private async startNode(i: number): Promise<void> {
    const port = this.ports[i]!;
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(this.dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        String(CLUSTER_NODE_TIMEOUT_MS),
      ],
      { stdio: "ignore" },
    );
    this.children[i] = child;
    const deadline = Date.now() + 10_000;
    while (!(await answersPing(`redis://127.0.0.1:${port}`, 1_000))) {
      if (child.exitCode !== null) throw new Error(`redis-server on ${port} exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not listen within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits until every node says cluster_state:ok. */
  async waitOk(): Promise<void> {
    const deadline = Date.now() + CLUSTER_OK_TIMEOUT_MS;
    for (;;) {
      const states = await Promise.all(this.ports.map((p) => this.clusterState(p)));
      if (states.every((s) => s === "ok")) return;
      if (Date.now() > deadline) throw new Error(`cluster not ok within ${CLUSTER_OK_TIMEOUT_MS} ms: ${states}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async clusterState(port: number): Promise<string> {
    const redis = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0 });
    redis.on("error", () => {});
    try {
      await redis.connect();
      const info = await redis.cluster("INFO");
      return /cluster_state:(\w+)/.exec(String(info))?.[1] ?? "?";
    } catch {
      return "down";
    } finally {
      redis.disconnect();
    }
  }

  /** The index of the master that owns key's slot. */
  async ownerOf(key: string): Promise<number> {
    const redis = new Redis({ port: this.ports[0]!, host: "127.0.0.1" });
    try {
      const slot = Number(await redis.cluster("KEYSLOT", key));
      const ranges = await redis.cluster("SLOTS");
      const owner = ranges.find(([from, to]) => slot >= from && slot <= to)!;
      return this.ports.indexOf(Number(owner[2]![1]));
    } finally {
      redis.disconnect();
    }
  }

  /** The masters' process ids (for CPU readings). */
  pids(): number[] {
    return this.children.map((c) => c!.pid!);
  }

  /** SIGKILLs master i: its data is gone, its slots are down until it is back. */
  async kill(i: number): Promise<void> {
    const child = this.children[i];
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.children[i] = undefined;
  }

  /** Starts master i again on its port, from its node config: it keeps its slots, empty. */
  async restart(i: number): Promise<void> {
    await this.kill(i);
    await this.startNode(i);
    await this.waitOk();
  }

  async stop(): Promise<void> {
    await Promise.all(this.ports.map((_, i) => this.kill(i)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
