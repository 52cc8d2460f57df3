--[[
  Suspend: sets status suspended with the suspension (suspend time = Redis
  TIME) and makes `token hash` the one pending resume token, replacing an
  earlier one. One new revision with EXECUTION_SUSPENDED. A snapshot whose
  TTL passed is deleted first, at its own revision.

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
      ARGV[5] reason
      ARGV[6] data
      ARGV[7] token expiry   ms epoch (0 = never)
      ARGV[8] token hash     hex SHA-256 of the token

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {0, revision, meta}   suspended
      {1, revision}         no snapshot
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
  return { 1, rev }
end
unindex(ctx, s)
s.st = 'suspended'
s.ua = stamp(ctx, now)
s.sr, s.sd, s.sa, s.sx, s.tk = ARGV[5], ARGV[6], now, tonumber(ARGV[7]), ARGV[8]
write_meta(snap_key(ctx, id), s)
index(ctx, s)
local revision = rev + 1
commit(ctx, revision, { snapshot_event('execution_suspended', s, revision) }, now)
return { 0, revision, meta_reply(s) }
