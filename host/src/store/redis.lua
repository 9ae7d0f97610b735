-- The Redis store's calls, run by the server as one script each: a call
-- is atomic, so hosts racing on a key (increment, compare-and-swap) or on
-- a quota never interleave. redis_backend.rs describes the keys.
--
-- ARGV: prefix, op, tenant, key (keys: the prefix to list), max-entries,
-- max-bytes, max-entries-per-tenant, max-bytes-per-tenant, sweep,
-- sweep-when-full, then the op's own arguments.
--
-- Time is the server's (TIME), in whole seconds as in the redb store, so
-- hosts whose clocks differ agree on what has expired.
local P, op, t, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local L = {
  entries = tonumber(ARGV[5]),
  bytes = tonumber(ARGV[6]),
  tentries = tonumber(ARGV[7]),
  tbytes = tonumber(ARGV[8]),
}
local SWEEP, SWEEP_WHEN_FULL = tonumber(ARGV[9]), tonumber(ARGV[10])
local X, C, U = P .. 'x', P .. 'c', P .. 'u'
local now = tonumber(redis.call('TIME')[1])

local function int(n) return string.format('%d', n) end
local function vkey(m) return P .. 'v:' .. m end
local function ikey(tenant) return P .. 'i:' .. tenant end

local function usage(who)
  local u = redis.call('HMGET', U, 'e:' .. who, 'b:' .. who)
  return tonumber(u[1]) or 0, tonumber(u[2]) or 0
end

local function account(tenant, entries, bytes)
  for _, who in ipairs({ tenant, 'all' }) do
    local e = redis.call('HINCRBY', U, 'e:' .. who, int(entries))
    local b = redis.call('HINCRBY', U, 'b:' .. who, int(bytes))
    if who ~= 'all' and e == 0 and b == 0 then
      redis.call('HDEL', U, 'e:' .. who, 'b:' .. who)
    end
  end
end

-- Forgets an entry whose time is up (Redis may have dropped its value
-- already) and gives its room back: its cost was kept in C for this.
local function reclaim(tenant, k, m)
  local cost = tonumber(redis.call('HGET', C, m)) or 0
  redis.call('DEL', vkey(m))
  redis.call('ZREM', ikey(tenant), k)
  redis.call('ZREM', X, m)
  redis.call('HDEL', C, m)
  account(tenant, -1, -cost)
end

-- Reclaims up to `limit` expired entries, the oldest first.
local function sweep(limit)
  local due = redis.call('ZRANGEBYSCORE', X, '-inf', now, 'LIMIT', 0, limit)
  for _, m in ipairs(due) do
    local tenant, k = string.match(m, '^(%d+):(.*)$')
    reclaim(tenant, k, m)
  end
  return #due
end

-- The live value under the key and when it expires (nil: never); an
-- expired entry is reclaimed here.
local function live(k, m)
  local v = redis.call('GET', vkey(m))
  local at = tonumber(redis.call('ZSCORE', X, m))
  if at and (not v or at <= now) then
    reclaim(t, k, m)
    return nil, nil
  end
  if not v then return nil, nil end
  return v, at
end

local function is_live(m)
  local at = tonumber(redis.call('ZSCORE', X, m))
  return redis.call('EXISTS', vkey(m)) == 1 and not (at and at <= now)
end

-- Why writing `new` bytes in place of `old` (nil: a new key) would break
-- a bound: {'full', bound, in use, growth}; nil when it would not.
local function over(old, new)
  local te, tb = usage(t)
  local ce, cb = usage('all')
  if not old then
    if te >= L.tentries then return { 'full', 'max-entries-per-tenant', int(te), '0' } end
    if ce >= L.entries then return { 'full', 'max-entries', int(ce), '0' } end
  end
  local grow = new - (old or 0)
  if grow > 0 then
    if tb + grow > L.tbytes then return { 'full', 'max-bytes-per-tenant', int(tb), int(grow) } end
    if cb + grow > L.bytes then return { 'full', 'max-bytes', int(cb), int(grow) } end
  end
  return nil
end

