--[[
  List: one page of live snapshots' metadata in (update time desc, id asc)
  order, merged from the order zsets of the requested statuses (ZRANGE
  BYLEX over order members, see lib/snapshot), within [floor, ceiling) and
  strictly after the cursor.

    Input:
      KEYS[1] meta hash      P:{T}:meta

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] statuses       comma-separated core names
      ARGV[4] floor          inclusive lower order member ('' = none): updated before
      ARGV[5] cursor         exclusive order member ('' = none): the page token
      ARGV[6] ceiling        exclusive upper order member ('' = none): updated at or after
      ARGV[7] limit          page size >= 1

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or {revision, more (0/1), {meta, ...}}
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { sp = ARGV[2] }
local now = now_ms()
local floor, cursor, ceiling = ARGV[4], ARGV[5], ARGV[6]
local limit = tonumber(ARGV[7])
local low
if cursor ~= '' and bytecmp(cursor, floor) >= 0 then
  low = '(' .. cursor
elseif floor ~= '' then
  low = '[' .. floor
else
  low = '-'
end
local high = ceiling ~= '' and ('(' .. ceiling) or '+'

local found = {}
for status in string.gmatch(ARGV[3], '[^,]+') do
  local key = order_key(ctx, status)
  local taken, offset = 0, 0
  while taken <= limit do
    local batch = limit + 1 - taken
    local members = redis.call('ZRANGE', key, low, high, 'BYLEX', 'LIMIT', offset, batch)
    for _, member in ipairs(members) do
      local s = load_snapshot(ctx, string.sub(member, 18), false)
      if snapshot_live(s, now) then
        found[#found + 1] = { member, s }
        taken = taken + 1
      end
    end
    if #members < batch then
      break
    end
    offset = offset + #members
  end
end
table.sort(found, function(a, b)
  return bytecmp(a[1], b[1]) < 0
end)
local page = {}
for i = 1, math.min(limit, #found) do
  page[i] = meta_reply(found[i][2])
end
return { rev, #found > limit and 1 or 0, page }
