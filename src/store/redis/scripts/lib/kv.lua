--[[
  lib/kv: helpers shared by the KV scripts, spliced into each script by the
  loader in scripts.ts (a `--- @include "lib/kv"` line). Everything here is
  local: Redis forbids globals in scripts.

  Layout of one key's record, the hash P:{T}:k:<key> (see keys.ts):
    v  value bytes
    c  create_revision
    m  mod_revision
    n  version
    l  lease id (0 = none)
    x  expire time in ms since the epoch (absent = never)
  Invariants kept by every script: a record has `x` exactly when its key is in
  the exp zset with score `x`; every record's key is in the idx zset; a record
  with lease `l` ~= 0 is a member of that lease's key set (lib/lease), and the
  lease exists as long as the record does.

  A loaded record is a table {key, v, c, m, n, l, x, e}: `x` is the stored
  TTL, `e` the expiry a reader sees (the lease's expiry for a key on a lease,
  filled in by is_live; otherwise `x`).

  Context fields (`ctx`) a script sets for these helpers, as it needs them:
    kp    record prefix P:{T}:k:      idx, exp  key and expiry indexes
    meta, feed, maxlen                 commit
    lexp  lease expiry zset P:{T}:lease:exp
    lp    lease prefix P:{T}:lease:   (a lease's key set is lp..id..':k')
  Reading or writing a key without a lease never touches the lease keys; a
  range read (and a range delete) looks up the leases due by now once per
  call, to skip their keys.

  Never compare strings with Lua's `<`: Redis sets LC_COLLATE from the
  environment and Lua 5.1 compares strings with strcoll. `bytecmp` compares
  bytes, as ZRANGE BYLEX and the contract do.
]]

-- Reply codes (negative integers; scripts.ts mirrors them in ScriptCode).
local NEED_INIT = -1
local EPOCH_MISMATCH = -2

-- Integer to string without Lua 5.1's %.14g rounding (tostring(2^50) loses digits).
local function fmt(n)
  return string.format('%d', n)
end

-- Redis server time in ms: the one clock every replica shares.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Opens a tenant: its revision, or nil and a negative code when the tenant
-- meta is missing (NEED_INIT) or was written under another epoch.
local function open_tenant(meta, epoch)
  local m = redis.call('HMGET', meta, 'epoch', 'rev')
  if not m[1] then
    return nil, NEED_INIT
  end
  if m[1] ~= epoch then
    return nil, EPOCH_MISMATCH
  end
  return tonumber(m[2]) or 0
end

-- A reader over ARGV from index `first`: each call returns the next argument.
local function argv_reader(first)
  local pos = first
  return function()
    local v = ARGV[pos]
    pos = pos + 1
    return v
  end
end

-- Bytewise comparison: -1, 0 or 1 (memcmp order, a proper prefix sorts first).
local function bytecmp(a, b)
  if a == b then
    return 0
  end
  local la, lb = #a, #b
  local n = la < lb and la or lb
  local i = 1
  -- Skip equal 256-byte chunks (long values) before comparing byte by byte.
  while i + 255 <= n and string.sub(a, i, i + 255) == string.sub(b, i, i + 255) do
    i = i + 256
  end
  while i <= n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y and -1 or 1
    end
    i = i + 1
  end
  if la < lb then
    return -1
  elseif la > lb then
    return 1
  end
  return 0
end

-- Reads a record (with its value unless `no_value`); nil when absent.
local function load(ctx, key, no_value)
  local h = ctx.kp .. key
  if no_value then
    local r = redis.call('HMGET', h, 'c', 'm', 'n', 'l', 'x')
    if not r[1] then
      return nil
    end
    local x = tonumber(r[5]) or 0
    return { key = key, v = '', c = tonumber(r[1]), m = tonumber(r[2]), n = tonumber(r[3]),
      l = tonumber(r[4]), x = x, e = x }
  end
  local r = redis.call('HMGET', h, 'v', 'c', 'm', 'n', 'l', 'x')
  if not r[1] then
    return nil
  end
  local x = tonumber(r[6]) or 0
  return { key = key, v = r[1], c = tonumber(r[2]), m = tonumber(r[3]), n = tonumber(r[4]),
    l = tonumber(r[5]), x = x, e = x }
end

-- ---- leases (the parts the KV scripts need; the rest is in lib/lease) ----

-- A lease's member in the lease expiry zset: its id zero-padded to 16 digits
-- (ids are below 2^53), so that equal expiries sort by id, as in memory.
local function lease_member(id)
  return string.format('%016d', id)
end

-- The key set (kind 'k') or lock set (kind 'l') of a lease: zsets, score 0.
local function lease_set(ctx, id, kind)
  return ctx.lp .. fmt(id) .. ':' .. kind
end

-- A lease's expiry (ms), or nil when there is no such lease. Cached per
-- script run: only scripts that never end a lease call it after a change.
local function lease_expiry(ctx, id)
  local cache = ctx.lease_cache
  if not cache then
    cache = {}
    ctx.lease_cache = cache
  end
  local at = cache[id]
  if at == nil then
    at = tonumber(redis.call('ZSCORE', ctx.lexp, lease_member(id))) or false
    cache[id] = at
  end
  return at or nil
end

-- Whether lease `id` exists and has not run out at `now`.
local function lease_alive(ctx, id, now)
  local at = lease_expiry(ctx, id)
  return at ~= nil and at > now
end

-- Whether a loaded record is live at `now`: its TTL has not passed, or (on
-- a lease) its lease is alive; then also sets `e`, the expiry readers see.
local function is_live(ctx, rec, now)
  if rec == nil then
    return false
  end
  if rec.l ~= 0 then
    local at = lease_expiry(ctx, rec.l)
    if at ~= nil and at > now then
      rec.e = at
      return true
    end
    return false
  end
  return rec.x == 0 or rec.x > now
end

-- Stored but no longer live (TTL passed or lease ended), not yet removed.
local function is_stale(ctx, rec, now)
  return rec ~= nil and not is_live(ctx, rec, now)
end

-- The record if it exists and is live; nil otherwise.
local function live(ctx, key, now, no_value)
  local rec = load(ctx, key, no_value)
  if is_live(ctx, rec, now) then
    return rec
  end
  return nil
end

-- A record as a reply: {key, value, create, mod, version, lease, expireAt (0 = never)}.
local function kv_reply(rec, with_value)
  return { rec.key, with_value and rec.v or '', rec.c, rec.m, rec.n, rec.l, rec.e }
end

-- Writes a record and keeps the indexes in step with it; `old_lease` is the
-- lease of the record it replaces (0 or nil = none), whose key set it leaves.
local function store(ctx, rec, old_lease)
  local h = ctx.kp .. rec.key
  if rec.x ~= 0 then
    redis.call('HSET', h, 'v', rec.v, 'c', fmt(rec.c), 'm', fmt(rec.m), 'n', fmt(rec.n),
      'l', fmt(rec.l), 'x', fmt(rec.x))
    redis.call('ZADD', ctx.exp, fmt(rec.x), rec.key)
  else
    redis.call('HSET', h, 'v', rec.v, 'c', fmt(rec.c), 'm', fmt(rec.m), 'n', fmt(rec.n),
      'l', fmt(rec.l))
    redis.call('HDEL', h, 'x')
    redis.call('ZREM', ctx.exp, rec.key)
  end
  redis.call('ZADD', ctx.idx, 0, rec.key)
  if old_lease and old_lease ~= 0 and old_lease ~= rec.l then
    redis.call('ZREM', lease_set(ctx, old_lease, 'k'), rec.key)
  end
  if rec.l ~= 0 then
    redis.call('ZADD', lease_set(ctx, rec.l, 'k'), 0, rec.key)
  end
end

-- Removes a loaded record `rec` (live or not) from the hash and every index.
local function remove(ctx, rec)
  redis.call('DEL', ctx.kp .. rec.key)
  redis.call('ZREM', ctx.idx, rec.key)
  if rec.x ~= 0 then
    redis.call('ZREM', ctx.exp, rec.key)
  end
  if rec.l ~= 0 then
    redis.call('ZREM', lease_set(ctx, rec.l, 'k'), rec.key)
  end
end

-- Changefeed events, packed with cmsgpack (decoded by feed-codec.ts):
--   {kind, key, value, create, mod, version, lease, expireAt (0 = never), prev, details?}
-- where prev is false or {value, create, mod, version, lease, expireAt}, and
-- details (lock and snapshot events) is an array whose first element names
-- its layout (see feed-codec.ts and lib/lease).
local function prev_of(rec)
  if not rec then
    return false
  end
  return { rec.v, rec.c, rec.m, rec.n, rec.l, rec.e }
end

local function put_event(rec, prev)
  return { 'put', rec.key, rec.v, rec.c, rec.m, rec.n, rec.l, rec.e, prev_of(prev) }
end

-- A deletion or expiry: the key at the deletion revision, version 0, no value.
local function tombstone_event(kind, key, revision, prev)
  return { kind, key, '', 0, revision, 0, 0, 0, prev_of(prev) }
end

-- Records one revision: one feed entry with id <revision>-0, then the revision.
-- The feed is trimmed to exactly ctx.maxlen entries (as the memory store does).
local function commit(ctx, revision, events, now)
  redis.call('XADD', ctx.feed, 'MAXLEN', '=', ctx.maxlen, fmt(revision) .. '-0',
    'e', cmsgpack.pack(events), 't', fmt(now))
  redis.call('HSET', ctx.meta, 'rev', fmt(revision))
end

-- Removes `keys` (no longer live) at `revision`, appending one EXPIRE event
-- each to `events`; prevKv is the stored record (a key on a lease shows no
-- expiry there, as in MemoryKvStore).
local function remove_keys(ctx, keys, revision, events)
  for _, key in ipairs(keys) do
    local prev = load(ctx, key, false)
    if prev then
      remove(ctx, prev)
      events[#events + 1] = tombstone_event('expire', key, revision, prev)
    else
      -- No record (never expected): drop the index entries, or they stay due forever.
      redis.call('ZREM', ctx.idx, key)
      redis.call('ZREM', ctx.exp, key)
    end
  end
end

-- Expires `keys` at `revision` in one feed entry of EXPIRE events. Returns
-- how many were removed (> 0: the revision is used).
local function expire_keys(ctx, keys, revision, now)
  local events = {}
  remove_keys(ctx, keys, revision, events)
  if #events > 0 then
    commit(ctx, revision, events, now)
  end
  return #events
end

-- Range windows: keys in [start, stop) (stop unbounded unless has_end),
-- strictly after `after` when given (a page cursor, itself inside the range).
local function lex_low(q)
  if q.after then
    return '(' .. q.after
  end
  if q.start == '' then
    return '-'
  end
  return '[' .. q.start
end

local function lex_high(q)
  if q.has_end then
    return '(' .. q.stop
  end
  return '+'
end

local function in_window(key, q)
  if q.after then
    if bytecmp(key, q.after) <= 0 then
      return false
    end
  elseif bytecmp(key, q.start) < 0 then
    return false
  end
  return not q.has_end or bytecmp(key, q.stop) < 0
end

-- Stored keys of a window that are no longer live: their TTL passed, or
-- their lease ran out (the keys of leases due by `now`), not yet removed.
-- In bytewise key order when `sorted` (as MemoryTenant.expiredIn), else in
-- no particular order; each key once.
local function expired_in(ctx, now, q, sorted)
  local keys, seen = {}, {}
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', ctx.exp, '-inf', fmt(now))) do
    if in_window(key, q) then
      seen[key] = true
      keys[#keys + 1] = key
    end
  end
  local dead = redis.call('ZRANGEBYSCORE', ctx.lexp, '-inf', fmt(now))
  for _, member in ipairs(dead) do
    local set = lease_set(ctx, tonumber(member), 'k')
    for _, key in ipairs(redis.call('ZRANGE', set, lex_low(q), lex_high(q), 'BYLEX')) do
      if not seen[key] then
        seen[key] = true
        keys[#keys + 1] = key
      end
    end
  end
  if sorted and #keys > 1 then
    table.sort(keys, function(a, b)
      return bytecmp(a, b) < 0
    end)
  end
  return keys
end

-- Reads a window argument list: start, has_end, end, has_after, after, limit,
-- keys_only, count_only.
local function read_query(nxt)
  local q = { start = nxt() }
  q.has_end = nxt() == '1'
  q.stop = nxt()
  local has_after = nxt() == '1'
  local after = nxt()
  if has_after then
    q.after = after
  end
  q.limit = tonumber(nxt())
  q.keys_only = nxt() == '1'
  q.count_only = nxt() == '1'
  return q
end

-- One page of a range: count (live keys in the window, exact), more (0/1) and
-- the page's records. Expired-but-unswept keys are skipped without reading
-- them: they are exactly the window's members of the exp zset due by now and
-- of the key sets of leases due by now.
local function range_page(ctx, now, q)
  local low, high = lex_low(q), lex_high(q)
  local expired = expired_in(ctx, now, q, false)
  local skip = {}
  for _, key in ipairs(expired) do
    skip[key] = true
  end
  local count = redis.call('ZLEXCOUNT', ctx.idx, low, high) - #expired
  local kvs = {}
  if not q.count_only and count > 0 then
    local keys = redis.call('ZRANGE', ctx.idx, low, high, 'BYLEX', 'LIMIT', 0, q.limit + #expired)
    for _, key in ipairs(keys) do
      if #kvs >= q.limit then
        break
      end
      if not skip[key] then
        local rec = load(ctx, key, q.keys_only)
        if is_live(ctx, rec, now) then
          kvs[#kvs + 1] = kv_reply(rec, not q.keys_only)
        end
      end
    end
  end
  local more = 0
  if not q.count_only and count > q.limit then
    more = 1
  end
  return count, more, kvs
end
