-- ARGV: aid cid now_ms wrap_until_ms result retry_at_ms max_attempts
-- Ends the call of agent aid with contact cid. result 'completed' closes the contact;
-- 'retry' (callback not answered) puts it back at its place, not before retry_at_ms,
-- or marks it 'unreachable' after max_attempts; 'requeue' (the agent hands the caller
-- back) puts it back at its own place at once, its attempts unchanged. The agent goes
-- to wrap-up, or stays on
-- the call while their leg is live (the wrap-up then starts when it ends).
-- Returns {contact_state, attempts, contact_v, agent_v, agent_state, retry_at_ms,
-- agent_state_before}.
local aid, cid, now, wrap_until = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local result, retry_at, max_attempts = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'site', 'attempts')
if c[1] ~= 'on_call' or c[2] ~= aid then return redis.error_reply('NOT_ON_CALL') end
local state, attempts, cv = 'completed', tonumber(c[4]), 0
if result == 'requeue' then
  state = 'waiting'
  -- counted: each bridge of the contact (its jobs' ids) is told from the one before
  redis.call('HINCRBY', ckey(cid), 'handbacks', 1)
  cv = contact_requeue(cid)
elseif result == 'retry' then
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
local before = redis.call('HGET', akey(aid), 'state') or ''
-- the agent's leg still live: the outcome is kept, the agent stays on the call
local after = agent_done_with(aid, cid, now, wrap_until)
local astate, av = after[1], after[2]
return {state, attempts, cv, av, astate, fmt(retry_at), before}
