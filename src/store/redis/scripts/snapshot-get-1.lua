--[[
  Reads one snapshot at one point in time. A snapshot whose TTL passed is
  absent.

    Input:
      KEYS[1] meta hash      P:{T}:meta

      ARGV[1] epoch
      ARGV[2] snap prefix    P:{T}:snap:
      ARGV[3] execution id
      ARGV[4] with state     '1' = also the state and input bytes

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH, or
      {revision, false} or {revision, meta, state, input} (meta: lib/snapshot meta_reply;
      state and input are '' without ARGV[4])
]]
--- @include "lib/kv"
--- @include "lib/snapshot"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { sp = ARGV[2] }
local with_state = ARGV[4] == '1'
local s = load_snapshot(ctx, ARGV[3], with_state)
if not snapshot_live(s, now_ms()) then
  return { rev, false }
end
return { rev, meta_reply(s), s.v or '', s.input or '' }
