--[[
  Records a lock granted on the lock nodes, as MemoryLeaseStore.grantLock,
  atomically: mints the fencing token max(nodeCounter, stored newest token)
  + 1, stores it as the newest token (which fenced KV writes are checked
  against), stores the lock record and emits LOCK_ACQUIRED at a new
  revision. A lease-held lock takes its lease's expiry and joins its lock
  set; when that lease is not alive nothing changes. A record of the name
  that ran out unswept expires first, at its own revision (LOCK_EXPIRED).

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] fence tokens   P:{T}:fence (hash lock name -> newest token)
      KEYS[4] lease expiry   P:{T}:lease:exp
      KEYS[5] lock names     P:{T}:lock:idx
      KEYS[6] lock expiry    P:{T}:lock:exp

      ARGV[1] epoch
      ARGV[2] feed maxlen    entries retained
      ARGV[3] lease prefix   P:{T}:lease:
      ARGV[4] lock prefix    P:{T}:lock:r:
      ARGV[5] name
      ARGV[6] owner
      ARGV[7] nonce          the grant's id on the lock nodes
      ARGV[8] node counter   highest fencing counter of the granting quorum
      ARGV[9] acquireAt      ms
      ARGV[10] expireAt      ms (ignored for a lease-held lock)
      ARGV[11] lease id      0 = none

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, token, expireAt}   granted
      {1, revision}                    the lease is not alive
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], feed = KEYS[2], fence = KEYS[3], lexp = KEYS[4], lidx = KEYS[5],
  lkexp = KEYS[6], maxlen = ARGV[2], lp = ARGV[3], rp = ARGV[4] }
local now = now_ms()
local name = ARGV[5]
local lease = tonumber(ARGV[11])

local lease_at = nil
if lease ~= 0 then
  lease_at = lease_expiry(ctx, lease)
  if lease_at == nil or lease_at <= now then
    return { 1, rev }
  end
end

local old = load_lock(ctx, name)
if old and not lock_live(ctx, old, now) then
  remove_lock(ctx, old)
  rev = rev + 1
  commit(ctx, rev, { lock_event('lock_expired', old, rev, old.x) }, now)
  old = nil
end

local newest = tonumber(redis.call('HGET', ctx.fence, name)) or 0
local counter = tonumber(ARGV[8])
local token = (counter > newest and counter or newest) + 1
redis.call('HSET', ctx.fence, name, fmt(token))
local lock = { name = name, o = ARGV[6], n = ARGV[7], t = token, a = tonumber(ARGV[9]),
  x = lease_at or tonumber(ARGV[10]), l = lease }
store_lock(ctx, lock, old)
rev = rev + 1
commit(ctx, rev, { lock_event('lock_acquired', lock, rev, lock.x) }, now)
return { 0, rev, token, lock.x }
