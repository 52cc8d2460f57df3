--[[
  Reads leases at one point in time: one live lease (with its attached keys
  and locks, in bytewise order, when asked), or every live lease.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] lease expiry   P:{T}:lease:exp
      KEYS[3] lease TTLs     P:{T}:lease:ttl

      ARGV[1] epoch
      ARGV[2] lease prefix   P:{T}:lease:
      ARGV[3] mode           'g' = one lease, 'l' = every live lease
      ARGV[4] lease id       (mode g)
      ARGV[5] with_attached  '1' = with keys and locks (mode g)

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, {lease, ...}} where lease = {id, grantedTtl, expireAt,
      keys | nil, locks | nil}; mode g gives at most one, mode l in expiry
      order (the store sorts by id)
]]
--- @include "lib/kv"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { lexp = KEYS[2], lttl = KEYS[3], lp = ARGV[2] }
local now = now_ms()
local leases = {}
if ARGV[3] == 'g' then
  local id = tonumber(ARGV[4])
  local member = lease_member(id)
  local at = tonumber(redis.call('ZSCORE', ctx.lexp, member))
  if at and at > now then
    local lease = { id, tonumber(redis.call('HGET', ctx.lttl, member)), at, false, false }
    if ARGV[5] == '1' then
      lease[4] = redis.call('ZRANGE', lease_set(ctx, id, 'k'), 0, -1)
      lease[5] = redis.call('ZRANGE', lease_set(ctx, id, 'l'), 0, -1)
    end
    leases[1] = lease
  end
else
  local live = redis.call('ZRANGEBYSCORE', ctx.lexp, '(' .. fmt(now), '+inf', 'WITHSCORES')
  for i = 1, #live, 2 do
    local member = live[i]
    leases[#leases + 1] = { tonumber(member), tonumber(redis.call('HGET', ctx.lttl, member)),
      tonumber(live[i + 1]) }
  end
end
return { rev, leases }
