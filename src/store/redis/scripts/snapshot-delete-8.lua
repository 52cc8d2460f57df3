--[[
  Delete: removes the snapshot and its pending resume token, at one new
  revision with SNAPSHOT_DELETED. With purge also the execution's
  checkpoints, event log and idempotency records, and every KV key in the
  window [start, end) (the `executions/<id>/` prefix) with one DELETE event
  each, in the same revision; KV keys whose TTL passed (or whose lease ran
  out) expire first at their own revision, as a KV delete does. Nothing to
  remove: no revision. A snapshot whose TTL passed is deleted first, at its
  own revision (so it is not reported as deleted here).

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] expiry index   P:{T}:snap:exp
      KEYS[4] token index    P:{T}:snap:tok
      KEYS[5] update clock   P:{T}:snap:clock
      KEYS[6] key index      P:{T}:idx
      KEYS[7] key expiry     P:{T}:exp
      KEYS[8] lease expiry   P:{T}:lease:exp

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] feed maxlen
      ARGV[4] execution id
      ARGV[5] purge          '1' = purge
      ARGV[6] record prefix  P:{T}:k:
      ARGV[7] lease prefix   P:{T}:lease:
      ARGV[8] start          KV window start (the key prefix)
      ARGV[9] has_end        '1' if ARGV[10] bounds the window
      ARGV[10] end           exclusive end

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or {deleted (0/1), revision}
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], feed = KEYS[2], sexp = KEYS[3], stok = KEYS[4], sclk = KEYS[5],
  idx = KEYS[6], exp = KEYS[7], lexp = KEYS[8], sp = ARGV[2], maxlen = ARGV[3], kp = ARGV[6],
  lp = ARGV[7] }
local now = now_ms()
local id = ARGV[4]
local purge = ARGV[5] == '1'
local q = { start = ARGV[8], has_end = ARGV[9] == '1', stop = ARGV[10] }
rev = expire_if_due(ctx, id, now, rev)
if purge then
  local due = expired_in(ctx, now, q, true)
  if #due > 0 and expire_keys(ctx, due, rev + 1, now) > 0 then
    rev = rev + 1
  end
end

local revision = rev + 1
local events = {}
local s = load_snapshot(ctx, id, false)
local changed = false
if s then
  remove_snapshot(ctx, s)
  events[#events + 1] = snapshot_event('snapshot_deleted', s, revision)
  changed = true
end
if purge then
  local cpi = checkpoint_index(ctx, id)
  for _, name in ipairs(redis.call('ZRANGE', cpi, 0, -1)) do
    redis.call('DEL', checkpoint_key(ctx, id, name))
    changed = true
  end
  local gone = redis.call('DEL', cpi, log_key(ctx, id), ctx.sp .. 'idem:' .. id,
    ctx.sp .. 'idemx:' .. id)
  if gone > 0 then
    changed = true
  end
  for _, key in ipairs(redis.call('ZRANGE', ctx.idx, lex_low(q), lex_high(q), 'BYLEX')) do
    local prev = live(ctx, key, now, false)
    if prev then
      remove(ctx, prev)
      events[#events + 1] = tombstone_event('delete', key, revision, prev)
    end
  end
end
if changed or #events > 0 then
  commit(ctx, revision, events, now)
  rev = revision
end
return { s and 1 or 0, rev }
