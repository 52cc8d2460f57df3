--[[
  Expires what is due by Redis TIME, up to `limit` items, at one new revision
  with one feed entry (as MemoryTenant.expireDue): first keys whose TTL
  passed (EXPIRE each), then leases that ran out (each ends with its keys,
  EXPIRE in key order, and its lock records, LOCK_EXPIRED in name order),
  then lock records whose TTL passed (LOCK_EXPIRED); each key, lease or lock
  record counts one against the limit. Then trims changefeed entries older
  than the maximum age (always keeping the newest). Atomic, so replicas
  sweeping the same tenant at once expire each thing once.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] key index      P:{T}:idx
      KEYS[3] expiry index   P:{T}:exp
      KEYS[4] changefeed     P:{T}:feed (stream, entry id = <revision>-0)
      KEYS[5] lease expiry   P:{T}:lease:exp
      KEYS[6] lease TTLs     P:{T}:lease:ttl
      KEYS[7] lock names     P:{T}:lock:idx
      KEYS[8] lock expiry    P:{T}:lock:exp

      ARGV[1] epoch
      ARGV[2] record prefix  P:{T}:k:
      ARGV[3] limit          items (keys, leases, lock records) to expire at most
      ARGV[4] feed maxlen    entries retained
      ARGV[5] feed max age   ms; older entries are trimmed
      ARGV[6] lease prefix   P:{T}:lease:
      ARGV[7] lock prefix    P:{T}:lock:r:

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {events, nextExpireAt (0 = none), revision, ended}: the events written
      (EXPIRE and LOCK_EXPIRED), when the next key, lease or lock is due, and
      the locks that ended as a flat list name1, nonce1, name2, nonce2, ...
      (so the service can free their holds on the lock nodes)
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], idx = KEYS[2], exp = KEYS[3], feed = KEYS[4], lexp = KEYS[5],
  lttl = KEYS[6], lidx = KEYS[7], lkexp = KEYS[8], kp = ARGV[2], maxlen = ARGV[4],
  lp = ARGV[6], rp = ARGV[7] }
local now = now_ms()
local budget = tonumber(ARGV[3])
local revision = rev + 1
local events = {}
local ended = {}

local due = redis.call('ZRANGEBYSCORE', ctx.exp, '-inf', fmt(now), 'LIMIT', 0, budget)
remove_keys(ctx, due, revision, events)
budget = budget - #due
if budget > 0 then
  local leases = redis.call('ZRANGEBYSCORE', ctx.lexp, '-inf', fmt(now), 'LIMIT', 0, budget)
  for _, member in ipairs(leases) do
    end_lease(ctx, tonumber(member), revision, events, ended)
  end
  budget = budget - #leases
end
if budget > 0 then
  local names = redis.call('ZRANGEBYSCORE', ctx.lkexp, '-inf', fmt(now), 'LIMIT', 0, budget)
  for _, name in ipairs(names) do
    local lock = load_lock(ctx, name)
    if lock then
      remove_lock(ctx, lock)
      events[#events + 1] = lock_event('lock_expired', lock, revision, lock.x)
      ended[#ended + 1] = name
      ended[#ended + 1] = lock.n
    else
      redis.call('ZREM', ctx.lkexp, name)
    end
  end
end
if #events > 0 then
  commit(ctx, revision, events, now)
  rev = revision
end

-- Age trim: drop entries older than the cutoff, a bounded batch per sweep,
-- never the newest entry (so the current revision stays readable).
local cutoff = now - tonumber(ARGV[5])
local oldest = redis.call('XRANGE', ctx.feed, '-', '+', 'COUNT', 256)
local last_old = nil
for _, entry in ipairs(oldest) do
  local fields = entry[2]
  local at = nil
  for i = 1, #fields, 2 do
    if fields[i] == 't' then
      at = tonumber(fields[i + 1])
    end
  end
  if at == nil or at >= cutoff then
    break
  end
  last_old = entry[1]
end
if last_old then
  local newest = redis.call('XREVRANGE', ctx.feed, '+', '-', 'COUNT', 1)[1][1]
  local cut_rev = tonumber(string.match(last_old, '^(%d+)'))
  local newest_rev = tonumber(string.match(newest, '^(%d+)'))
  local keep_from = cut_rev + 1
  if keep_from > newest_rev then
    keep_from = newest_rev
  end
  redis.call('XTRIM', ctx.feed, 'MINID', fmt(keep_from) .. '-0')
end

local next_at = 0
for _, index in ipairs({ ctx.exp, ctx.lexp, ctx.lkexp }) do
  local first = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
  if first[2] then
    local at = tonumber(first[2])
    if next_at == 0 or at < next_at then
      next_at = at
    end
  end
end
return { #events, next_at, rev, ended }
