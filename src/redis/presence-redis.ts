import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { RedisCommands } from "./connection.js";
import { randomUUID } from "node:crypto";
import { MemberSchema } from "../../gen/realtime/client/v1/client_pb.js";
import type {
  ChannelCount,
  Member,
  MemberPage,
  PresenceChange,
  PresenceDirectory,
  PresenceStats,
  ReportChanges,
  Transition,
} from "../core/presence.js";
import { redisUnavailable } from "./connection.js";
import {
  REDIS_MEMBERS_SCAN_MAX,
  REDIS_SWEEP_STEP_MEMBERS,
  REDIS_SWEPT_MEMORY_MS,
  REDIS_SYNC_STEP_MEMBERS,
} from "./limits.js";

/*
 * The keys, under the prefix P:
 *   P m:<channel>         hash   member id -> "<edge id>:" + realtime.client.v1.Member (binary)
 *   P mi:<channel>        zset   the channel's member ids (all score 0): the order of pages, for ZRANGEBYLEX
 *   P mu:<channel>        hash   user id -> how many of its connections are members (no anonymous ones)
 *   P channels            zset   the channels that have members (all score 0, for ZRANGEBYLEX)
 *   P edges               set    the ids of the registered edges
 *   P edge:<id>           string the edge's liveness: exists while the edge heartbeats (PX ttl)
 *   P edge:<id>:channels  set    the channels where the edge may hold members
 *   P edge:<id>:members   set    "<channel>\0<member id>" of every member the edge holds: what a sweep
 *                                removes, step by step, without reading whole channels
 *   P edge:<id>:members-old set  during a sync: the index as it was before (SYNC_BEGIN)
 *   P edge:<id>:indexed   string the edge keeps edge:<id>:members (set by its sync; an edge of an
 *                                earlier version has none, and is swept channel by channel)
 *   P sweeping            set    the ids of the dead edges being swept (moved there from edges)
 *   P edge:<id>:swept     string the edge was swept (its members' leaves reported); PX REDIS_SWEPT_MEMORY_MS
 *   P edge:<id>:departing hash   "<channel>\0<member id>" -> Member: removed by the edge, channel:leave not yet
 *                                said to be published (Presence.remove); the sweep reports these leaves too
 *   P sweep-lock          string held by the node that sweeps now (PX the sweep interval)
 *   P sweep-clock         string Redis time (ms) of the last sweep attempt by any node
 *   P sweep-grace         string Redis time (ms) until which no edge is swept (after a stall)
 *
 * Every write that must stay consistent with others is one Lua script, so
 * two nodes never both remove (and report) the same member. The scripts
 * reach keys derived from their arguments, which a standalone Redis allows;
 * on Redis Cluster the prefix must carry a hash tag (docs/scaling.md).
 *
 * The three keys of a channel change together, in the same scripts (LIB's
 * put and del), so the index and the user counts always match the hash.
 * Keys written by a version before the index (a hash with no index) are
 * indexed by the first read that meets them: a page or stats read whose
 * index does not have as many ids as the hash has entries rebuilds both
 * from the hash (O(members), once), then reads in O(page).
 */

/**
 * Lua shared by the scripts that write members: the user id of a stored
 * value (field 3 of realtime.client.v1.Member, read from the protobuf
 * bytes), and put/del, which keep a channel's hash, id index and user
 * counts together; split, which reads an edge index's "<channel>\0<id>",
 * and take, which removes an edge's own entry and returns its member bytes.
 */
const LIB = `
local function varint(s, i)
  local n, mul = 0, 1
  while true do
    local b = string.byte(s, i)
    if b == nil then return n, i end
    i = i + 1
    n = n + (b % 128) * mul
    if b < 128 then return n, i end
    mul = mul * 128
  end
end
local function user_of(v)
  local i = string.find(v, ':', 1, true)
  if not i then return '' end
  i = i + 1
  local user = ''
  while i <= #v do
    local tag
    tag, i = varint(v, i)
    local wt = tag % 8
    if wt == 2 then
      local len
      len, i = varint(v, i)
      if math.floor(tag / 8) == 3 then user = string.sub(v, i, i + len - 1) end
      i = i + len
    elseif wt == 0 then
      local _
      _, i = varint(v, i)
    elseif wt == 1 then i = i + 8
    elseif wt == 5 then i = i + 4
    else return user end
  end
  return user
end
local function ref(uk, user, by)
  if user == '' then return end
  if redis.call('HINCRBY', uk, user, by) <= 0 then redis.call('HDEL', uk, user) end
end
local function put(hk, ik, uk, id, v)
  local old = redis.call('HGET', hk, id)
  redis.call('HSET', hk, id, v)
  if old then
    if old ~= v then
      local ou, nu = user_of(old), user_of(v)
      if ou ~= nu then ref(uk, ou, -1) ref(uk, nu, 1) end
    end
    return 0
  end
  redis.call('ZADD', ik, 0, id)
  ref(uk, user_of(v), 1)
  return 1
end
local function del(hk, ik, uk, id, v)
  redis.call('HDEL', hk, id)
  redis.call('ZREM', ik, id)
  ref(uk, user_of(v), -1)
end
local function split(f)
  local sep = string.find(f, '\\0', 1, true)
  return string.sub(f, 1, sep - 1), string.sub(f, sep + 1)
end
-- Redis's clock in microseconds since the Unix epoch, as a decimal string
-- (a Transition, core/presence.ts).
local function now_us()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
-- Removes member id of channel ch (key prefix p) if the edge tagged tag
-- owns it, dropping ch from the channels zset cks once empty; returns the
-- member's bytes, or nil when it was not there or not the edge's, and the
-- channel's Transition: now_us() when it is empty now (vacated), else '0'.
local function take(p, cks, ch, id, tag)
  local hk, ik, uk = p .. 'm:' .. ch, p .. 'mi:' .. ch, p .. 'mu:' .. ch
  local v = redis.call('HGET', hk, id)
  if not v or string.sub(v, 1, #tag) ~= tag then return nil end
  del(hk, ik, uk, id, v)
  local vacated = '0'
  if redis.call('HLEN', hk) == 0 then
    redis.call('ZREM', cks, ch)
    vacated = now_us()
  end
  return string.sub(v, #tag + 1), vacated
end
local function reindex(hk, ik, uk)
  if redis.call('ZCARD', ik) == redis.call('HLEN', hk) then return end
  redis.call('DEL', ik, uk)
  local all = redis.call('HGETALL', hk)
  for i = 1, #all, 2 do
    redis.call('ZADD', ik, 0, all[i])
    ref(uk, user_of(all[i + 1]), 1)
  end
end
`;

