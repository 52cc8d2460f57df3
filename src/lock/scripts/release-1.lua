--[[
  Redlock, one node: drops the hold of one grant, and nobody else's. The
  grant is named by its nonce or, once confirmed, by its fencing token (the
  two cannot be confused: a nonce is never all digits).

    Input:
      KEYS[1] hold           P:{T}:redlock:h:<name>

      ARGV[1] the grant's nonce or fencing token

    Output:
      1  released
      0  that grant did not hold the lock here
]]

local hold = redis.call('HMGET', KEYS[1], 'nonce', 'token')
if hold[1] ~= ARGV[1] and hold[2] ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
