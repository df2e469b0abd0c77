import { randomFillSync } from "node:crypto";
import type { RedisCommands } from "./connection.js";
import type { HistoryQuery } from "../core/broker.js";
import type { HistoryLimits } from "../core/history-rules.js";

/*
 * Positions and history of the channels that keep history, in Redis.
 *
 * The keys of channel <ch>, under the prefix P, beside its pub/sub channel
 * `P c:<ch>` (see RedisBroker):
 *   P p:{P c:<ch>}   string "<epoch>:<offset of the last publication>:<dataset id>" (PX
 *                          the position TTL, written by every publish and read)
 *   P h:{P c:<ch>}   list  the retained publications, newest first: each a 13-digit Redis
 *                          time in ms, then realtime.link.v1.Publication in protobuf binary
 *                          with its offset and epoch (PEXPIRE the history's age)
 *
 * The part in braces is a Redis Cluster hash tag equal to the pub/sub
 * channel's name, which has no braces of its own (channel names cannot have
 * any), so both keys and the SPUBLISH of one script lie in one slot: the
 * slot the channel's sharded pub/sub already uses. When the prefix carries a
 * hash tag itself, its tag decides for all three alike. (A prefix with an
 * unmatched brace breaks that rule: on Cluster, use one without, or with a
 * whole tag.) The pub/sub channel's name is unchanged, so nodes with and
 * without history reach each other.
 *
 * Why a list: the offsets held are always contiguous (a publish pushes at the
 * head with the next offset, trimming only ever pops the tail, and a new
 * epoch deletes the list), so the entry of offset o is at index top - o:
 * a read since an offset is one LRANGE of computed indices, a publish one
 * LPUSH plus an LTRIM, and nothing per entry besides the 13-byte stamp. A
 * stream would give XRANGE by id, but its ids would be the offsets anyway,
 * and it costs more per key and per entry at the sizes history has (tens to
 * hundreds of entries), with nothing else of it used.
 */

/** How long a channel's position outlives its last publish or read: a quiet channel remembers its epoch and offset this long. */
export const REDIS_POSITION_TTL_MS = 7 * 24 * 3600_000;

/**
 * Redis's replication id (INFO replication, master_replid) names the
 * dataset the positions live in: it changes when a replica is promoted and
 * on every start, even one that reloads the data (Redis 7.0 with AOF or
 * RDB: measured), which is the safe side, since a reload may lack the last
 * writes. Asked once per connection, before its first script (on Redis Cluster, by
 * the script itself); positions
 * written under another id are lost ones (see COMMON). The first
 * SERVER_ID_CHARS hex characters are enough to tell two apart.
 */
export const SERVER_ID_CHARS = 12;

/** Length of the Redis-time stamp (ms, decimal) that starts every history entry. */
export const HISTORY_STAMP_BYTES = 13;

export type { HistoryLimits };

/**
 * The tags (field number and wire type, one byte each) the script writes
 * into realtime.link.v1.Publication: the offset as a varint, then the epoch
 * as a string, two consecutive field numbers, between the fields numbered
 * below them and those above (the publisher hands the script both parts
 * apart: wire/publication.ts positionIndex), so the bytes are what
 * protobuf-es writes.
 */
export interface PositionFields {
  offsetTag: number;
  epochTag: number;
}

/**
 * Shared by both scripts: the channel's position, written back with its TTL
 * (keep), and the trim by age from the tail. ARGV[1] is a fresh epoch,
 * ARGV[2] the id of the Redis dataset the node talks to (see serverId), or
 * '' on Redis Cluster, where each shard is a dataset of its own: the script
 * then reads its shard's id itself (INFO inside a script: a few µs).
 * A position is lost when missing, or written under another dataset id (a
 * failover: the replica may lack the last writes, so their offsets could
 * be handed out again): then the channel starts a new epoch at offset 0 and
 * its old history is deleted.
 */
const COMMON = `
local dataset = ARGV[2]
if dataset == '' then
  dataset = string.sub(string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '-', 1, ${SERVER_ID_CHARS})
end
local function position()
  local m = redis.call('GET', KEYS[1])
  if m then
    local epoch, offset, server = string.match(m, '^([^:]+):(%d+):(.*)$')
    if epoch and server == dataset then return epoch, tonumber(offset) end
  end
  redis.call('DEL', KEYS[2])
  return ARGV[1], 0
end
local function keep(epoch, offset, ttl)
  redis.call('SET', KEYS[1], epoch .. ':' .. string.format('%.0f', offset) .. ':' .. dataset, 'PX', ttl)
end
local function now()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end
local function trim(stamp, age, len)
  if age <= 0 then return end
  local cutoff = tonumber(stamp) - age
  for _ = 1, len do
    local last = redis.call('LINDEX', KEYS[2], -1)
    if not last or tonumber(string.sub(last, 1, ${HISTORY_STAMP_BYTES})) > cutoff then return end
    redis.call('RPOP', KEYS[2])
  end
end
`;

