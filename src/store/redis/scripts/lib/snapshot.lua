--[[
  lib/snapshot: execution state, spliced into the snapshot scripts after
  lib/kv (open_tenant, now_ms, fmt, bytecmp, commit). Everything here is
  local. The key layout (see keys.ts), with S = P:{T}:snap: :

    S s:<id>          hash   one snapshot (fields below)
    S ord:<status>    zset   score 0, member = order_member(ua, id): List order
    S exp             zset   score = expire ms, member = id (snapshots with a TTL)
    S tok             hash   resume token hash -> id (the one pending token per id)
    S clock           string the newest update time handed out (never goes back)
    S cpi:<id>        zset   score 0, member = checkpoint name (name order)
    S cp:<id>/<name>  hash   one checkpoint: a copy of the snapshot hash (no
                             tk) plus cpa, its creation ms. Ids hold no '/',
                             so <id>/<name> is unambiguous.
    S log:<id>        stream the event log, entry id <seq>-0, fields t d a
    S idem:<id>       hash   idempotency key -> "first:last:expire:digest"
    S idemx:<id>      zset   score = expire ms, member = idempotency key

  A snapshot hash:
    q  sequence        ct content type     st status (core name: running ...)
    md metadata        (msgpack flat array [k1, v1, ...], packed by the store)
    ca create ms       ua update ms        x  expire ms (absent = never)
    es event seq       sz state size       enc state encoding (identity, br)
    v  state bytes     in input of the last Resume (absent = empty)
    sr sd sa sx        suspension reason, data, suspend ms, token expiry ms
                       (present together, while suspended)
    tk                 hash of the pending resume token (absent = none)
  Invariants: a snapshot is in exactly the ord zset of its status with its
  current order member; it is in exp exactly when it has x; tok maps its tk
  to it exactly when it has tk.

  Context fields: meta, feed, maxlen (commit), sexp, stok, sclk, sp (= S).
]]

local SNAPSHOT_EVENT_PREFIX = '/snapshots/'
local MAX_ORDER_TIME = 9007199254740991
local SNAPSHOT_FIELDS = { 'q', 'ct', 'st', 'md', 'ca', 'ua', 'x', 'es', 'sz', 'enc', 'sr', 'sd',
  'sa', 'sx', 'tk' }

local function snap_key(ctx, id)
  return ctx.sp .. 's:' .. id
end

local function order_key(ctx, status)
  return ctx.sp .. 'ord:' .. status
end

-- The List position: (update desc, id asc) as a bytewise-sorting string
-- (core/snapshots.ts listOrderKey builds the same).
local function order_member(ua, id)
  return string.format('%016d', MAX_ORDER_TIME - ua) .. ':' .. id
end

local function checkpoint_index(ctx, id)
  return ctx.sp .. 'cpi:' .. id
end

local function checkpoint_key(ctx, id, name)
  return ctx.sp .. 'cp:' .. id .. '/' .. name
end

local function log_key(ctx, id)
  return ctx.sp .. 'log:' .. id
end

-- Reads a snapshot (or checkpoint) hash: a table of its fields, or nil.
local function load_hash(key, id, with_state)
  local r = redis.call('HMGET', key, unpack(SNAPSHOT_FIELDS))
  if not r[1] then
    return nil
  end
  local s = { id = id, q = tonumber(r[1]), ct = r[2], st = r[3], md = r[4] or '',
    ca = tonumber(r[5]), ua = tonumber(r[6]), x = tonumber(r[7]) or 0, es = tonumber(r[8]),
    sz = tonumber(r[9]), enc = r[10], tk = r[15] or nil }
  if r[13] then
    s.sr, s.sd, s.sa, s.sx = r[11], r[12], tonumber(r[13]), tonumber(r[14]) or 0
  end
  if with_state then
    local b = redis.call('HMGET', key, 'v', 'in')
    s.v, s.input = b[1] or '', b[2] or ''
  end
  return s
end

local function load_snapshot(ctx, id, with_state)
  return load_hash(snap_key(ctx, id), id, with_state)
end

local function snapshot_live(s, now)
  return s ~= nil and (s.x == 0 or s.x > now)
end

-- The metadata as a reply and as event details (after the tag):
-- {id, q, ct, st, md, ca, ua, x, es, sz, enc, suspension | false} where
-- suspension = {reason, data, suspend ms, token expiry ms (0 = never)}.
local function meta_reply(s)
  local suspension = false
  if s.sa then
    suspension = { s.sr, s.sd, s.sa, s.sx }
  end
  return { s.id, s.q, s.ct, s.st, s.md, s.ca, s.ua, s.x, s.es, s.sz, s.enc, suspension }
