--[[
  The commit step of Patch: replaces the state if the stored sequence is the
  one the patch was computed from; the sequence becomes it + 1, nothing else
  but the update time, the size and the encoding changes. One new revision
  with one SNAPSHOT_SAVED event. A snapshot whose TTL passed is deleted
  first, at its own revision.

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
      ARGV[5] expected sequence
      ARGV[6] state size     uncompressed
      ARGV[7] encoding       identity | br
      ARGV[8] state bytes    as stored

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, meta}            saved
      {1, currentSequence, revision} stale
      {2, revision}                  no snapshot
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, ctx, now = open_snapshot_change(KEYS, ARGV, ARGV[4])
if not rev then
  return ctx -- the error code
end
local id = ARGV[4]
local s = load_snapshot(ctx, id, false)
if not s then
  return { 2, rev }
end
local expected = tonumber(ARGV[5])
if s.q ~= expected then
  return { 1, s.q, rev }
end
unindex(ctx, s)
s.q = expected + 1
s.ua = stamp(ctx, now)
s.sz = tonumber(ARGV[6])
s.enc = ARGV[7]
local key = snap_key(ctx, id)
write_meta(key, s)
redis.call('HSET', key, 'v', ARGV[8])
index(ctx, s)
local revision = rev + 1
commit(ctx, revision, { snapshot_event('snapshot_saved', s, revision) }, now)
return { 0, revision, meta_reply(s) }