/**
 * Publishes to a channel with history, atomically: the channel's position
 * (a new epoch when lost), its next offset, the publication with both
 * written in (so every edge gets the same bytes and the same position),
 * stored at the head of the history, trimmed by count and age, TTLs
 * refreshed, and published.
 * KEYS: position, history list.
 * ARGV: epoch candidate, dataset id, pub/sub channel, the publication's
 * bytes before its position, size, age ms, position TTL ms, '1' for
 * SPUBLISH, its bytes after its position.
 * Returns {receivers, offset, epoch}.
 */
function publishScript(fields: PositionFields): string {
  return `${COMMON}
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end
local epoch, offset = position()
offset = offset + 1
keep(epoch, offset, ARGV[7])
local bytes = ARGV[4] .. string.char(${fields.offsetTag}) .. varint(offset)
  .. string.char(${fields.epochTag}) .. varint(#epoch) .. epoch .. ARGV[9]
local stamp = now()
local size, age = tonumber(ARGV[5]), tonumber(ARGV[6])
local len = redis.call('LPUSH', KEYS[2], stamp .. bytes)
if len > size then
  redis.call('LTRIM', KEYS[2], 0, size - 1)
  len = size
end
trim(stamp, age, len - 1)
redis.call('PEXPIRE', KEYS[2], age > 0 and age or ARGV[7])
local receivers = redis.call(ARGV[8] == '1' and 'SPUBLISH' or 'PUBLISH', ARGV[3], bytes)
return {receivers, offset, epoch}`;
}

/**
 * Reads a channel's position and a bounded part of its history, in one
 * script (it trims what is past its age, and creates the position when
 * lost, so that a position handed out before the first publish stays valid
 * for it).
 * KEYS: position, history list.
 * ARGV: epoch candidate, dataset id, age ms, position TTL ms, since offset
 * ('' for none), since epoch, limit, '1' for newest first.
 * Returns {epoch, top, complete (0/1, or 0 without since), entries
 * newest first...}: without since, the newest `limit` retained (or the
 * oldest `limit` when oldest first); with since, when complete, those
 * after since.offset: the first `limit` of them oldest first, the last
 * `limit` newest first; none when not complete.
 */
const READ = `${COMMON}
local epoch, top = position()
keep(epoch, top, ARGV[4])
trim(now(), tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]))
local len = redis.call('LLEN', KEYS[2])
local limit = tonumber(ARGV[7])
local newest = ARGV[8] == '1'
-- offsets top - len + 1 .. top are held, the newest at index 0
local first, last
local complete = 0
if ARGV[5] ~= '' then
  local since = tonumber(ARGV[5])
  if ARGV[6] == epoch and since >= top - len and since <= top then
    complete = 1
    first, last = since + 1, top
  end
else
  first, last = top - len + 1, top
end
local out = {epoch, top, complete}
if not first or first > last or limit <= 0 then return out end
if last - first + 1 > limit then
  if newest then first = last - limit + 1 else last = first + limit - 1 end
end
local entries = redis.call('LRANGE', KEYS[2], top - last, top - first)
for i = 1, #entries do out[#out + 1] = entries[i] end
return out`;

type Script = (...args: (string | Buffer | number)[]) => Promise<unknown>;
interface Scripts {
  rtHistoryPublish: Script;
  rtHistoryReadBuffer: Script;
}

/** What one history read returned: entries newest first, each the publication's bytes. */
export interface HistoryRead {
  epoch: string;
  /** The offset of the channel's last publication (0n: none yet). */
  top: bigint;
  /** With since: every publication after it is still kept (and its epoch is the channel's). */
  complete: boolean;
  /** The publications' bytes (views of the reply), newest first. */
  entries: Buffer[];
}

/**
 * RedisHistory runs the two scripts over the node's command connection
 * (ioredis sends EVALSHA, and the script's text once per connection or
 * after NOSCRIPT, as after a Redis restart). It keeps nothing itself: every
 * position and entry is in Redis, so every node answers the same.
 */
export class RedisHistory {
  private readonly scripts: Scripts;
  private readonly positionPrefix: string;
  private readonly historyPrefix: string;
  private readonly epochs = new EpochSource();
  /** The dataset id of the current connection (see serverId); reset when it closes. */
  private server: Promise<string> | undefined;

