import { toBinary } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import type {
  OnClientSendRequest,
  OnClientSendResponse,
  OnConnectRequest,
  OnConnectResponse,
  OnJoinRequest,
  OnJoinResponse,
} from "../../gen/realtime/v1/hooks_pb.js";
import { Code, RealtimeError } from "../protocol/errors.js";
import { ChannelGrants, MAX_CHANNEL_GRANTS, type Identity } from "./identity.js";
import { MAX_DISCONNECT_REASON_BYTES, MAX_USER_ID_LENGTH, type Limits } from "./limits.js";
import { checkChannel, checkEvent } from "./names.js";
import type { HookName, HookOutcome, Observer } from "./observer.js";

/** A client send's payload (Send.payload: json or binary). */
export type SendPayload = OnClientSendRequest["payload"];

/**
 * The hooks a backend implements (realtime.v1.Hooks, proto/realtime/v1/hooks.proto):
 * what the edge asks, when, and what it does with the answer. The call
 * itself is the adapter's (src/hooks/, over gRPC); this module knows no
 * transport.
 *
 * Contract: each call has a deadline (timeoutMs). An answer is checked
 * before it is used (a result set; names, sizes and counts within the
 * limits a client has); a call that fails, times out or answers what does
 * not pass is a failure, and a failure is handled as failOpen says: refused
 * (UNAVAILABLE, HTTP 503 for a connection) or let through as if allowed (a
 * connection as anonymous). Every call is counted by outcome.
 */

/** Default of REALTIME_HOOKS_TIMEOUT_MS. */
export const DEFAULT_HOOK_TIMEOUT_MS = 1_000;

/** The adapter: one call per hook, rejecting on any failure (status, deadline). */
export interface HooksClient {
  onConnect(req: OnConnectRequest, timeoutMs: number): Promise<OnConnectResponse>;
  onJoin(req: OnJoinRequest, timeoutMs: number): Promise<OnJoinResponse>;
  onClientSend(req: OnClientSendRequest, timeoutMs: number): Promise<OnClientSendResponse>;
}

export interface HookRules {
  client: HooksClient;
  /** Ask OnConnect about upgrades without a token. */
  connect: boolean;
  /** Ask OnJoin about channels under these prefixes. */
  joinPrefixes: readonly string[];
  /** Ask OnClientSend about sends to channels under these prefixes. */
  sendPrefixes: readonly string[];
  timeoutMs: number;
  failOpen: boolean;
  /** The client limits that an answer must keep (profile size, channels per connection). */
  limits: Limits;
  observer?: Observer;
  /** Told about every failed call (for the log). */
  onFailure?: (hook: HookName, err: unknown) => void;
}

/** A connection the hook accepted: who it is, and the channels it joins at once. */
export interface HookIdentity extends Identity {
  readonly profile?: Value;
  readonly channels?: readonly string[];
}

/** The hook refused: HTTP 403 for a connection, PERMISSION_DENIED otherwise, with its reason. */
export class HookRefused extends RealtimeError {
  constructor(hook: string, reason: string) {
    super(Code.PermissionDenied, `refused by the backend's ${hook} hook: ${clip(reason) || "no reason given"}`);
  }
}

/** The outcome each answer counts as. */
const OUTCOME_OF: Record<string, HookOutcome> = {
  accept: "allow",
  allow: "allow",
  refuse: "deny",
  deny: "deny",
  rewrite: "rewrite",
};

/** An answer that breaks the contract: a failure like an error. */
class InvalidAnswer extends Error {}

/** What Edge asks of the hooks (undefined: none configured). */
export class Hooks {
  constructor(private readonly rules: HookRules) {}

  /** Whether OnConnect is asked about connections without a token. */
  get connects(): boolean {
    return this.rules.connect;
  }

  joins(channel: string): boolean {
    return this.rules.joinPrefixes.some((p) => channel.startsWith(p));
  }

  sends(channel: string): boolean {
    return this.rules.sendPrefixes.some((p) => channel.startsWith(p));
  }

