--[[
  lib/lease: leases and lock records, spliced into the lease, lock and sweep
  scripts (after lib/kv, which holds the lease lookups the KV scripts need).
  Everything here is local.

  A lease (see keys.ts):
    P:{T}:lease:exp        zset  member = lease_member(id), score = expire ms
    P:{T}:lease:ttl        hash  lease_member(id) -> granted TTL ms
    P:{T}:lease:<id>:k     zset  score 0, member = attached user key
    P:{T}:lease:<id>:l     zset  score 0, member = name of a lock held under it
  A lease exists exactly while its member is in lease:exp; alive while its
  score is > now. A dead lease stays until the sweeper, a revoke or a grant
  of the same id ends it (its keys and locks then go, with their events).

  A lock record, the hash P:{T}:lock:r:<name>:
    o  owner    n  nonce    t  fencing token    a  acquire ms
    x  expire ms (for a lease-held lock, the lease's expiry when granted;
       readers see the lease's current expiry)
    l  lease id (0 = none)
  Every record's name is in P:{T}:lock:idx (score 0, for List by prefix);
  a record without a lease is in P:{T}:lock:exp (score = x), one with a
  lease in that lease's lock set instead.

  Context fields (`ctx`), besides those of lib/kv:
    lttl  lease TTL hash      rp    lock record prefix P:{T}:lock:r:
    lidx  lock name index     lkexp lock expiry zset
]]

local LOCK_EVENT_PREFIX = '/locks/'

-- A lock record, or nil: {name, o, n, t, a, x, l, e} (`e` as for keys).
local function load_lock(ctx, name)
  local r = redis.call('HMGET', ctx.rp .. name, 'o', 'n', 't', 'a', 'x', 'l')
  if not r[1] then
    return nil
  end
  local x = tonumber(r[5])
  return { name = name, o = r[1], n = r[2], t = tonumber(r[3]), a = tonumber(r[4]), x = x,
    l = tonumber(r[6]), e = x }
end

-- Whether a loaded lock is live at `now` (its TTL, or its lease's); sets `e`.
local function lock_live(ctx, lock, now)
  if lock == nil then
    return false
  end
  if lock.l ~= 0 then
    local at = lease_expiry(ctx, lock.l)
    if at ~= nil and at > now then
      lock.e = at
      return true
    end
    return false
  end
  return lock.x > now
end

local function remove_lock(ctx, lock)
  redis.call('DEL', ctx.rp .. lock.name)
  redis.call('ZREM', ctx.lidx, lock.name)
  if lock.l ~= 0 then
    redis.call('ZREM', lease_set(ctx, lock.l, 'l'), lock.name)
  else
    redis.call('ZREM', ctx.lkexp, lock.name)
  end
end

-- Writes a lock record (replacing `old`, the record of that name, if any).
local function store_lock(ctx, lock, old)
  if old then
    remove_lock(ctx, old)
  end
  redis.call('HSET', ctx.rp .. lock.name, 'o', lock.o, 'n', lock.n, 't', fmt(lock.t),
    'a', fmt(lock.a), 'x', fmt(lock.x), 'l', fmt(lock.l))
  redis.call('ZADD', ctx.lidx, 0, lock.name)
  if lock.l ~= 0 then
    redis.call('ZADD', lease_set(ctx, lock.l, 'l'), 0, lock.name)
  else
    redis.call('ZADD', ctx.lkexp, fmt(lock.x), lock.name)
  end
end

-- A lock as a reply: {name, owner, nonce, token, acquireAt, expireAt, leaseId}.
local function lock_reply(lock, expire_at)
  return { lock.name, lock.o, lock.n, lock.t, lock.a, expire_at, lock.l }
end

-- A lock event: the key /locks/<name> at the revision (as a tombstone), and
-- details {'lock', name, owner, token, acquireAt, expireAt, leaseId}.
local function lock_event(kind, lock, revision, expire_at)
  local event = tombstone_event(kind, LOCK_EVENT_PREFIX .. lock.name, revision, nil)
  event[10] = { 'lock', lock.name, lock.o, lock.t, lock.a, expire_at, lock.l }
  return event
end

-- Ends lease `id` (alive or not) at `revision`: removes it, its keys (EXPIRE
-- events in key order, prevKv showing the lease's expiry) and its lock
-- records (LOCK_EXPIRED in name order, with the stored record), appending
-- the events to `events` and {name, nonce} of each lock to `locks`.
local function end_lease(ctx, id, revision, events, locks)
  local member = lease_member(id)
  local at = tonumber(redis.call('ZSCORE', ctx.lexp, member))
  redis.call('ZREM', ctx.lexp, member)
  redis.call('HDEL', ctx.lttl, member)
  local kset = lease_set(ctx, id, 'k')
  for _, key in ipairs(redis.call('ZRANGE', kset, 0, -1)) do
    local prev = load(ctx, key, false)
    if prev then
      remove(ctx, prev)
      prev.e = at
      events[#events + 1] = tombstone_event('expire', key, revision, prev)
    end
  end
  redis.call('DEL', kset)
  local lset = lease_set(ctx, id, 'l')
  for _, name in ipairs(redis.call('ZRANGE', lset, 0, -1)) do
    local lock = load_lock(ctx, name)
    if lock then
      remove_lock(ctx, lock)
      events[#events + 1] = lock_event('lock_expired', lock, revision, lock.x)
      locks[#locks + 1] = name
      locks[#locks + 1] = lock.n
    end
  end
  redis.call('DEL', lset)
end