  constructor(
    private readonly command: RedisCommands,
    prefix: string,
    fields: PositionFields,
    /** Redis Cluster: each shard's dataset id is read by the script on that shard. */
    private readonly perShard = false,
  ) {
    command.on("close", () => (this.server = undefined));
    this.positionPrefix = `${prefix}p:`;
    this.historyPrefix = `${prefix}h:`;
    command.defineCommand("rtHistoryPublish", { numberOfKeys: 2, lua: publishScript(fields) });
    command.defineCommand("rtHistoryRead", { numberOfKeys: 2, lua: READ });
    this.scripts = command as unknown as Scripts;
  }

  /** The current connection's dataset id (see parseServerId). */
  private serverId(): Promise<string> {
    if (this.perShard) return Promise.resolve("");
    this.server ??= this.command.info("replication").then(parseServerId, (err: unknown) => {
      this.server = undefined;
      throw err;
    });
    return this.server;
  }

  /** The channel's two keys, in the slot of its pub/sub channel `pubsub`. */
  keys(pubsub: string): [position: string, history: string] {
    const tag = `{${pubsub}}`;
    return [this.positionPrefix + tag, this.historyPrefix + tag];
  }

  /**
   * Publishes bytes (an encoded publication without a position) on pubsub
   * with the channel's next position, written in at byte positionAt
   * (wire/publication.ts positionIndex); rejects with Redis's error.
   */
  async publish(
    pubsub: string,
    bytes: Uint8Array,
    positionAt: number,
    limits: HistoryLimits,
    sharded: boolean,
  ): Promise<{ receivers: number; offset: bigint; epoch: string }> {
    const [position, history] = this.keys(pubsub);
    const server = await this.serverId();
    const [receivers, offset, epoch] = (await this.scripts.rtHistoryPublish(
      position,
      history,
      this.epochs.next(),
      server,
      pubsub,
      Buffer.from(bytes.buffer, bytes.byteOffset, positionAt),
      limits.size,
      limits.ageMs,
      positionTtl(limits),
      sharded ? "1" : "0",
      Buffer.from(bytes.buffer, bytes.byteOffset + positionAt, bytes.byteLength - positionAt),
    )) as [number, number, string];
    return { receivers: Number(receivers), offset: BigInt(offset), epoch: String(epoch) };
  }

  /** Reads the channel's position and part of its history (see READ); rejects with Redis's error. */
  async read(pubsub: string, limits: HistoryLimits, query: HistoryQuery): Promise<HistoryRead> {
    const [position, history] = this.keys(pubsub);
    const server = await this.serverId();
    const reply = (await this.scripts.rtHistoryReadBuffer(
      position,
      history,
      this.epochs.next(),
      server,
      limits.ageMs,
      positionTtl(limits),
      query.since ? String(query.since.offset) : "",
      query.since?.epoch ?? "",
      Math.max(0, Math.floor(query.limit)),
      query.newestFirst ? "1" : "0",
    )) as [Buffer, number, number, ...Buffer[]];
    const [epoch, top, complete, ...raw] = reply;
    return {
      epoch: epoch.toString(),
      top: BigInt(top),
      complete: Number(complete) === 1,
      entries: raw.map((entry) => entry.subarray(HISTORY_STAMP_BYTES)),
    };
  }
}

function parseServerId(info: string): string {
  const id = /^master_replid:([0-9a-f]+)/m.exec(info)?.[1];
  // A server that does not say (a proxy, an old version): one id for all.
  return id ? id.slice(0, SERVER_ID_CHARS) : "-";
}

/** The position must outlive the history it numbers. */
function positionTtl(limits: HistoryLimits): number {
  return Math.max(REDIS_POSITION_TTL_MS, 2 * limits.ageMs);
}

/** Bytes of randomness in an epoch: 48 bits, 8 characters of base64url. */
export const EPOCH_RANDOM_BYTES = 6;

/**
 * Fresh epoch candidates, one per script call (a script uses it only when
 * the channel's position is lost): random, so that a channel never gets an
 * epoch it had before. Drawn from a pool refilled 1 KiB at a time, so that
 * a publish does not pay for a call into the system's random source.
 */
class EpochSource {
  private readonly pool = Buffer.alloc(EPOCH_RANDOM_BYTES * 170);
  private used = this.pool.length;

  next(): string {
    if (this.used === this.pool.length) {
      randomFillSync(this.pool);
      this.used = 0;
    }
    const epoch = this.pool.toString("base64url", this.used, this.used + EPOCH_RANDOM_BYTES);
    this.used += EPOCH_RANDOM_BYTES;
    return epoch;
  }
}