  /**
   * Asks OnConnect. Resolves with the identity it gives, or (failed, fail
   * open) undefined: let in as anonymous. Rejects with HookRefused, or
   * RealtimeError(UNAVAILABLE) when it failed and fails closed.
   */
  async connect(req: Omit<OnConnectRequest, "$typeName">): Promise<HookIdentity | undefined> {
    const res = await this.ask("connect", () =>
      this.rules.client.onConnect({ $typeName: "realtime.v1.OnConnectRequest", ...req }, this.rules.timeoutMs),
    );
    if (res === undefined) return undefined;
    const r = this.checked("connect", () => {
      const result = res.result;
      if (result.case === "refuse") return result;
      if (result.case !== "accept") throw new InvalidAnswer("OnConnectResponse has no result: set accept or refuse");
      const a = result.value;
      if (a.userId.length > MAX_USER_ID_LENGTH)
        throw new InvalidAnswer(`user_id is over ${MAX_USER_ID_LENGTH} characters`);
      if (a.channels.length > this.rules.limits.maxChannelsPerConnection)
        throw new InvalidAnswer(`${a.channels.length} channels: over the per-connection limit`);
      for (const c of a.channels) checkChannel(c, "channels[]");
      if (a.grants.length > MAX_CHANNEL_GRANTS) throw new InvalidAnswer(`over ${MAX_CHANNEL_GRANTS} grants`);
      if (a.grants.some((g) => typeof g !== "string" || g.length === 0)) throw new InvalidAnswer("an empty grant");
      if (a.profile !== undefined && toBinary(ValueSchema, a.profile).length > this.rules.limits.maxProfileBytes)
        throw new InvalidAnswer("the profile is over the profile limit");
      return result;
    });
    if (r === undefined) return undefined;
    if (r.case === "refuse") throw new HookRefused("OnConnect", r.value.reason);
    const a = r.value;
    return {
      userId: a.userId,
      expiresAt: undefined,
      grants: new ChannelGrants(a.grants),
      profile: a.profile,
      channels: [...new Set(a.channels)],
    };
  }

  /** Asks OnJoin; resolves when the join may go ahead, rejects with HookRefused or UNAVAILABLE. */
  async join(connectionId: string, userId: string, channel: string, serverSide: boolean): Promise<void> {
    const res = await this.ask("join", () =>
      this.rules.client.onJoin(
        { $typeName: "realtime.v1.OnJoinRequest", connectionId, userId, channel, serverSide },
        this.rules.timeoutMs,
      ),
    );
    if (res === undefined) return;
    const result = this.checked("join", () => {
      if (res.result.case === undefined) throw new InvalidAnswer("OnJoinResponse has no result: set allow or deny");
      return res.result;
    });
    if (result?.case === "deny") throw new HookRefused("OnJoin", result.value.reason);
  }

  /**
   * Asks OnClientSend; resolves with the event to deliver (the client's, or
   * the hook's rewrite), rejects with HookRefused or UNAVAILABLE.
   */
  async send(
    connectionId: string,
    userId: string,
    channel: string,
    event: string,
    payload: SendPayload,
  ): Promise<{ event: string; payload: SendPayload }> {
    const res = await this.ask("send", () =>
      this.rules.client.onClientSend(
        { $typeName: "realtime.v1.OnClientSendRequest", connectionId, userId, channel, event, payload },
        this.rules.timeoutMs,
      ),
    );
    if (res === undefined) return { event, payload };
    const result = this.checked("send", () => {
      const r = res.result;
      if (r.case === undefined)
        throw new InvalidAnswer("OnClientSendResponse has no result: set allow, deny or rewrite");
      if (r.case === "rewrite") {
        if (r.value.event !== "") checkEvent(r.value.event, "rewrite.event");
        if (r.value.payload.case === undefined) throw new InvalidAnswer("rewrite has no payload: set json or binary");
      }
      return r;
    });
    if (result === undefined || result.case === "allow") return { event, payload };
    if (result.case === "deny") throw new HookRefused("OnClientSend", result.value.reason);
    return { event: result.value.event || event, payload: result.value.payload };
  }

  /** Makes the call, timed; undefined when it failed and fails open. */
  private async ask<T>(hook: HookName, call: () => Promise<T>): Promise<T | undefined> {
    const started = performance.now();
    try {
      const res = await call();
      this.rules.observer?.hookTimed(hook, (performance.now() - started) / 1000);
      return res;
    } catch (err) {
      this.rules.observer?.hookTimed(hook, (performance.now() - started) / 1000);
      return this.failed(hook, "error", err);
    }
  }

  /**
   * The answer, checked and counted by its result; undefined when it does
   * not pass and fails open.
   */
  private checked<T extends { case: string }>(hook: HookName, check: () => T): T | undefined {
    let result: T;
    try {
      result = check();
    } catch (err) {
      return this.failed(hook, "invalid", err);
    }
    this.rules.observer?.hookCalled(hook, OUTCOME_OF[result.case] ?? "allow");
    return result;
  }

  private failed(hook: HookName, outcome: HookOutcome, err: unknown): undefined {
    this.rules.observer?.hookCalled(hook, outcome);
    this.rules.onFailure?.(hook, err);
    if (this.rules.failOpen) return undefined;
    const why = err instanceof Error ? err.message : String(err);
    throw new RealtimeError(
      Code.Unavailable,
      `the backend's ${hook} hook ${outcome === "invalid" ? "gave an invalid answer" : "failed"} (${clip(why)}): try again shortly`,
    );
  }
}

/** reason cut to what a close frame or a status line should carry. */
function clip(reason: string): string {
  const bytes = Buffer.from(reason);
  if (bytes.length <= MAX_DISCONNECT_REASON_BYTES) return reason;
  return bytes
    .subarray(0, MAX_DISCONNECT_REASON_BYTES)
    .toString()
    .replace(/\uFFFD+$/, "");
}
