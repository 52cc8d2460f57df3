--[[
  AppendEvents: appends events to an execution's log (a stream, entry id
  <seq>-0) with sequences last + 1, ...; with an expected last sequence, only
  if the log ends there. With an idempotency key seen within its TTL, appends
  nothing and answers as the first time (or refuses a different request).
  One new revision with an empty feed entry (there is no event kind for
  appends). The idempotency hash and zset carry a Redis TTL as well, so an
  idle execution's records go on their own; the per-key expiry in the value
  is what counts.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] feed maxlen
      ARGV[4] execution id
      ARGV[5] expected last  '' = no check
      ARGV[6] idempotency key '' = none
      ARGV[7] digest         of the request (hex)
      ARGV[8] idempotency ttl ms
      ARGV[9] n              events
      ARGV[10..] type, data  per event

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, first, last, replayed (0/1), revision}
      {1, lastSeq, revision}   stale
      {2, revision}            idempotency key used for another request
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], feed = KEYS[2], sp = ARGV[2], maxlen = ARGV[3] }
local now = now_ms()
local id = ARGV[4]
local ikey, digest = ARGV[6], ARGV[7]
local ihash, izset = ctx.sp .. 'idem:' .. id, ctx.sp .. 'idemx:' .. id
if ikey ~= '' then
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', izset, '-inf', fmt(now), 'LIMIT', 0, 64)) do
    redis.call('HDEL', ihash, old)
    redis.call('ZREM', izset, old)
  end
  local seen = redis.call('HGET', ihash, ikey)
  if seen then
    local first, last, expire, d = string.match(seen, '^(%d+):(%d+):(%d+):(.*)$')
    if tonumber(expire) > now then
      if d ~= digest then
        return { 2, rev }
      end
      return { 0, tonumber(first), tonumber(last), 1, rev }
    end
  end
end
local log = log_key(ctx, id)
local last = log_last(ctx, id)
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= last then
  return { 1, last, rev }
end
local n = tonumber(ARGV[9])
for i = 1, n do
  redis.call('XADD', log, fmt(last + i) .. '-0', 't', ARGV[8 + 2 * i], 'd', ARGV[9 + 2 * i],
    'a', fmt(now))
end
if ikey ~= '' then
  local expire = now + tonumber(ARGV[8])
  redis.call('HSET', ihash, ikey, fmt(last + 1) .. ':' .. fmt(last + n) .. ':' .. fmt(expire) ..
    ':' .. digest)
  redis.call('ZADD', izset, fmt(expire), ikey)
  redis.call('PEXPIREAT', ihash, fmt(expire))
  redis.call('PEXPIREAT', izset, fmt(expire))
end
local revision = rev + 1
commit(ctx, revision, {}, now)
return { 0, last + 1, last + n, 0, revision }
