--[[
  Moves the expiry of the lock record held by `token`, as
  MemoryLeaseStore.extendLock (no revision change, no event).

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] lease expiry   P:{T}:lease:exp
      KEYS[3] lock expiry    P:{T}:lock:exp

      ARGV[1] epoch
      ARGV[2] lock prefix    P:{T}:lock:r:
      ARGV[3] name
      ARGV[4] token
      ARGV[5] expireAt       ms

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, lock}   extended, lock = {name, owner, nonce, token,
                            acquireAt, expireAt, leaseId}
      {1, revision}         not found (absent or ran out)
      {2, revision}         not owner
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { lexp = KEYS[2], lkexp = KEYS[3], rp = ARGV[2] }
local now = now_ms()
local lock = load_lock(ctx, ARGV[3])
if not lock_live(ctx, lock, now) then
  return { 1, rev }
end
if lock.t ~= tonumber(ARGV[4]) then
  return { 2, rev }
end
local expire_at = tonumber(ARGV[5])
redis.call('HSET', ctx.rp .. lock.name, 'x', fmt(expire_at))
if lock.l == 0 then
  redis.call('ZADD', ctx.lkexp, fmt(expire_at), lock.name)
end
return { 0, rev, lock_reply(lock, expire_at) }
