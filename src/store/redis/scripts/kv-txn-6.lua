--[[
  Applies atomic KV plans (Put, Delete and Txn are all plans), one after the
  other in one script call (the store coalesces the writes of one event-loop
  turn), each with the semantics of MemoryKvStore.txn and its own revision:
    1. fences, in order: a token below the lock's stored token refuses the
       plan (nothing applied);
    2. compares on live state (keys whose TTL or lease ran out are absent)
       choose the branch;
    3. a put with a lease needs a live lease (else nothing is applied);
    4. keys the branch writes that are no longer live (TTL passed or lease
       ended) expire first, at their own revision (one feed entry of EXPIRE
       events, in op order, a range's keys in key order);
    5. the branch's ops apply in order at the next revision (a get after a
       put sees the put); the revision advances only if something changed,
       with one feed entry holding every event of the revision.

    Input:
      KEYS[1] meta hash      P:{T}:meta
      KEYS[2] key index      P:{T}:idx
      KEYS[3] expiry index   P:{T}:exp
      KEYS[4] changefeed     P:{T}:feed
      KEYS[5] fence tokens   P:{T}:fence (hash lock name -> newest token)
      KEYS[6] lease expiry   P:{T}:lease:exp (read only for leases the plan meets)

      ARGV[1] epoch
      ARGV[2] record prefix  P:{T}:k:
      ARGV[3] feed maxlen    entries retained (exact trim)
      ARGV[4] lease prefix   P:{T}:lease: (a lease's key set is <prefix><id>:k)
      ARGV[5]   nPlans, then per plan: nArgs, then the plan's nArgs arguments,
        flat (planArgs in redis-kv-store.ts):
        nFences, then per fence: lockName, token
        nCompares, then per compare: key, operator (= ! > <),
          target (v version, m mod, c create, l lease, b value, e exists), operand
        nSuccess, ops...; nFailure, ops..., where an op is one of
          p key value ttlMs('' = none) leaseId prevKv
          d key prevKv
          D start has_end end prevKv                       (delete range)
          g key
          r start has_end end has_after after limit keys_only count_only

    Output:
      -1 NEED_INIT, -2 EPOCH_MISMATCH (nothing applied), or one reply per plan:
      {0, succeeded (0/1), revision, {result, ...}}   done, where a result is
        {1, kv (no value), prevKv | nil}                put
      (a key on a lease reports the lease's expiry as its expireAt)
        {2, deleted, {prevKv, ...}}                     delete / delete range
        {3, kv | nil}                                   get
        {4, count, more (0/1), {kv, ...}}               range
      {1, lockName, currentToken, revision}           fence stale
      {2, leaseId, revision}                          lease not found
]]
--- @include "lib/kv"

local rev, code = open_tenant(KEYS[1], ARGV[1])
if not rev then
  return code
end
local ctx = { meta = KEYS[1], idx = KEYS[2], exp = KEYS[3], feed = KEYS[4], fence = KEYS[5],
  lexp = KEYS[6], kp = ARGV[2], maxlen = ARGV[3], lp = ARGV[4] }
local now = now_ms()
-- One plan, read from ARGV starting at `first`; returns its reply.
local function apply_plan(first)
  local nxt = argv_reader(first)

  -- 1. Fences.
  local n_fences = tonumber(nxt())
  for _ = 1, n_fences do
    local name = nxt()
    local token = tonumber(nxt())
    local current = tonumber(redis.call('HGET', ctx.fence, name)) or 0
    if token < current then
      return { 1, name, current, rev }
    end
  end

  -- 2. Compares.
  local function holds(operator, target, operand, rec)
    local order
    if target == 'e' then
      order = ((rec ~= nil) == (operand == '1')) and 0 or 1
    elseif target == 'b' then
      if not rec then
        return false
      end
      order = bytecmp(rec.v, operand)
    else
      local have = 0
      if rec then
        if target == 'v' then
          have = rec.n
        elseif target == 'm' then
          have = rec.m
        elseif target == 'c' then
          have = rec.c
        else
          have = rec.l
        end
      end
      local want = tonumber(operand)
      order = have < want and -1 or (have > want and 1 or 0)
    end
    if operator == '=' then
      return order == 0
    elseif operator == '!' then
      return order ~= 0
    elseif operator == '>' then
      return order > 0
    end
    return order < 0
  end

  local compares = {}
  local n_compares = tonumber(nxt())
  for i = 1, n_compares do
    compares[i] = { key = nxt(), operator = nxt(), target = nxt(), operand = nxt() }
  end

  local function read_ops()
    local ops = {}
    local n = tonumber(nxt())
    for i = 1, n do
      local kind = nxt()
      local op = { kind = kind }
      if kind == 'p' then
        op.key = nxt()
        op.value = nxt()
        op.ttl = tonumber(nxt())
        op.lease = tonumber(nxt())
        op.prev = nxt() == '1'
      elseif kind == 'd' then
        op.key = nxt()
        op.prev = nxt() == '1'
      elseif kind == 'D' then
        op.q = { start = nxt() }
        op.q.has_end = nxt() == '1'
        op.q.stop = nxt()
        op.prev = nxt() == '1'
      elseif kind == 'g' then
        op.key = nxt()
      else
        op.q = read_query(nxt)
      end
      ops[i] = op
    end
    return ops
  end
  local success = read_ops()
  local failure = read_ops()

  local succeeded = true
  for _, c in ipairs(compares) do
    if not holds(c.operator, c.target, c.operand, live(ctx, c.key, now, c.target ~= 'b')) then
      succeeded = false
      break
    end
  end
  local ops = succeeded and success or failure

  -- 3. Leases.
  for _, op in ipairs(ops) do
    if op.kind == 'p' and op.lease ~= 0 and not lease_alive(ctx, op.lease, now) then
      return { 2, op.lease, rev }
    end
  end

  -- 4. Keys this branch writes that are no longer live expire first, at their own revision.
  local due, seen = {}, {}
  local function add_due(key)
    if not seen[key] then
      seen[key] = true
      due[#due + 1] = key
    end
  end
  for _, op in ipairs(ops) do
    if op.kind == 'p' or op.kind == 'd' then
      if is_stale(ctx, load(ctx, op.key, true), now) then
        add_due(op.key)
      end
    elseif op.kind == 'D' then
      for _, key in ipairs(expired_in(ctx, now, op.q, true)) do
        add_due(key)
      end
    end
  end
  if #due > 0 and expire_keys(ctx, due, rev + 1, now) > 0 then
    rev = rev + 1
  end

  -- 5. The branch, at the next revision.
  local revision = rev + 1
  local events = {}
  local results = {}
  for i, op in ipairs(ops) do
    if op.kind == 'g' then
      local rec = live(ctx, op.key, now, false)
      results[i] = { 3, rec and kv_reply(rec, true) or false }
    elseif op.kind == 'r' then
      local count, more, kvs = range_page(ctx, now, op.q)
      results[i] = { 4, count, more, kvs }
    elseif op.kind == 'p' then
      local prev = live(ctx, op.key, now, false)
      local rec = { key = op.key, v = op.value, m = revision, l = op.lease, x = 0 }
      if prev then
        rec.c = prev.c
        rec.n = prev.n + 1
      else
        rec.c = revision
        rec.n = 1
      end
      if op.ttl then
        rec.x = now + op.ttl
      end
      rec.e = rec.x
      store(ctx, rec, prev and prev.l)
      -- A key on a lease shows the lease's expiry (alive: checked in step 3).
      if rec.l ~= 0 then
        rec.e = lease_expiry(ctx, rec.l)
      end
      events[#events + 1] = put_event(rec, prev)
      results[i] = { 1, kv_reply(rec, false), (op.prev and prev) and kv_reply(prev, true) or false }
    elseif op.kind == 'd' then
      local prev = live(ctx, op.key, now, false)
      local prevs = {}
      if prev then
        remove(ctx, prev)
        -- As MemoryKvStore: a single delete reports the stored record (a key on
        -- a lease without the lease's expiry); a range delete the live view.
        prev.e = prev.x
        events[#events + 1] = tombstone_event('delete', op.key, revision, prev)
        if op.prev then
          prevs[1] = kv_reply(prev, true)
        end
      end
      results[i] = { 2, prev and 1 or 0, prevs }
    else
      -- Delete range: every live key of [start, end).
      local keys = redis.call('ZRANGE', ctx.idx, lex_low(op.q), lex_high(op.q), 'BYLEX')
      local deleted = 0
      local prevs = {}
      for _, key in ipairs(keys) do
        local prev = live(ctx, key, now, false)
        if prev then
          remove(ctx, prev)
          deleted = deleted + 1
          events[#events + 1] = tombstone_event('delete', key, revision, prev)
          if op.prev then
            prevs[#prevs + 1] = kv_reply(prev, true)
          end
        end
      end
      results[i] = { 2, deleted, prevs }
    end
  end
  if #events > 0 then
    commit(ctx, revision, events, now)
    rev = revision
  end
  return { 0, succeeded and 1 or 0, rev, results }
end

local replies = {}
local at = 6
for p = 1, tonumber(ARGV[5]) do
  local n_args = tonumber(ARGV[at])
  replies[p] = apply_plan(at + 1)
  at = at + 1 + n_args
end
return replies
