/**
 * The scenarios, built from the options. Each says who connects, which
 * channel every connection joins, where the publisher sends, and how many
 * deliveries one publish makes (to turn a delivery rate into a publish rate
 * and to compute completeness).
 */
import type { Options } from "./lib/options.js";

/** Where each publish goes. */
export type Target =
  { kind: "channel"; channel: string } | { kind: "groups"; prefix: string; count: number } | { kind: "broadcast" };

export interface Scenario {
  /** Unique id in results, e.g. "fanout-1000". */
  id: string;
  /** The brief's letter: a fan-out, b groups, c broadcast, d idle, e send, f members. */
  family: "a" | "b" | "c" | "d" | "e" | "f";
  name: "fanout" | "groups" | "broadcast" | "idle" | "send" | "members";
  title: string;
  kind: "throughput" | "idle" | "members";
  clients: number;
  /** The channel connection i joins, or null for none. */
  channelOf(i: number): string | null;
  target: Target;
  /** Deliveries one publish makes when every member receives it. */
  deliveriesPerMessage: number;
  /** Whether the call (ack) latency also gates "sustained" (the Send RPC scenario). */
  gateOnCallLatency: boolean;
}

const n = (x: number) => x.toLocaleString("en-US");

export function buildScenarios(o: Options): Scenario[] {
  const groups = o.clients / o.groupSize;
  const groupOf = (i: number) => `g${Math.floor(i / o.groupSize)}`;
  const all: Scenario[] = [
    ...o.fanoutSizes.map((m): Scenario => ({
      id: `fanout-${m}`,
      family: "a",
      name: "fanout",
      title: `(a) fan-out: one channel of ${n(m)} members`,
      kind: "throughput",
      clients: m,
      channelOf: () => "fanout",
      target: { kind: "channel", channel: "fanout" },
      deliveriesPerMessage: m,
      gateOnCallLatency: false,
    })),
    {
      id: `groups-${o.clients}`,
      family: "b",
      name: "groups",
      title: `(b) ${n(o.clients)} clients in ${n(groups)} channels of ${o.groupSize}, publishes to random channels`,
      kind: "throughput",
      clients: o.clients,
      channelOf: groupOf,
      target: { kind: "groups", prefix: "g", count: groups },
      deliveriesPerMessage: o.groupSize,
      gateOnCallLatency: false,
    },
    {
      id: `broadcast-${o.clients}`,
      family: "c",
      name: "broadcast",
      title: `(c) broadcast to ${n(o.clients)} clients`,
      kind: "throughput",
      clients: o.clients,
      channelOf: () => null,
      target: { kind: "broadcast" },
      deliveriesPerMessage: o.clients,
      gateOnCallLatency: false,
    },
    {
      id: `idle-${o.clients}`,
      family: "d",
      name: "idle",
      title: `(d) idle memory: ${n(o.clients)} connections, each in one channel of ${o.groupSize}`,
      kind: "idle",
      clients: o.clients,
      channelOf: groupOf,
      target: { kind: "broadcast" },
      deliveriesPerMessage: 0,
      gateOnCallLatency: false,
    },
    {
      id: `send-${o.groupSize}`,
      family: "e",
      name: "send",
      title: `(e) the publish alone (for Switchboard: the Publish stream by default) to one channel of ${o.groupSize}`,
      kind: "throughput",
      clients: o.groupSize,
      channelOf: () => "send",
      target: { kind: "channel", channel: "send" },
      deliveriesPerMessage: o.groupSize,
      gateOnCallLatency: true,
    },
    {
      id: `members-${o.clients}`,
      family: "f",
      name: "members",
      title: `(f) members of one channel of ${n(o.clients)} (GetMembers; Socket.IO fetchSockets)`,
      kind: "members",
      clients: o.clients,
      channelOf: () => "members",
      target: { kind: "channel", channel: "members" },
      deliveriesPerMessage: 0,
      gateOnCallLatency: false,
    },
  ];
  if (o.scenarios.length === 0) return all;
  const wanted = new Set(o.scenarios);
  const picked = all.filter((s) => wanted.has(s.family) || wanted.has(s.name) || wanted.has(s.id));
  const unknown = o.scenarios.filter((w) => !all.some((s) => s.family === w || s.name === w || s.id === w));
  if (unknown.length)
    throw new Error(`--scenarios: unknown ${unknown.join(", ")} (known: ${all.map((s) => s.id).join(", ")}, a-f)`);
  return picked;
}