-- Writes `value` under the key in place of a live entry of `old` bytes
-- (nil: none), expiring at `at` (nil: never), within the bounds.
local function put(k, m, old, value, at)
  local new = #k + #value
  local full = over(old, new)
  if full then
    -- Expired entries count until reclaimed: reclaim more, look again.
    if sweep(SWEEP_WHEN_FULL) == 0 then return full end
    full = over(old, new)
    if full then return full end
  end
  if at then
    -- Redis drops a key once its time is *past* the expiry (in ms); one
    -- ms early makes it invisible from second `at` on, as in redb.
    redis.call('SET', vkey(m), value, 'PXAT', int(at * 1000 - 1))
    redis.call('ZADD', X, int(at), m)
    redis.call('HSET', C, m, int(new))
  else
    redis.call('SET', vkey(m), value)
    redis.call('ZREM', X, m)
    redis.call('HDEL', C, m)
  end
  redis.call('ZADD', ikey(t), 0, k)
  if old then account(t, 0, new - old) else account(t, 1, new) end
  return nil
end

local m = t .. ':' .. key

if op == 'keys' then
  -- Live keys with the prefix, in byte order, at most ARGV[11]. Keys are
  -- UTF-8, which never holds byte 255, so '(prefix\255' ends the range.
  local min, max = '-', '+'
  if key ~= '' then min, max = '[' .. key, '(' .. key .. '\255' end
  local limit = tonumber(ARGV[11])
  local out, offset = {}, 0
  while #out < limit do
    local batch = redis.call('ZRANGEBYLEX', ikey(t), min, max, 'LIMIT', offset, limit)
    if #batch == 0 then break end
    for _, k in ipairs(batch) do
      if is_live(t .. ':' .. k) then
        out[#out + 1] = k
        if #out >= limit then break end
      end
    end
    offset = offset + #batch
  end
  return out
elseif op == 'expires' then
  local at = tonumber(redis.call('ZSCORE', X, m))
  if at and is_live(m) then return { int(at) } end
  return {}
elseif op == 'usage' then
  local e, b = usage(key)
  return { int(e), int(b) }
end

sweep(SWEEP)
if op == 'set' then
  local v = live(key, m)
  local at = nil
  if ARGV[11] ~= '' then at = now + tonumber(ARGV[11]) end
  return put(key, m, v and #key + #v, ARGV[12], at) or { 'ok' }
elseif op == 'delete' then
  local v = live(key, m)
  if not v then return { 'ok', '0' } end
  redis.call('DEL', vkey(m))
  redis.call('ZREM', ikey(t), key)
  redis.call('ZREM', X, m)
  redis.call('HDEL', C, m)
  account(t, -1, -(#key + #v))
  return { 'ok', '1' }
elseif op == 'increment' then
  -- Lua's numbers are doubles: the sum is Redis's own INCRBY (exact
  -- 64-bit, refuses overflow) on a scratch key, from the current value
  -- in canonical form (Rust's i64 parse also takes '+7' and '007').
  local v, at = live(key, m)
  local cur = '0'
  if v then
    local sign, digits = string.match(v, '^([+-]?)(%d+)$')
    if not digits then return { 'not-integer' } end
    digits = (string.gsub(digits, '^0+', ''))
    if digits == '' or sign == '+' then sign = '' end
    if digits == '' then digits = '0' end
    cur = sign .. digits
  end
  local scratch = P .. 'scratch'
  redis.call('SET', scratch, cur)
  local r = redis.pcall('INCRBY', scratch, ARGV[11])
  local new = redis.call('GET', scratch)
  redis.call('DEL', scratch)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow', 1, true) then return { 'overflow', cur } end
    return { 'not-integer' }
  end
  return put(key, m, v and #key + #v, new, at) or { 'ok', new }
elseif op == 'cas' then
  local v = live(key, m)
  local expected = nil
  if ARGV[11] == '1' then expected = ARGV[12] end
  if (v or nil) ~= expected then return { 'ok', '0' } end
  return put(key, m, v and #key + #v, ARGV[13], nil) or { 'ok', '1' }
end
return redis.error_reply('wasp store: unknown op ' .. op)