/**
 * Records a member (KEYS: hash, index, users, channels, edge channels, edge
 * members; ARGV: id, value, channel). Returns the channel's Transition:
 * now_us() when it had no member before (occupied), else '0'.
 */
const ADD = `${LIB}
local added = put(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('SADD', KEYS[6], ARGV[3] .. '\\0' .. ARGV[1])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then return now_us() end
return '0'`;

/**
 * Removes a member if this edge owns it, and records it as departing until
 * the edge says its leave is published (KEYS: hash, index, users, channels,
 * edge channels, edge departing, edge members; ARGV: id, "<edge>:",
 * channel, last). last=1: the edge has no member left there. Returns the
 * channel's Transition: now_us() when the member was its last (vacated), else '0'.
 */
const REMOVE = `${LIB}
local v = redis.call('HGET', KEYS[1], ARGV[1])
local vacated = '0'
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then
  del(KEYS[1], KEYS[2], KEYS[3], ARGV[1], v)
  redis.call('SREM', KEYS[7], ARGV[3] .. '\\0' .. ARGV[1])
  redis.call('HSET', KEYS[6], ARGV[3] .. '\\0' .. ARGV[1], string.sub(v, #ARGV[2] + 1))
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('ZREM', KEYS[4], ARGV[3])
    vacated = now_us()
  end
end
if ARGV[4] == '1' then redis.call('SREM', KEYS[5], ARGV[3]) end
return vacated`;

/**
 * Lua shared by the reads: liveness(grace key, edge key prefix) returns a
 * function of a stored value that answers its member's bytes when its edge
 * is alive (or within the grace after a stall, see SWEEP), else nil; each
 * edge's liveness is looked up once per script.
 */
const LIVENESS = `
local function liveness(grace_key, edge_prefix)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local grace = now < tonumber(redis.call('GET', grace_key) or '0')
  local alive = {}
  return function(v)
    local sep = v and string.find(v, ':', 1, true)
    if not sep then return nil end
    local owner = string.sub(v, 1, sep - 1)
    local ok = alive[owner]
    if ok == nil then
      ok = grace or redis.call('EXISTS', edge_prefix .. owner) == 1
      alive[owner] = ok
    end
    if ok then return string.sub(v, sep + 1) end
    return nil
  end
end
`;

/**
 * The members of a channel whose edge is alive (KEYS: hash, grace; ARGV:
 * edge key prefix). Members of an edge whose liveness expired are left out
 * at once, before the sweep removes them; except during the grace after a
 * stall (see SWEEP), when liveness keys may have expired with no one able
 * to refresh them.
 */
const MEMBERS = `${LIVENESS}
local live = liveness(KEYS[2], ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 2, #all, 2 do
  local m = live(all[i])
  if m then out[#out + 1] = m end
end
return out`;

/**
 * One page of a channel's live members, ascending by id after ARGV[2]: ids
 * are read from the index in order (ZRANGEBYLEX from the key, O(log n) to
 * find it; byte order, which for connection ids, printable ASCII
 * (IdGenerator), is Presence.page's UTF-16 order), their values from the hash, and members of an edge whose
 * liveness expired are skipped, as MEMBERS does. Reads at most ARGV[3] + 1
 * live members (the one more says whether there is a next page) and at
 * most ARGV[4] ids in all (REDIS_MEMBERS_SCAN_MAX).
 * KEYS: hash, index, users, grace; ARGV: edge key prefix, after ("" for
 * the first page), limit, scan max.
 * Returns "1" when members may follow (the page is full, or the scan max
 * was reached), else "0"; then the last id read (where a page that reached
 * the scan max with no member is read on); then the members' bytes.
 */
