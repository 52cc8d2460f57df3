--[[
  Checkpoint: copies the live snapshot (hash COPY, without its resume token)
  under `name`, replacing a checkpoint of that name. A new name beyond `max`
  checkpoints is refused. One new revision with an empty feed entry (there
  is no checkpoint event kind). A snapshot whose TTL passed is deleted
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
      ARGV[5] name
      ARGV[6] max checkpoints

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, {name, sequence, createAt, status, eventSeq, stateSize}}
      {1, revision}          no snapshot
      {2, count, revision}   quota
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, ctx, now = open_snapshot_change(KEYS, ARGV, ARGV[4])
if not rev then
  return ctx -- the error code
end
local id, name = ARGV[4], ARGV[5]
local s = load_snapshot(ctx, id, false)
if not s then
  return { 1, rev }
end
local cpi = checkpoint_index(ctx, id)
if not redis.call('ZSCORE', cpi, name) then
  local count = redis.call('ZCARD', cpi)
  if count >= tonumber(ARGV[6]) then
    return { 2, count, rev }
  end
end
local ck = checkpoint_key(ctx, id, name)
redis.call('COPY', snap_key(ctx, id), ck, 'REPLACE')
redis.call('HDEL', ck, 'tk')
redis.call('HSET', ck, 'cpa', fmt(now))
redis.call('ZADD', cpi, 0, name)
local revision = rev + 1
commit(ctx, revision, {}, now)
return { 0, revision, { name, s.q, now, s.st, s.es, s.sz } }
