--[[
  ReadEvents: log events with seq > after, in order, at most `limit`, and
  (after the first) at most `max bytes` of data, with the log's last sequence.

    Input:
      KEYS[1] meta hash      P:{T}:meta

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] execution id
      ARGV[4] after seq
      ARGV[5] limit          >= 1
      ARGV[6] max bytes

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, lastSeq, {{seq, type, data, time}, ...}}
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { sp = ARGV[2] }
local id = ARGV[3]
local log = log_key(ctx, id)
local limit, max_bytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local start = fmt(tonumber(ARGV[4]) + 1) .. '-0'
local events, bytes = {}, 0
local full = false
while not full and #events < limit do
  local batch = math.min(limit - #events, 128)
  local entries = redis.call('XRANGE', log, start, '+', 'COUNT', batch)
  for _, entry in ipairs(entries) do
    local f = entry[2]
    local e = { tonumber(string.match(entry[1], '^(%d+)')), '', '', 0 }
    for i = 1, #f, 2 do
      if f[i] == 't' then
        e[2] = f[i + 1]
      elseif f[i] == 'd' then
        e[3] = f[i + 1]
      elseif f[i] == 'a' then
        e[4] = tonumber(f[i + 1])
      end
    end
    if #events > 0 and bytes + #e[3] > max_bytes then
      full = true
      break
    end
    bytes = bytes + #e[3]
    events[#events + 1] = e
    start = '(' .. entry[1]
  end
  if #entries < batch then
    break
  end
end
return { rev, log_last(ctx, id), events }
