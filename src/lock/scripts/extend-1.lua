--[[
  Redlock, one node: sets the hold of `nonce` to expire `ttl` ms from now.

    Input:
      KEYS[1] hold           P:{T}:redlock:h:<name>

      ARGV[1] nonce
      ARGV[2] ttl ms

    Output:
      1  extended
      0  the nonce does not hold the lock here (released, expired or taken)
]]

if redis.call('HGET', KEYS[1], 'nonce') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