const PAGE = `${LIB}${LIVENESS}
reindex(KEYS[1], KEYS[2], KEYS[3])
local live = liveness(KEYS[4], ARGV[1])
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local last = ARGV[2]
local found = {}
local scanned = 0
local ended = false
while #found <= limit and scanned < budget do
  local want = math.min(limit + 1 - #found, budget - scanned)
  local ids = redis.call('ZRANGEBYLEX', KEYS[2], last == '' and '-' or '(' .. last, '+', 'LIMIT', 0, want)
  if #ids == 0 then ended = true break end
  local values = redis.call('HMGET', KEYS[1], unpack(ids))
  for j = 1, #ids do
    scanned = scanned + 1
    last = ids[j]
    local m = live(values[j])
    if m then
      found[#found + 1] = m
      if #found > limit then break end
    end
  end
  if #found <= limit and #ids < want then ended = true break end
end
local more = '0'
if #found > limit then
  found[#found] = nil
  more = '1'
elseif not ended then
  more = '1'
end
local out = {more, last}
for j = 1, #found do out[#out + 1] = found[j] end
return out`;

/** A channel's counts, O(1) (KEYS: hash, index, users). Returns connections, users. */
const STATS = `${LIB}
reindex(KEYS[1], KEYS[2], KEYS[3])
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[3])}`;

/** A page of channels with their counts (KEYS: channels; ARGV: min, max, limit, hash prefix, users prefix): name, members, users. */
const CHANNELS = `
local names = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, ch in ipairs(names) do
  out[#out + 1] = ch
  out[#out + 1] = redis.call('HLEN', ARGV[4] .. ch)
  out[#out + 1] = redis.call('HLEN', ARGV[5] .. ch)
end
return out`;

/**
 * Refreshes an edge's liveness, unless it is no longer registered (swept, or
 * Redis lost its data): then returns 0 and the edge re-synchronises.
 * KEYS: edges, edge; ARGV: id, ttl.
 */
const HEARTBEAT = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1`;

/*
 * The sync makes Redis hold exactly what the edge holds, in steps of at
 * most REDIS_SYNC_STEP_MEMBERS members each (the edge runs them in order,
 * reporting each step's changes before the next):
 *   SYNC_BEGIN  registers the edge (alive, indexed, no longer swept or
 *               being swept) and sets its members index aside as the old
 *               one, to be compared at the end;
 *   SYNC_PUT    writes a chunk of the members it holds (reported as joins
 *               when the edge had been swept: the others were told they left);
 *   SYNC_END    pops a chunk of the old index and removes those entries the
 *               edge did not write again (reported as leaves: no
 *               channel:leave was announced for them), until none is left.
 * An edge that was being swept takes the rest of its sweep over (what the
 * sweep had not removed is kept if held, removed as a leave if not). A
 * sync that failed half-way leaves the old index, which the next one's
 * begin merges with the new one, so that nothing it wrote is forgotten.
 */

/**
 * KEYS: edges, edge, swept, sweeping, edge members, edge old members.
 * ARGV: id, ttl. Returns 1 if the edge had been swept, else 0.
 */
const SYNC_BEGIN = `
local swept = redis.call('EXISTS', KEYS[3]) == 1
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('SET', KEYS[2] .. ':indexed', '1')
if redis.call('EXISTS', KEYS[6]) == 1 then
  if redis.call('EXISTS', KEYS[5]) == 1 then
    redis.call('SUNIONSTORE', KEYS[6], KEYS[6], KEYS[5])
    redis.call('DEL', KEYS[5])
  end
elseif redis.call('EXISTS', KEYS[5]) == 1 then
  redis.call('RENAME', KEYS[5], KEYS[6])
