-- ARGV: aid cid call_sid now_ms wrap_until_ms. The agent's leg for contact cid has
-- ended (its final status, or its leaving the conference). Once only: a repeated,
-- late or foreign end (another CallSid) changes nothing.
-- Then: the outcome given during the call -> the wrap-up starts now; no outcome yet ->
-- the agent stays out of the pool ('wrap_up', reason 'outcome_due', no timer) until
-- finish.lua; the contact gone before the bridge -> free without an outcome.
-- Returns {what, agent_v, agent_state_before}: what is 'outcome_due', 'wrap_up' or
-- 'available' (the agent's move), 'kept' (the leg cleared, the state unchanged), or ''
-- when nothing changed.
local aid, cid, sid = ARGV[1], ARGV[2], ARGV[3]
local now, wrap_until = tonumber(ARGV[4]), tonumber(ARGV[5])
local a = redis.call('HMGET', akey(aid), 'state', 'leg', 'leg_sid', 'call', 'done')
if a[2] ~= cid then return {'', 0, ''} end
if sid ~= '' and a[3] and a[3] ~= '' and a[3] ~= sid then return {'', 0, ''} end
redis.call('HSET', akey(aid), 'leg', '', 'leg_sid', '', 'bridged', '')
if a[4] == cid then
  redis.call('HSET', akey(aid), 'state', 'wrap_up', 'since', fmt(now), 'reason', 'outcome_due')
  return {'outcome_due', bump(akey(aid)), a[1]}
end
if a[5] == cid then
  local after = agent_after_call(aid, now, wrap_until)
  return {after[1], after[2], a[1]}
end
if a[1] == 'on_call' and (not a[4] or a[4] == '') then
  return {'available', agent_set(aid, 'available', now), a[1]}
end
return {'kept', bump(akey(aid)), a[1]}
