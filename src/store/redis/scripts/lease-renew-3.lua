--[[
  Renews a live lease to now + its granted TTL (no revision change) and
  lists the locks held under it, in name order, for the caller to extend on
  the lock nodes. A lease that is unknown or ran out is not renewed.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] lease expiry   P:{T}:lease:exp
      KEYS[3] lease TTLs     P:{T}:lease:ttl

      ARGV[1] epoch
      ARGV[2] lease prefix   P:{T}:lease:
      ARGV[3] lock prefix    P:{T}:lock:r:
      ARGV[4] lease id

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision}                                        not alive
      {1, revision, expireAt, grantedTtl, {name, nonce, ...}}  renewed
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { lexp = KEYS[2], lttl = KEYS[3], lp = ARGV[2], rp = ARGV[3] }
local now = now_ms()
local id = tonumber(ARGV[4])
local member = lease_member(id)
local at = tonumber(redis.call('ZSCORE', ctx.lexp, member))
if not at or at <= now then
  return { 0, rev }
end
local ttl = tonumber(redis.call('HGET', ctx.lttl, member))
local expire_at = now + ttl
redis.call('ZADD', ctx.lexp, fmt(expire_at), member)
local locks = {}
for _, name in ipairs(redis.call('ZRANGE', lease_set(ctx, id, 'l'), 0, -1)) do
  local nonce = redis.call('HGET', ctx.rp .. name, 'n')
  if nonce then
    locks[#locks + 1] = name
    locks[#locks + 1] = nonce
  end
end
return { 1, rev, expire_at, ttl, locks }
