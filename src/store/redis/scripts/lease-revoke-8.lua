--[[
  Revokes lease `id`, as MemoryLeaseStore.revokeLease: the lease ends (alive
  or run out but unswept) with its keys (EXPIRE events, key order) and its
  lock records (LOCK_EXPIRED events, name order) at one revision, if it had
  any. Idempotent: an unknown lease changes nothing.

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
      ARGV[6] lease id

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {found (0/1: it was alive), revision, {name, nonce, ...}} with the
      locks it held (to release on the lock nodes)
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
local at = tonumber(redis.call('ZSCORE', ctx.lexp, lease_member(id)))
if not at then
  return { 0, rev, {} }
end
local events, locks = {}, {}
end_lease(ctx, id, rev + 1, events, locks)
if #events > 0 then
  rev = rev + 1
  commit(ctx, rev, events, now)
end
return { at > now and 1 or 0, rev, locks }
