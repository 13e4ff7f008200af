-- ARGV: aid cid now_ms wrap_until_ms result retry_at_ms max_attempts
-- Ends the call of agent aid with contact cid. result 'completed' closes the contact;
-- 'retry' (callback not answered) puts it back at its place, not before retry_at_ms,
-- or marks it 'unreachable' after max_attempts. The agent goes to wrap-up.
-- Returns {contact_state, attempts, contact_v, agent_v, agent_state, retry_at_ms}.
local aid, cid, now, wrap_until = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local result, retry_at, max_attempts = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'site', 'attempts')
if c[1] ~= 'on_call' or c[2] ~= aid then return redis.error_reply('NOT_ON_CALL') end
local state, attempts, cv = 'completed', tonumber(c[4]), 0
if result == 'retry' then
  attempts = attempts + 1
  if attempts >= max_attempts then
    state = 'unreachable'
  else
    state = 'waiting'
    redis.call('HSET', ckey(cid), 'state', 'waiting', 'agent', '', 'attempts', attempts,
      'not_before', fmt(retry_at))
    redis.call('ZADD', skey(c[3], 'delayed'), retry_at, cid)
    cv = bump(ckey(cid))
  end
end
if state ~= 'waiting' then
  cv = bump(ckey(cid))
  redis.call('DEL', ckey(cid))
  if state == 'completed' then
    redis.call('ZADD', skey(c[3], 'done'), now, cid)
    redis.call('ZREMRANGEBYSCORE', skey(c[3], 'done'), '-inf', now - 3600000)
  end
end
local av, astate
if wrap_until > now then
  av = agent_set(aid, 'wrap_up', now)
  redis.call('ZADD', P .. 'wrapups', wrap_until, aid)
  astate = 'wrap_up'
else
  av = agent_set(aid, 'available', now)
  astate = 'available'
end
return {state, attempts, cv, av, astate, fmt(retry_at)}
