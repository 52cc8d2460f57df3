--[[
  Reads live lock records at one point in time: one by name, or every one
  whose name starts with a prefix, in name order (ZRANGE BYLEX over the name
  index, never SCAN). A lease-held lock shows its lease's expiry.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] lease expiry   P:{T}:lease:exp
      KEYS[3] lock names     P:{T}:lock:idx (zset, score 0, member = name)

      ARGV[1] epoch
      ARGV[2] lock prefix    P:{T}:lock:r:
      ARGV[3] mode           'g' = one lock, 'l' = by prefix
      ARGV[4] name (mode g), or the BYLEX low bound (mode l: '-' or '[prefix')
      ARGV[5] the BYLEX high bound (mode l: '+' or '(end')

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, {lock, ...}} where lock = {name, owner, nonce, token,
      acquireAt, expireAt, leaseId}
]]
--- @include "lib/kv"
--- @include "lib/lease"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { lexp = KEYS[2], lidx = KEYS[3], rp = ARGV[2] }
local now = now_ms()
local names
if ARGV[3] == 'g' then
  names = { ARGV[4] }
else
  names = redis.call('ZRANGE', ctx.lidx, ARGV[4], ARGV[5], 'BYLEX')
end
local locks = {}
for _, name in ipairs(names) do
  local lock = load_lock(ctx, name)
  if lock_live(ctx, lock, now) then
    locks[#locks + 1] = lock_reply(lock, lock.e)
  end
end
return { rev, locks }
