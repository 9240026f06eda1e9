"""Lua scripts of the Redis state stores: ``policies.admission`` and ``policies.breaker``, ported.

Each store operation is one script, so it is atomic across every process sharing the server
and costs one round trip. The scripts follow the Python policies line by line (the tests run
both on the same inputs and compare); keep them in step.

Conventions: ``ARGV[1]`` is the time, ``""`` meaning the server's clock (``TIME``), which all
workers then share. Numbers leave a script as ``%.17g`` strings (a Lua number would be
truncated to an integer reply) and are passed to ``redis.call`` as numbers (Redis formats those
exactly). ``redis.replicate_commands()`` lets Redis < 5 write after reading ``TIME``.

Rate-limit keys (one pair per limiter key, same hash tag): ``log``, a sorted set of admitted
calls scored by their time, member ``<seq, 15 digits>:<requests>:<tokens>`` (the padded
sequence keeps equal scores in admission order); ``state``, a hash with the sums ``r`` / ``t``
of the entries still in the log, ``last`` (FIFO floor), ``paused`` and ``seq``. Keys expire
once nothing in them can matter any more.
"""

from __future__ import annotations

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end
local function units(member)
  local _, _, r, t = string.find(member, '^%d+:(%d+):(%d+)$')
  return tonumber(r), tonumber(t)
end
"""

#: KEYS: log, state. ARGV: now, requests, tokens, max_requests, max_tokens ("" = none),
#: period_s, max_wait_s ("" = none), burst_s ("" = no pacing).
#: Returns {1, wait, member, at} or {0, wait, reason}
#: ({0, wait, "server_pause", asked_s} while a capped over-long server pause is in force).
RESERVE = _PRELUDE + """
local now = clock(ARGV[1])
local req, tok = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_r, max_t = tonumber(ARGV[4]), tonumber(ARGV[5])
local period, max_wait = tonumber(ARGV[6]), tonumber(ARGV[7])
if (max_r and req > max_r) or (max_t and tok > max_t) then return {0, 'inf', 'too_large'} end
local st = redis.call('HMGET', KEYS[2], 'r', 't', 'last', 'paused', 'refuse', 'asked', 'tat_r')
local sum_r, sum_t = tonumber(st[1]) or 0, tonumber(st[2]) or 0
local last, paused = tonumber(st[3]), tonumber(st[4])
local refuse = tonumber(st[5])
if refuse and refuse > now then return {0, fmt(refuse - now), 'server_pause', st[6]} end
local at = now
if last and last > at then at = last end
if paused and paused > at then at = paused end
local burst_s = tonumber(ARGV[8])
local tat_r = tonumber(st[7]) or -math.huge
local function burst(limit)
  local b = limit * burst_s / period
  if b > limit then b = limit end
  if b < 1 then b = 1 end
  return b
end
if burst_s then  -- pacing (GCRA): no earlier than the theoretical arrival time allows
  if max_r and req > 0 then
    local b = burst(max_r)
    local e = tat_r + (math.min(req, b) - b) * (period / max_r)
    if e > at then at = e end
  end
end
local function fits()
  return (not max_r or sum_r + req <= max_r) and (not max_t or sum_t + tok <= max_t)
end
local passed = 0
if not fits() then
  local start, done = 0, false
  while not done do  -- oldest first: find when enough entries have left the window
    local batch = redis.call('ZRANGE', KEYS[1], start, start + 63, 'WITHSCORES')
    if #batch == 0 then break end
    for j = 1, #batch, 2 do
      local entry_at = tonumber(batch[j + 1])
      if entry_at > at - period then
        if fits() then done = true; break end
        at = entry_at + period
      end
      local r, t = units(batch[j])
      sum_r, sum_t, passed = sum_r - r, sum_t - t, passed + 1
    end
    start = start + 64
  end
else  -- fits with every entry still counted: only drop the expired ones
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', at - period)) do
    local r, t = units(member)
    sum_r, sum_t, passed = sum_r - r, sum_t - t, passed + 1
  end
end
local wait = at - now
if max_wait and wait > max_wait then return {0, fmt(wait), 'deadline'} end
if passed > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, passed - 1) end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local member = string.format('%015d:%d:%d', seq, req, tok)
redis.call('ZADD', KEYS[1], at, member)
redis.call('HSET', KEYS[2], 'r', sum_r + req, 't', sum_t + tok, 'last', at)
if burst_s then
  if max_r then redis.call('HSET', KEYS[2], 'tat_r', math.max(tat_r, at) + req * period / max_r) end
