--[[
  Grants lease `id` with a TTL, as MemoryLeaseStore.grantLease: nothing
  changes when it is alive already (created = 0); a lease of that id that ran
  out but was not swept yet ends first, at its own revision (its keys'
  EXPIRE and its locks' LOCK_EXPIRED events). Granting itself changes no
  revision.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] key index      P:{T}:idx
      KEYS[3] expiry index   P:{T}:exp
      KEYS[4] changefeed     P:{T}:feed
      KEYS[5] lease expiry   P:{T}:lease:exp
      KEYS[6] lease TTLs     P:{T}:lease:ttl
      KEYS[7] lock names     P:{T}:lock:idx
      KEYS[8] lock expiry    P:{T}:lock:exp

      ARGV[1] epoch
      ARGV[2] record prefix  P:{T}:k:
      ARGV[3] feed maxlen    entries retained
      ARGV[4] lease prefix   P:{T}:lease:
      ARGV[5] lock prefix    P:{T}:lock:r:
      ARGV[6] lease id       1 .. 2^53-1
      ARGV[7] ttl            ms

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {created (0/1), revision, expireAt, grantedTtl}: the new lease, or the
      live one when created = 0
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], idx = KEYS[2], exp = KEYS[3], feed = KEYS[4], lexp = KEYS[5],
  lttl = KEYS[6], lidx = KEYS[7], lkexp = KEYS[8], kp = ARGV[2], maxlen = ARGV[3],
  lp = ARGV[4], rp = ARGV[5] }
local now = now_ms()
local id = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local member = lease_member(id)

local at = tonumber(redis.call('ZSCORE', ctx.lexp, member))
if at and at > now then
  return { 0, rev, at, tonumber(redis.call('HGET', ctx.lttl, member)) }
end
if at then
  local events, locks = {}, {}
  end_lease(ctx, id, rev + 1, events, locks)
  if #events > 0 then
    rev = rev + 1
    commit(ctx, rev, events, now)
  end
end
local expire_at = now + ttl
redis.call('ZADD', ctx.lexp, fmt(expire_at), member)
redis.call('HSET', ctx.lttl, member, fmt(ttl))
return { 1, rev, expire_at, ttl }
