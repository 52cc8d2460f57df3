--[[
  Reads one page of a key range at one point in time, in bytewise key order
  (ZRANGE BYLEX over the idx zset; never SCAN or KEYS). Keys whose TTL passed
  or whose lease ran out are skipped, and left out of the count.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] key index      P:{T}:idx  (zset, score 0, member = key)
      KEYS[3] expiry index   P:{T}:exp  (zset, score = expire ms)
      KEYS[4] lease expiry   P:{T}:lease:exp (zset, score = expire ms)

      ARGV[1] epoch
      ARGV[2] record prefix  P:{T}:k:
      ARGV[3] lease prefix   P:{T}:lease:
      ARGV[4] start          inclusive lower bound ('' = from the first key)
      ARGV[5] has_end        '1' if ARGV[6] bounds the range
      ARGV[6] end            exclusive upper bound
      ARGV[7] has_after      '1' if ARGV[8] is a cursor
      ARGV[8] after          exclusive cursor (the last key of the previous page)
      ARGV[9] limit          page size >= 1
      ARGV[10] keys_only     '1' = no values
      ARGV[11] count_only    '1' = no keys, only the count

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, count, more (0/1), {kv, ...}}
]]
--- @include "lib/kv"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], idx = KEYS[2], exp = KEYS[3], lexp = KEYS[4], kp = ARGV[2],
  lp = ARGV[3] }
local q = read_query(argv_reader(4))
local count, more, kvs = range_page(ctx, now_ms(), q)
return { rev, count, more, kvs }