end
return swept and 1 or 0`;

/**
 * KEYS: channels, edge channels, edge members.
 * ARGV: key prefix P, swept ("1"/"0"), "<edge>:", n, then n triples
 * channel, member id, value. Returns the joins (flat: channel, member
 * bytes, Transition) of members written anew on a swept edge.
 */
const SYNC_PUT = `${LIB}
local out = {}
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local ch, mid, v = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  local added = put(ARGV[1] .. 'm:' .. ch, ARGV[1] .. 'mi:' .. ch, ARGV[1] .. 'mu:' .. ch, mid, v)
  redis.call('ZADD', KEYS[1], 0, ch)
  redis.call('SADD', KEYS[2], ch)
  redis.call('SADD', KEYS[3], ch .. '\\0' .. mid)
  if added == 1 and ARGV[2] == '1' then
    out[#out + 1] = ch
    out[#out + 1] = string.sub(v, #ARGV[3] + 1)
    out[#out + 1] = redis.call('HLEN', ARGV[1] .. 'm:' .. ch) == 1 and now_us() or '0'
  end
end
return out`;

/**
 * KEYS: edge members, edge old members, channels.
 * ARGV: key prefix P, "<edge>:", budget. Returns whether old members are
 * left ("1"/"0"), then the leaves (flat: channel, member bytes, Transition).
 */
const SYNC_END = `${LIB}
local out = {'0'}
local tag = ARGV[2]
for _, f in ipairs(redis.call('SPOP', KEYS[2], tonumber(ARGV[3]))) do
  if redis.call('SISMEMBER', KEYS[1], f) == 0 then
    local ch, mid = split(f)
    local m, vacated = take(ARGV[1], KEYS[3], ch, mid, tag)
    if m then
      out[#out + 1] = ch
      out[#out + 1] = m
      out[#out + 1] = vacated
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then out[1] = '1' end
return out`;

/**
 * One step of the sweep: removes members of edges whose liveness expired,
 * at most ARGV[8] of them, and returns whether more remain ("1"/"0"), then
 * those removed (flat: channel, member bytes, Transition) to be reported
 * as leaves, with those an edge removed itself and may not have announced
 * (departing) once its last member is gone, and then the edge itself as
 * '', its id, '0' (given up on: an edge lost). Only the node that holds the lock sweeps
 * (a step of a sweep it began renews it: ARGV[7] is its token); the
 * removals are atomic, so a member is removed, and reported, once.
 *
 * A dead edge moves from edges to sweeping (and is marked swept) in the
 * first step that sees it; each step then pops up to the budget from the
 * members index of the edges being swept, so that a step costs O(budget)
 * however large their channels (REDIS_SWEEP_STEP_MEMBERS). An edge of an
 * earlier version (no index: not marked indexed) is swept one channel per
 * step, reading the channel whole, as before. An edge that comes back
 * while being swept takes the rest over (SYNC).
 *
 * Every node attempts a sweep every interval, so in Redis's own clock the
 * attempts are about an interval apart. A longer gap means no node could
 * reach Redis (Redis paused or cut off from everyone): liveness keys
 * expired while no edge could refresh them, and the edges are not dead. So
 * after such a gap nothing is swept for one TTL (the grace), which lets
 * every edge heartbeat again; a sweep sent before the stall and run after
 * it sees the gap too. No record of an attempt (a fresh Redis, or one that
 * restarted from disk) counts as a stall as well. A step of a sweep under
 * way (its token holds the lock) is no new attempt and skips that check.
 * KEYS: edges, lock, channels, clock, grace, registrations (gate.ts), sweeping.
 * ARGV: edge key prefix, key prefix P, lock ms, swept ms, stall ms, ttl ms, token, budget.
 */
const SWEEP = `${LIB}
if redis.call('GET', KEYS[2]) == ARGV[7] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = tonumber(redis.call('GET', KEYS[4]) or '0')
  redis.call('SET', KEYS[4], now, 'PX', tonumber(ARGV[6]) * 10)
  if last == 0 or now - last > tonumber(ARGV[5]) then
    redis.call('SET', KEYS[5], now + tonumber(ARGV[6]), 'PX', tonumber(ARGV[6]) * 2)
    return {'0'}
  end
  if now < tonumber(redis.call('GET', KEYS[5]) or '0') then return {'0'} end
  if not redis.call('SET', KEYS[2], ARGV[7], 'NX', 'PX', ARGV[3]) then return {'0'} end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ek = ARGV[1] .. id
  if redis.call('EXISTS', ek) == 0 then
    redis.call('SREM', KEYS[1], id)
    redis.call('SADD', KEYS[7], id)
    redis.call('SET', ek .. ':swept', '1', 'PX', ARGV[4])
  end
end
local budget = tonumber(ARGV[8])
local out = {'0'}
local function drop(ch, mid, tag)
  local m, vacated = take(ARGV[2], KEYS[3], ch, mid, tag)
  if m then
    out[#out + 1] = ch
    out[#out + 1] = m
    out[#out + 1] = vacated
  end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[7])) do
  if budget <= 0 then
    out[1] = '1'
    break
  end
  local ek = ARGV[1] .. id
  local tag = id .. ':'
  local ck, mk = ek .. ':channels', ek .. ':members'
  local done
  if redis.call('EXISTS', ek .. ':indexed') == 1 then
    -- Its index, and the old one of a sync it died in the middle of.
    for _, key in ipairs({mk, mk .. '-old'}) do
      for _, f in ipairs(redis.call('SPOP', key, math.max(budget, 0))) do
        local ch, mid = split(f)
        drop(ch, mid, tag)
        budget = budget - 1
      end
    end
    done = redis.call('EXISTS', mk) == 0 and redis.call('EXISTS', mk .. '-old') == 0
  else
    local ch = redis.call('SPOP', ck)
    if ch then
      local all = redis.call('HGETALL', ARGV[2] .. 'm:' .. ch)
      for j = 1, #all, 2 do
        if string.sub(all[j + 1], 1, #tag) == tag then drop(ch, all[j], tag) end
      end
      budget = budget - #all / 2
    end
    done = redis.call('EXISTS', ck) == 0
  end
  if done then
    local dk = ek .. ':departing'
    local departing = redis.call('HGETALL', dk)
    for j = 1, #departing, 2 do
      out[#out + 1] = split(departing[j])
      out[#out + 1] = departing[j + 1]
      out[#out + 1] = '0'
    end
    out[#out + 1] = ''
    out[#out + 1] = id
    out[#out + 1] = '0'
    redis.call('DEL', dk, mk, mk .. '-old', ck, ek .. ':indexed')
    redis.call('SREM', KEYS[7], id)
    redis.call('HDEL', KEYS[6], id)
  else
    out[1] = '1'
  end
end
return out`;

/**
 * Unregisters an edge that stops with no members left (KEYS: edges, edge,
 * edge channels, registrations, edge departing; ARGV: id); one with leaves
 * not yet said to be published only drops its liveness, so that the sweep
 * announces them. Returns 1 when unregistered.
 */
const UNREGISTER = `
if redis.call('HLEN', KEYS[5]) > 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[2] .. ':members', KEYS[2] .. ':members-old', KEYS[2] .. ':indexed')
return 1`;

/** An edge's own keys (see the keys above). */
interface EdgeKeys {
  live: string;
  channels: string;
  members: string;
  membersOld: string;
  departing: string;
  swept: string;
}

type Script = (...args: (string | Buffer | number)[]) => Promise<unknown>;
interface Scripts {
  rtAdd: Script;
  rtRemove: Script;
  rtMembersBuffer: Script;
  rtPageBuffer: Script;
  rtStats: Script;
  rtChannels: Script;
  rtHeartbeat: Script;
  rtSyncBegin: Script;
  rtSyncPutBuffer: Script;
  rtSyncEndBuffer: Script;
  rtSweepBuffer: Script;
  rtUnregister: Script;
}

export interface RedisPresenceOptions {
  /** The command connection (shared with the broker's publishes). */
  command: RedisCommands;
  /** Prefix of every Redis key (REALTIME_REDIS_PREFIX). */
  prefix: string;
  /**
   * This edge's id, unique per edge process; its members are recorded as
   * its own and it heartbeats. Undefined on a node that holds no members
   * (the API): it reads presence and sweeps.
   */
  edgeId?: string;
  /** Liveness TTL of an edge (REALTIME_REDIS_EDGE_TTL_MS). */
  ttlMs: number;
  /**
   * Where the members this node's sweeps and syncs removed or restored are
   * reported: the membership room's announce, which publishes their
   * channel:leave and channel:join.
   */
  report: ReportChanges;
  /**
   * This edge's sync script ran: Redis holds every member it holds (the
   * registration gate, gate.ts). Called before the changes it found are reported.
   */
  onSynced?: () => void;
  /** The key of the edges' registrations (RedisGate.registrationsKey): swept and unregistered edges leave it. */
  registrationsKey?: string;
  onError?: (err: unknown, context: string) => void;
}

/**
 * RedisPresence is the Presence seam (and the API's directory of channels)
 * over Redis: one hash per channel, member id -> owning edge and profile,
 * and each edge's liveness as a key with a TTL that it refreshes.
 *
 * Guarantees: add resolves once every node's GetMembers sees the member.
 * members() leaves out the members of an edge whose liveness expired, at
 * once; any node sweeps them away within a third of the TTL more and
 * reports each as a leave, for its channel:leave (one node, once: an atomic
 * script under a lock). While Redis is unreachable every call rejects with
 * UNAVAILABLE, and a rejected add or remove changes nothing: the edge
 * holds what it held before the call, and when Redis is back (or after it
 * restarted empty) it writes all it holds again by itself, undoing a
 * rejected call that Redis ran after all (a timeout). An entry of this edge
 * that Redis holds and the edge does not (a rejected add that ran) is
 * removed then and reported as a leave, in case someone listed it
 * meanwhile; an entry it restores after its edge was swept is reported as a
 * join. It publishes nothing itself (core/presence.ts).
 * channels() counts may include the members of a dead edge until the sweep.
 */
export class RedisPresence implements PresenceDirectory {
  /** What this edge holds: channel -> member id -> the stored value. */
  private readonly held = new Map<string, Map<string, Buffer>>();
  private readonly scripts: Scripts;
  private readonly tag: string;
  private readonly prefix: string;
  private readonly hashPrefix: string;
  private readonly edgeKeyPrefix: string;
  private readonly keys: {
    channels: string;
    edges: string;
    lock: string;
    sweeping: string;
    clock: string;
    grace: string;
    registrations: string;
  };
  /** This edge's own keys (P edge:<id>...); undefined on a node that holds no members. */
  private readonly edgeKeys: EdgeKeys | undefined;
  private readonly intervalMs: number;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private needsSync = true;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private closed = false;
  /** The sweep this node runs now, if any. */
  private sweeping: Promise<number> | undefined;
  /** Departing entries (see the keys) whose leaves are published, to be forgotten in one HDEL. */
  private departedFields: string[] = [];
  /** The last HDEL of them sent: close() waits for it, so that it does not see them still there. */
  private departedFlush: Promise<void> | undefined;
  private readonly onReady = () => {
    if (this.options.edgeId !== undefined) this.requestSync();
  };

  constructor(private readonly options: RedisPresenceOptions) {
    const { prefix, edgeId, command } = options;
    if (edgeId !== undefined && (edgeId === "" || edgeId.includes(":"))) {
      throw new Error(`edge id ${JSON.stringify(edgeId)} must be non-empty and have no ":"`);
    }
    this.tag = `${edgeId ?? ""}:`;
    this.prefix = prefix;
    this.hashPrefix = `${prefix}m:`;
    this.edgeKeyPrefix = `${prefix}edge:`;
    this.keys = {
      channels: `${prefix}channels`,
      edges: `${prefix}edges`,
      lock: `${prefix}sweep-lock`,
      sweeping: `${prefix}sweeping`,
      clock: `${prefix}sweep-clock`,
      grace: `${prefix}sweep-grace`,
      registrations: options.registrationsKey ?? `${prefix}registrations`,
    };
    if (edgeId !== undefined) {
      const live = `${this.edgeKeyPrefix}${edgeId}`;
      this.edgeKeys = {
        live,
        channels: `${live}:channels`,
        members: `${live}:members`,
        membersOld: `${live}:members-old`,
        departing: `${live}:departing`,
        swept: `${live}:swept`,
      };
    }
    this.intervalMs = Math.max(100, Math.floor(options.ttlMs / 3));
    const define = (name: string, numberOfKeys: number, lua: string) =>
      command.defineCommand(name, { numberOfKeys, lua });
    define("rtAdd", 6, ADD);
    define("rtRemove", 7, REMOVE);
    define("rtMembers", 2, MEMBERS);
    define("rtPage", 4, PAGE);
    define("rtStats", 3, STATS);
    define("rtChannels", 1, CHANNELS);
    define("rtHeartbeat", 2, HEARTBEAT);
    define("rtSyncBegin", 6, SYNC_BEGIN);
    define("rtSyncPut", 3, SYNC_PUT);
    define("rtSyncEnd", 3, SYNC_END);
    define("rtSweep", 7, SWEEP);
    define("rtUnregister", 5, UNREGISTER);
    this.scripts = command as unknown as Scripts;
  }

  /** Starts heartbeating (an edge) and sweeping (every node). */
  start(): void {
    const { command, edgeId } = this.options;
    command.on("ready", this.onReady);
    if (command.status === "ready") this.onReady();
    if (edgeId !== undefined) {
      this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.intervalMs);
      this.heartbeatTimer.unref();
    }
    // Every node sweeps at its own phase; the lock makes one of them do it per interval.
    this.sweepTimer = setInterval(() => void this.sweep(), this.intervalMs + Math.floor(Math.random() * 50));
    this.sweepTimer.unref();
  }

  /**
   * Stops the timers. An edge with no members left unregisters; one that
   * still holds some (Redis failed to hear of their leaving) drops its
   * liveness, so the next sweep removes them and announces their leaving.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.sweepTimer);
    const { command, edgeId } = this.options;
    command.off("ready", this.onReady);
    await this.syncing;
    if (edgeId === undefined || command.status !== "ready") return;
    const keys = this.edgeKeys!;
    try {
      await this.departedFlush;
      await this.flushDeparted();
      if (this.held.size === 0)
        await this.scripts.rtUnregister(
          this.keys.edges,
          keys.live,
          keys.channels,
          this.keys.registrations,
          keys.departing,
          edgeId,
        );
      else await command.del(keys.live);
    } catch (err) {
      this.options.onError?.(err, "unregistering the edge");
    }
  }

  async add(channel: string, member: Member): Promise<Transition> {
    const keys = this.requireEdge();
    // Not registered yet (or no longer): register first, or the member
    // stays invisible (members() hides an edge without liveness) until the
    // next heartbeat. The sync is sent before the add, and writes it too.
    if (this.needsSync && this.options.command.status === "ready") this.requestSync();
    const value = Buffer.concat([Buffer.from(this.tag), toBinary(MemberSchema, member)]);
    let ids = this.held.get(channel);
    if (!ids) this.held.set(channel, (ids = new Map()));
    const previous = ids.get(member.id);
    ids.set(member.id, value);
    try {
      return transitionOf(
        await this.scripts.rtAdd(
          ...this.channelKeys(channel),
          this.keys.channels,
          keys.channels,
          keys.members,
          member.id,
          value,
          channel,
        ),
      );
    } catch (err) {
      // Nothing changed for the caller: hold what was held before (no
      // member, or its previous profile). Redis may still run the command
      // (a timeout): the next sync writes what is held.
      if (ids.get(member.id) === value) {
        if (previous === undefined) this.forget(channel, member.id);
        else ids.set(member.id, previous);
      }
      this.needsSync = true;
      throw redisUnavailable(err, "recording the member");
    }
  }

  async remove(channel: string, memberId: string): Promise<Transition> {
    const keys = this.requireEdge();
    const value = this.held.get(channel)?.get(memberId);
    const last = this.forget(channel, memberId);
    try {
      return transitionOf(
        await this.scripts.rtRemove(
          ...this.channelKeys(channel),
          this.keys.channels,
          keys.channels,
          keys.departing,
          keys.members,
          memberId,
          this.tag,
          channel,
          last ? "1" : "0",
        ),
      );
    } catch (err) {
      // Nothing changed for the caller: the member is held again. Redis may
      // still run the removal (a timeout): the next sync writes it back.
      if (value && !this.held.get(channel)?.has(memberId)) {
        let ids = this.held.get(channel);
        if (!ids) this.held.set(channel, (ids = new Map()));
        ids.set(memberId, value);
      }
      this.needsSync = true;
      throw redisUnavailable(err, "removing the member");
    }
  }

  departed(channel: string, memberId: string): void {
    if (this.edgeKeys === undefined || this.closed) return;
    // One HDEL per tick, however many leaves went out in it (an edge's shutdown sends thousands).
    this.departedFields.push(`${channel}\0${memberId}`);
    if (this.departedFields.length === 1) setImmediate(() => (this.departedFlush = this.flushDeparted()));
  }

  /** Forgets the departing entries whose leaves are published (departed); lost when Redis is away (Presence.remove says what that costs). */
  private async flushDeparted(): Promise<void> {
    const fields = this.departedFields;
    if (fields.length === 0) return;
    this.departedFields = [];
    if (this.options.command.status !== "ready") return;
    try {
      await this.options.command.hdel(this.edgeKeys!.departing, ...fields);
    } catch (err) {
      this.options.onError?.(err, "forgetting published leaves");
    }
  }

  async members(channel: string): Promise<Member[]> {
    let values: Buffer[];
    try {
      values = (await this.scripts.rtMembersBuffer(
        this.hashPrefix + channel,
        this.keys.grace,
        this.edgeKeyPrefix,
      )) as Buffer[];
    } catch (err) {
      throw redisUnavailable(err, "GetMembers");
    }
    return values.map((v) => fromBinary(MemberSchema, v));
  }

  /**
   * Presence.page in O(limit + log members) Redis work, plus the members
   * of dead edges not yet swept that sort among them: each call reads at
   * most REDIS_MEMBERS_SCAN_MAX ids, and one that found no live member
   * among them is followed by another from where it stopped, so that no
   * page is empty unless it is the end.
   */
  async page(channel: string, after: string, limit: number): Promise<MemberPage> {
    const size = Math.max(1, limit);
    const keys = this.channelKeys(channel);
    let from = after;
    for (;;) {
      let flat: Buffer[];
      try {
        flat = (await this.scripts.rtPageBuffer(
          ...keys,
          this.keys.grace,
          this.edgeKeyPrefix,
          from,
          size,
          REDIS_MEMBERS_SCAN_MAX,
        )) as Buffer[];
      } catch (err) {
        throw redisUnavailable(err, "GetMembers");
      }
      const more = flat[0]!.toString() === "1";
      const members = flat.slice(2).map((v) => fromBinary(MemberSchema, v));
      if (members.length > 0 || !more) return { members, more };
      from = flat[1]!.toString();
    }
  }

  async stats(channel: string): Promise<PresenceStats> {
    let counts: number[];
    try {
      counts = (await this.scripts.rtStats(...this.channelKeys(channel))) as number[];
    } catch (err) {
      throw redisUnavailable(err, "PresenceStats");
    }
    return { connections: Number(counts[0]), users: Number(counts[1]) };
  }

  /** A channel's keys: its hash, id index and user counts. */
  private channelKeys(channel: string): [string, string, string] {
    return [`${this.prefix}m:${channel}`, `${this.prefix}mi:${channel}`, `${this.prefix}mu:${channel}`];
  }

  async channels(prefix: string, after: string, limit: number): Promise<ChannelCount[]> {
    // Lexicographic bounds: from the larger of (after, exclusive) and
    // (prefix, inclusive); up to prefix followed by a byte above ASCII.
    const min = after !== "" && after >= prefix ? `(${after}` : prefix === "" ? "-" : `[${prefix}`;
    const max = prefix === "" ? "+" : `[${prefix}\u00ff`;
    let flat: (string | number)[];
    try {
      flat = (await this.scripts.rtChannels(
        this.keys.channels,
        min,
        max,
        Math.max(1, limit),
        this.hashPrefix,
        `${this.prefix}mu:`,
      )) as (string | number)[];
    } catch (err) {
      throw redisUnavailable(err, "ListChannels");
    }
    const out: ChannelCount[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3)
      out.push({ channel: String(flat[i]), members: Number(flat[i + 1]), users: Number(flat[i + 2]) });
    return out;
  }

  /**
   * Runs a sweep now (tests and operators; the timer too): step after step
   * (SWEEP, at most REDIS_SWEEP_STEP_MEMBERS members each), each step's
   * leaves reported before the next, until no dead edge is left or another
   * node holds the lock. Resolves with the members removed. One at a time
   * per node: a call while one runs waits for it (and returns 0).
   */
  async sweep(): Promise<number> {
    if (this.sweeping) {
      await this.sweeping;
      return 0;
    }
    this.sweeping = this.sweepSteps();
    try {
      return await this.sweeping;
    } finally {
      this.sweeping = undefined;
    }
  }

  private async sweepSteps(): Promise<number> {
    const { command } = this.options;
    const token = randomUUID();
    let removed = 0;
    for (;;) {
      if (this.closed || command.status !== "ready") return removed;
      let flat: Buffer[];
      try {
        flat = (await this.scripts.rtSweepBuffer(
          this.keys.edges,
          this.keys.lock,
          this.keys.channels,
          this.keys.clock,
          this.keys.grace,
          this.keys.registrations,
          this.keys.sweeping,
          this.edgeKeyPrefix,
          this.prefix,
          this.intervalMs,
          REDIS_SWEPT_MEMORY_MS,
          // Attempts come every interval from each node; allow two missed and a second.
          2 * this.intervalMs + 1_000,
          this.options.ttlMs,
          token,
          REDIS_SWEEP_STEP_MEMBERS,
        )) as Buffer[];
      } catch (err) {
        this.options.onError?.(err, "sweeping dead edges");
        return removed;
      }
      removed += await this.reportFlat("leave", flat, 1, true);
      if (flat[0]?.toString() !== "1") return removed;
    }
  }

  private async heartbeat(): Promise<void> {
    const { command, edgeId } = this.options;
    if (this.closed || edgeId === undefined || command.status !== "ready") return;
    if (this.needsSync) return this.requestSync();
    try {
      const alive = Number(
        await this.scripts.rtHeartbeat(this.keys.edges, this.edgeKeys!.live, edgeId, this.options.ttlMs),
      );
      if (alive === 0) {
        this.needsSync = true;
        this.requestSync();
      }
    } catch (err) {
      this.options.onError?.(err, "heartbeat");
    }
  }

  /** Runs a sync now, or once more after the one running. */
  private requestSync(): void {
    if (this.closed) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = this.runSync().finally(() => (this.syncing = undefined));
  }

  private async runSync(): Promise<void> {
    const { command, edgeId } = this.options;
    if (edgeId === undefined) return;
    const { live, channels: ck, members: mk, membersOld: oldMk, swept: sweptKey } = this.edgeKeys!;
    do {
      this.syncAgain = false;
      if (this.closed || command.status !== "ready") return;
      this.needsSync = false;
      try {
        const swept =
          Number(
            await this.scripts.rtSyncBegin(
              this.keys.edges,
              live,
              sweptKey,
              this.keys.sweeping,
              mk,
              oldMk,
              edgeId,
              this.options.ttlMs,
            ),
          ) === 1;
        const held: [string, string][] = [];
        for (const [channel, ids] of this.held) for (const id of ids.keys()) held.push([channel, id]);
        for (let at = 0; at < held.length; at += REDIS_SYNC_STEP_MEMBERS) {
          // A chunk's values are read from `held` in the tick its script is
          // sent: what was removed meanwhile is left out, and adds and removes
          // sent after it are applied after it.
          const args: (string | Buffer)[] = [];
          for (const [channel, id] of held.slice(at, at + REDIS_SYNC_STEP_MEMBERS)) {
            const value = this.held.get(channel)?.get(id);
            if (value) args.push(channel, id, value);
          }
          if (args.length === 0) continue;
          const flat = (await this.scripts.rtSyncPutBuffer(
            this.keys.channels,
            ck,
            mk,
            this.prefix,
            swept ? "1" : "0",
            this.tag,
            args.length / 3,
            ...args,
          )) as Buffer[];
          await this.reportFlat("join", flat, 0);
        }
        for (;;) {
          const flat = (await this.scripts.rtSyncEndBuffer(
            mk,
            oldMk,
            this.keys.channels,
            this.prefix,
            this.tag,
            REDIS_SYNC_STEP_MEMBERS,
          )) as Buffer[];
          await this.reportFlat("leave", flat, 1);
          if (flat[0]?.toString() !== "1") break;
        }
      } catch (err) {
        this.needsSync = true;
        this.options.onError?.(err, "re-registering presence");
        return;
      }
      this.options.onSynced?.();
    } while (this.syncAgain);
  }

  /**
   * Reports the changes a script returned as flat channel, member bytes,
   * Transition triples from index `from` (an empty channel: the member is an
   * edge id, an edge given up on); returns how many members they are.
   * lost: leaves of edges given up on (the sweep's).
   */
  private async reportFlat(kind: "join" | "leave", flat: Buffer[], from: number, lost = false): Promise<number> {
    const changes: PresenceChange[] = [];
    let members = 0;
    for (let i = from; i + 2 < flat.length; i += 3) {
      if (flat[i]!.length === 0) changes.push({ kind: "edge", edgeId: flat[i + 1]!.toString() });
      else {
        members++;
        this.decode(changes, kind, flat[i]!, flat[i + 1]!, BigInt(flat[i + 2]!.toString()), lost);
      }
    }
    if (changes.length > 0) await this.options.report(changes);
    return members;
  }

  /** Adds the change a script returned to changes; a member Redis holds that does not decode is reported (onError) instead. */
  private decode(
    changes: PresenceChange[],
    kind: "join" | "leave",
    channel: Buffer,
    member: Buffer,
    transition: Transition,
    lost: boolean,
  ): void {
    try {
      changes.push({ kind, channel: channel.toString(), member: fromBinary(MemberSchema, member), transition, lost });
    } catch (err) {
      this.options.onError?.(err, `decoding a member of ${channel.toString()} for its ${kind}`);
    }
  }

  /** Forgets a held member; returns true when the edge holds no one else in the channel. */
  private forget(channel: string, memberId: string): boolean {
    const ids = this.held.get(channel);
    if (!ids) return true;
    ids.delete(memberId);
    if (ids.size > 0) return false;
    this.held.delete(channel);
    return true;
  }

  /** This edge's keys; throws on a node that holds no members. */
  private requireEdge(): EdgeKeys {
    if (this.edgeKeys === undefined) throw new Error("only an edge records members: this RedisPresence has no edgeId");
    return this.edgeKeys;
  }
}

/** A script's Transition answer (a decimal string of microseconds, "0" for none). */
function transitionOf(answer: unknown): Transition {
  return BigInt(String(answer));
}
