--[[
  Reads keys at one point in time. Keys whose TTL passed, or whose lease ran
  out, are absent; a key on a lease shows the lease's expiry.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] lease expiry   P:{T}:lease:exp (read only for keys on a lease)

      ARGV[1] epoch
      ARGV[2] record prefix  P:{T}:k:
      ARGV[3..] keys

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, {kv | nil, ...}} in request order, where
      kv = {key, value, create, mod, version, lease, expireAt (0 = never)}
]]
--- @include "lib/kv"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { lexp = KEYS[2], kp = ARGV[2] }
local now = now_ms()
local kvs = {}
for i = 3, #ARGV do
  local rec = live(ctx, ARGV[i], now, false)
  kvs[#kvs + 1] = rec and kv_reply(rec, true) or false
end
return { rev, kvs }