end
local horizon = at
if paused and paused > horizon then horizon = paused end
local ttl = math.ceil((horizon - now + period) * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {1, fmt(wait), member, fmt(at)}
"""

#: KEYS: log, state. ARGV: member, at, requests, tokens. Returns the new member, or "" when
#: the entry already left the log (then only the ticket changes).
RECONCILE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return '' end
local _, _, seq, r, t = string.find(ARGV[1], '^(%d+):(%d+):(%d+)$')
local req, tok = tonumber(ARGV[3]), tonumber(ARGV[4])
local member = seq .. ':' .. string.format('%d:%d', req, tok)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], score, member)
redis.call('HINCRBY', KEYS[2], 'r', req - tonumber(r))
redis.call('HINCRBY', KEYS[2], 't', tok - tonumber(t))
return member
"""

#: KEYS: state. ARGV: now, seconds (already capped by the stage), asked_s ("" = the ask was
#: within the cap; else reservations are refused until the pause ends). Returns the pause's end.
#: The key's TTL follows the capped pause, so a huge ask never outlives the cap.
PAUSE = _PRELUDE + """
local now = clock(ARGV[1])
local till = now + tonumber(ARGV[2])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused'))
if not paused or till > paused then
  redis.call('HSET', KEYS[1], 'paused', till)
  paused = till
end
if ARGV[3] ~= '' then
  local refuse = tonumber(redis.call('HGET', KEYS[1], 'refuse'))
  if not refuse or till > refuse then redis.call('HSET', KEYS[1], 'refuse', till, 'asked', ARGV[3]) end
end
local ttl = math.ceil((till - now) * 1000) + 1000
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return fmt(paused)
"""

#: KEYS: state. ARGV: now, seconds. Ends the pause now unless it ends more than ``seconds``
#: from now (a longer ask extended it). Returns 1 when a pause was ended, else 0.
RESUME = _PRELUDE + """
local now = clock(ARGV[1])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused'))
if paused and paused > now and paused <= now + tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'paused', fmt(now))
  return 1
end
return 0
"""

#: KEYS: state. ARGV: now. Returns the seconds left in the pause ("0" when not paused).
PAUSED_FOR = _PRELUDE + """
local now = clock(ARGV[1])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused'))
if not paused or paused <= now then return '0' end
return fmt(paused - now)
"""

#: KEYS: counters (a hash, fields ``r<slot>`` / ``a<slot>``). ARGV: now, bucket width, buckets,
#: accepted ("1", "0", or "" to only read). Returns {requests, accepts} in the window. The
#: retry stage's ``AdaptiveThrottle`` (``policies.budget``), ported.
THROTTLE = _PRELUDE + """
local now = clock(ARGV[1])
local width, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local slot = math.floor(now / width)
if ARGV[4] ~= '' then
  redis.call('HINCRBY', KEYS[1], 'r' .. slot, 1)
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'a' .. slot, 1) end
  redis.call('PEXPIRE', KEYS[1], math.ceil(width * n * 1000) + 1000)
end
local all = redis.call('HGETALL', KEYS[1])
local requests, accepts = 0, 0
for j = 1, #all, 2 do
  local kind, at = string.sub(all[j], 1, 1), tonumber(string.sub(all[j], 2))
  if at and at > slot - n then
    if kind == 'r' then requests = requests + tonumber(all[j + 1])
    else accepts = accepts + tonumber(all[j + 1]) end
  else
    redis.call('HDEL', KEYS[1], all[j])
  end
end
return {requests, accepts}
"""

#: KEYS: state. ARGV: now. Returns {seconds left in the pause, asked_s or ""}.
PAUSE_INFO = _PRELUDE + """
local now = clock(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'paused', 'refuse', 'asked')
local paused, refuse = tonumber(h[1]), tonumber(h[2])
local left = '0'
if paused and paused > now then left = fmt(paused - now) end
if refuse and refuse > now then return {left, h[3]} end
return {left, ''}
"""

_BREAKER = _PRELUDE + """
local function move(state, gen, now, ttl)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', state, 'gen', gen + 1, 'probe_until', 0, 'failures', 0,
             'opened_at', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return gen + 1
end
local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'opened_at', 'probe_until', 'failures')
local state, gen = h[1] or 'closed', tonumber(h[2]) or 0
local opened_at, probe_until = tonumber(h[3]) or 0, tonumber(h[4]) or 0
local failures = tonumber(h[5]) or 0
"""

#: KEYS: state, outcomes. ARGV: now, open_s, probe_lease_s, ttl_ms.
#: Returns {allowed, probe, generation, retry_after ("" = none), state, changed}.
ACQUIRE = _BREAKER + """
local now = clock(ARGV[1])
if state == 'closed' then return {1, 0, gen, '', 'closed', 0} end
local changed = 0
if state == 'open' then
  local reopen_at = opened_at + tonumber(ARGV[2])
  if now < reopen_at then return {0, 0, gen, fmt(reopen_at - now), 'open', 0} end
  gen = move('half_open', gen, now, tonumber(ARGV[4]))
  probe_until, changed = 0, 1
end
-- the probe is a lease: if its holder died, another caller probes after probe_lease_s
if probe_until > now then return {0, 0, gen, '', 'half_open', changed} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[3]))
return {1, 1, gen, '', 'half_open', changed}
"""

#: KEYS: state, outcomes. ARGV: now, allowed, probe, generation, failed ("1", "0", "" = none),
#: failure_rate, min_calls, window_calls, window_s, ttl_ms. Returns the new state or "".
RECORD = _BREAKER + """
local now = clock(ARGV[1])
local ttl = tonumber(ARGV[10])
if ARGV[2] ~= '1' or tonumber(ARGV[4]) ~= gen then return '' end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'probe_until', 0)
  if ARGV[5] == '' then return '' end
  local new = (ARGV[5] == '1') and 'open' or 'closed'
  move(new, gen, now, ttl)
  return new
end
if state ~= 'closed' or ARGV[5] == '' then return '' end
local failed = tonumber(ARGV[5])
redis.call('RPUSH', KEYS[2], fmt(now) .. ':' .. failed)
failures = failures + failed
local horizon, window_calls = now - tonumber(ARGV[9]), tonumber(ARGV[8])
local total = redis.call('LLEN', KEYS[2])
while total > 0 do
  local first = redis.call('LINDEX', KEYS[2], 0)
  local _, _, at, f = string.find(first, '^(.+):(%d)$')
  if total <= window_calls and tonumber(at) > horizon then break end
  redis.call('LPOP', KEYS[2])
  failures, total = failures - tonumber(f), total - 1
end
if total >= tonumber(ARGV[7]) and failures >= tonumber(ARGV[6]) * total then
  move('open', gen, now, ttl)
  return 'open'
end
redis.call('HSET', KEYS[1], 'failures', failures, 'gen', gen)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return ''
"""

#: KEYS: state, outcomes. Returns the state.
STATE = _BREAKER + """
return state
"""
