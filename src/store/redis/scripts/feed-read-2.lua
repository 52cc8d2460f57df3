--[[
  Reads changefeed entries from a revision on, with the oldest retained
  revision and the current revision, at one point in time.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed

      ARGV[1] epoch
      ARGV[2] from revision  entries with revision >= it
      ARGV[3] limit          entries at most

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, oldest (0 = empty), {{id, {field, value, ...}}, ...}}
      where each entry's fields are e (cmsgpack events) and t (ms written).
]]
--- @include "lib/kv"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local oldest = 0
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if first[1] then
  oldest = tonumber(string.match(first[1][1], '^(%d+)'))
end
local from = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local entries = {}
if oldest > 0 and limit > 0 then
  local start = '-'
  if from > 0 then
    start = fmt(from) .. '-0'
  end
  entries = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', limit)
end
return { rev, oldest, entries }
