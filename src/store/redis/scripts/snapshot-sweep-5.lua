--[[
  Deletes up to `limit` snapshots whose TTL passed (by Redis TIME), as Delete
  without purge, at one new revision with one SNAPSHOT_DELETED event each.
  Atomic, so replicas sweeping the same tenant at once delete each once.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] expiry index   P:{T}:snap:exp
      KEYS[4] token index    P:{T}:snap:tok
      KEYS[5] update clock   P:{T}:snap:clock

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] feed maxlen
      ARGV[4] limit

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {expired, nextExpireAt (0 = none), revision}
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], feed = KEYS[2], sexp = KEYS[3], stok = KEYS[4], sclk = KEYS[5],
  sp = ARGV[2], maxlen = ARGV[3] }
local now = now_ms()
local revision = rev + 1
local events = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ctx.sexp, '-inf', fmt(now), 'LIMIT', 0,
  tonumber(ARGV[4]))) do
  local s = load_snapshot(ctx, id, false)
  if s then
    remove_snapshot(ctx, s)
    events[#events + 1] = snapshot_event('snapshot_deleted', s, revision)
  else
    -- An index entry without a snapshot (never expected): drop it, or it stays due forever.
    redis.call('ZREM', ctx.sexp, id)
  end
end
if #events > 0 then
  commit(ctx, revision, events, now)
  rev = revision
end
local next_at = 0
local first = redis.call('ZRANGE', ctx.sexp, 0, 0, 'WITHSCORES')
if first[2] then
  next_at = tonumber(first[2])
end
return { #events, next_at, rev }
