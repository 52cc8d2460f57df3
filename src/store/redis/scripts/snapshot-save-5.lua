--[[
  Save: stores a snapshot if its sequence is greater than the stored one
  (any sequence >= 1 for a new snapshot), at one new revision with one
  SNAPSHOT_SAVED event. The status '' keeps the stored one (running for a new
  snapshot); a resulting status other than suspended clears the suspension
  and the pending resume token. The input of the last Resume is kept. A
  snapshot whose TTL passed is deleted first, at its own revision.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] expiry index   P:{T}:snap:exp
      KEYS[4] token index    P:{T}:snap:tok
      KEYS[5] update clock   P:{T}:snap:clock

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] feed maxlen
      ARGV[4] execution id
      ARGV[5] sequence
      ARGV[6] content type
      ARGV[7] status         '' = keep
      ARGV[8] metadata       packed (see lib/snapshot)
      ARGV[9] ttl ms         '' = never expires
      ARGV[10] event seq
      ARGV[11] state size    uncompressed
      ARGV[12] encoding      identity | br
      ARGV[13] state bytes   as stored

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, meta}           saved
      {1, currentSequence, revision} stale
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, ctx, now = open_snapshot_change(KEYS, ARGV, ARGV[4])
if not rev then
  return ctx -- the error code
end
local id = ARGV[4]
local sequence = tonumber(ARGV[5])
local prev = load_snapshot(ctx, id, false)
if prev and sequence <= prev.q then
  return { 1, prev.q, rev }
end
local ua = stamp(ctx, now)
local status = ARGV[7]
if status == '' then
  status = prev and prev.st or 'running'
end
local s = { id = id, q = sequence, ct = ARGV[6], st = status, md = ARGV[8], ca = ua, ua = ua,
  x = 0, es = tonumber(ARGV[10]), sz = tonumber(ARGV[11]), enc = ARGV[12] }
if ARGV[9] ~= '' then
  s.x = now + tonumber(ARGV[9])
end
if prev then
  s.ca = prev.ca
  if status == 'suspended' then
    s.sr, s.sd, s.sa, s.sx, s.tk = prev.sr, prev.sd, prev.sa, prev.sx, prev.tk
  end
  unindex(ctx, prev)
end
local key = snap_key(ctx, id)
write_meta(key, s)
redis.call('HSET', key, 'v', ARGV[13])
index(ctx, s)
local revision = rev + 1
commit(ctx, revision, { snapshot_event('snapshot_saved', s, revision) }, now)
return { 0, revision, meta_reply(s) }
