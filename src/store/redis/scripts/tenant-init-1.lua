--[[
  Initialises a tenant's meta hash under the current epoch, if it has none.
  Called only after the store checked that the global epoch marker is the one
  it started with, so an empty Redis is never silently taken for a new tenant.

    Input:
      KEYS[1] meta hash    P:{T}:meta

      ARGV[1] epoch        the epoch this replica started with

    Output:
       1  the tenant meta exists under this epoch
      -2  EPOCH_MISMATCH: the meta was written under another epoch
]]
--- @include "lib/kv"

redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
redis.call('HSETNX', KEYS[1], 'rev', '0')
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return EPOCH_MISMATCH
end
return 1
