--[[
  Restore: makes checkpoint `name` the snapshot (hash COPY) with sequence
  max(stored, copied) + 1, keeping the current snapshot's create and expire
  times (none without a current snapshot); any pending resume token is
  invalidated. One new revision with SNAPSHOT_SAVED. A snapshot whose TTL
  passed is deleted first, at its own revision.

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
      ARGV[5] name

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, meta, state, input}   restored
      {1, revision}                       no such checkpoint
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, ctx, now = open_snapshot_change(KEYS, ARGV, ARGV[4])
if not rev then
  return ctx -- the error code
end
local id, name = ARGV[4], ARGV[5]
local ck = checkpoint_key(ctx, id, name)
local s = load_hash(ck, id, false)
if not s then
  return { 1, rev }
end
local current = load_snapshot(ctx, id, false)
local ua = stamp(ctx, now)
s.q = math.max(current and current.q or 0, s.q) + 1
s.ca = current and current.ca or ua
s.ua = ua
s.x = current and current.x or 0
s.tk = nil
if current then
  unindex(ctx, current)
end
local key = snap_key(ctx, id)
redis.call('COPY', ck, key, 'REPLACE')
redis.call('HDEL', key, 'cpa')
write_meta(key, s)
index(ctx, s)
local revision = rev + 1
commit(ctx, revision, { snapshot_event('snapshot_saved', s, revision) }, now)
local b = redis.call('HMGET', key, 'v', 'in')
return { 0, revision, meta_reply(s), b[1] or '', b[2] or '' }
