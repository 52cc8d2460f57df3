--[[
  Redlock, one node: takes a lock name for an owner if it is free (or its
  hold ran out: the hold key carries the TTL), or renews it when the same
  owner already holds it (keeping that hold's nonce). Reports the name's
  fencing counter, or how long the other owner's hold still runs.

    Input:
      KEYS[1] hold           P:{T}:redlock:h:<name>  hash {owner, nonce, token}, with PEXPIRE
      KEYS[2] counters       P:{T}:redlock:ctr       hash name -> newest token (never expires)

      ARGV[1] name           field of the counters hash
      ARGV[2] owner
      ARGV[3] nonce          a fresh one, used when the hold is new
      ARGV[4] ttl ms

    Output:
      {1, counter, nonce}          granted (nonce = the hold's: ARGV[3], or the kept one)
      {0, remaining ms, counter}   held by another owner

  The counter is reported either way: the caller mints above the highest
  counter of every node that answered, not only of the granting ones.
]]

local counter = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[2] then
  return { 0, redis.call('PTTL', KEYS[1]), counter }
end
local nonce = ARGV[3]
if owner then
  nonce = redis.call('HGET', KEYS[1], 'nonce')
else
  redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'nonce', nonce)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return { 1, counter, nonce }
