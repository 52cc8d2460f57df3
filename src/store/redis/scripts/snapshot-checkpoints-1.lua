--[[
  ListCheckpoints: an execution's checkpoints in name order (bytewise: equal
  scores in a zset sort by member), at one point in time.

    Input:
      KEYS[1] meta hash      P:{T}:meta

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] execution id

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, {{name, sequence, createAt, status, eventSeq, stateSize}, ...}}
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { sp = ARGV[2] }
local id = ARGV[3]
local out = {}
for _, name in ipairs(redis.call('ZRANGE', checkpoint_index(ctx, id), 0, -1)) do
  local r = redis.call('HMGET', checkpoint_key(ctx, id, name), 'q', 'cpa', 'st', 'es', 'sz')
  if r[1] then
    out[#out + 1] = { name, tonumber(r[1]), tonumber(r[2]), r[3], tonumber(r[4]), tonumber(r[5]) }
  end
end
return { rev, out }
