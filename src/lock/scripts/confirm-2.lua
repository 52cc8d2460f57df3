--[[
  Redlock, one node: records the fencing token minted for a grant. The
  name's counter is raised to the token on every node it reaches (a counter
  only ever grows, so this is always safe, and it re-seeds nodes that came
  back empty); the hold stores the token only if `nonce` still holds it.

    Input:
      KEYS[1] hold           P:{T}:redlock:h:<name>
      KEYS[2] counters       P:{T}:redlock:ctr

      ARGV[1] name
      ARGV[2] nonce
      ARGV[3] token

    Output:
      1  the nonce holds the lock here (counter and hold updated)
      0  it does not (only the counter was raised)
]]

local token = tonumber(ARGV[3])
local counter = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if token > counter then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
if redis.call('HGET', KEYS[1], 'nonce') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'token', ARGV[3])
return 1
