--[[
  Resume: redeems a resume token. If the token hash is the pending token of a
  live suspended snapshot and has not expired (Redis TIME), sets status
  running, stores the input, clears the suspension and forgets the token,
  at one new revision with EXECUTION_RESUMED. Redis runs scripts one at a
  time, so of concurrent Resumes of one token exactly one finds it.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] changefeed     P:{T}:feed
      KEYS[3] expiry index   P:{T}:snap:exp
      KEYS[4] token index    P:{T}:snap:tok
      KEYS[5] update clock   P:{T}:snap:clock

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] feed maxlen
      ARGV[4] token hash
      ARGV[5] input

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, meta, state, input}   resumed
      {1, revision}                       invalid token
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, ctx, now = open_snapshot_change(KEYS, ARGV, nil)
if not rev then
  return ctx -- the error code
end
local hash = ARGV[4]
local id = redis.call('HGET', ctx.stok, hash)
if not id then
  return { 1, rev }
end
rev = expire_if_due(ctx, id, now, rev)
local s = load_snapshot(ctx, id, true)
if not s or s.tk ~= hash or s.st ~= 'suspended' or (s.sx ~= 0 and s.sx <= now) then
  return { 1, rev }
end
unindex(ctx, s)
s.st = 'running'
clear_suspension(s)
s.ua = stamp(ctx, now)
local key = snap_key(ctx, id)
write_meta(key, s)
redis.call('HSET', key, 'in', ARGV[5])
s.input = ARGV[5]
index(ctx, s)
local revision = rev + 1
commit(ctx, revision, { snapshot_event('execution_resumed', s, revision) }, now)
return { 0, revision, meta_reply(s), s.v, s.input }
