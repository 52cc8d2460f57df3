--[[
  Releases a lock record held by `token`, as MemoryLeaseStore.releaseLock:
  removes it and emits LOCK_RELEASED (with the lock as readers saw it) at a
  new revision. A record that is absent or ran out is NOT_FOUND; one held by
  another token is NOT_OWNER; neither changes anything.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] lease expiry   P:{T}:lease:exp
      KEYS[4] lock names     P:{T}:lock:idx
      KEYS[5] lock expiry    P:{T}:lock:exp

      ARGV[1] epoch
      ARGV[2] feed maxlen    entries retained
      ARGV[3] lease prefix   P:{T}:lease:
      ARGV[4] lock prefix    P:{T}:lock:r:
      ARGV[5] name
      ARGV[6] token

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {status, revision}: 0 released, 1 not found, 2 not owner
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], feed = KEYS[2], lexp = KEYS[3], lidx = KEYS[4], lkexp = KEYS[5],
  maxlen = ARGV[2], lp = ARGV[3], rp = ARGV[4] }
local now = now_ms()
local lock = load_lock(ctx, ARGV[5])
if not lock_live(ctx, lock, now) then
  return { 1, rev }
end
if lock.t ~= tonumber(ARGV[6]) then
  return { 2, rev }
end
remove_lock(ctx, lock)
rev = rev + 1
commit(ctx, rev, { lock_event('lock_released', lock, rev, lock.e) }, now)
return { 0, rev }