end

-- A snapshot event: /snapshots/<id> at the revision, details ['snapshot', meta...].
local function snapshot_event(kind, s, revision)
  local details = meta_reply(s)
  table.insert(details, 1, 'snapshot')
  return { kind, SNAPSHOT_EVENT_PREFIX .. s.id, '', 0, revision, 0, 0, 0, false, details }
end

local function unindex(ctx, s)
  redis.call('ZREM', order_key(ctx, s.st), order_member(s.ua, s.id))
  if s.x ~= 0 then
    redis.call('ZREM', ctx.sexp, s.id)
  end
  if s.tk then
    redis.call('HDEL', ctx.stok, s.tk)
  end
end

local function index(ctx, s)
  redis.call('ZADD', order_key(ctx, s.st), 0, order_member(s.ua, s.id))
  if s.x ~= 0 then
    redis.call('ZADD', ctx.sexp, fmt(s.x), s.id)
  end
  if s.tk then
    redis.call('HSET', ctx.stok, s.tk, s.id)
  end
end

-- Writes every metadata field of `s` to hash `key` (state and input are the
-- caller's), removing the optional fields `s` does not have.
local function write_meta(key, s)
  redis.call('HSET', key, 'q', fmt(s.q), 'ct', s.ct, 'st', s.st, 'md', s.md, 'ca', fmt(s.ca),
    'ua', fmt(s.ua), 'es', fmt(s.es), 'sz', fmt(s.sz), 'enc', s.enc)
  if s.x ~= 0 then
    redis.call('HSET', key, 'x', fmt(s.x))
  else
    redis.call('HDEL', key, 'x')
  end
  if s.sa then
    redis.call('HSET', key, 'sr', s.sr, 'sd', s.sd, 'sa', fmt(s.sa), 'sx', fmt(s.sx))
  else
    redis.call('HDEL', key, 'sr', 'sd', 'sa', 'sx')
  end
  if s.tk then
    redis.call('HSET', key, 'tk', s.tk)
  else
    redis.call('HDEL', key, 'tk')
  end
end

local function clear_suspension(s)
  s.sr, s.sd, s.sa, s.sx, s.tk = nil, nil, nil, nil, nil
end

-- The next update time: Redis time, but never before one handed out earlier.
local function stamp(ctx, now)
  local last = tonumber(redis.call('GET', ctx.sclk)) or 0
  if last > now then
    return last
  end
  redis.call('SET', ctx.sclk, fmt(now))
  return now
end

-- Removes a snapshot hash and its index entries.
local function remove_snapshot(ctx, s)
  unindex(ctx, s)
  redis.call('DEL', snap_key(ctx, s.id))
end

-- A snapshot whose TTL passed is deleted at its own revision (SNAPSHOT_DELETED)
-- before the caller's change; returns the tenant revision after it.
local function expire_if_due(ctx, id, now, rev)
  local s = load_snapshot(ctx, id, false)
  if s == nil or snapshot_live(s, now) then
    return rev
  end
  remove_snapshot(ctx, s)
  commit(ctx, rev + 1, { snapshot_event('snapshot_deleted', s, rev + 1) }, now)
  return rev + 1
end

-- The start of every script that changes a snapshot, given its KEYS and
-- ARGV (keys 1-5 and args 1-3 are the same in all of them, see each
-- script): the tenant's revision, the context and Redis time, after
-- expiring snapshot `id` if its TTL passed (no id: nothing expired). When
-- the tenant cannot be written, returns nil and the code the script returns
-- (NEED_INIT, EPOCH_MISMATCH) instead.
local function open_snapshot_change(keys, argv, id)
  local rev, code = open_tenant(keys[1], argv[1])
  if not rev then
    return nil, code
  end
  local ctx = { meta = keys[1], feed = keys[2], sexp = keys[3], stok = keys[4], sclk = keys[5],
    sp = argv[2], maxlen = argv[3] }
  local now = now_ms()
  if id then
    rev = expire_if_due(ctx, id, now, rev)
  end
  return rev, ctx, now
end

-- The last sequence of an event log (0 = empty or none).
local function log_last(ctx, id)
  local last = redis.call('XREVRANGE', log_key(ctx, id), '+', '-', 'COUNT', 1)[1]
  if not last then
    return 0
  end
  return tonumber(string.match(last[1], '^(%d+)'))
end
