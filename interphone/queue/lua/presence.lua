-- ARGV: aid site langs state reason now_ms
-- Agent presence change requested by the agent or a supervisor. An offer in hand
-- goes back to the queue at its place. Returns {agent_v, returned_cid, contact_v,
-- previous_state}; previous_state is '' for an agent Redis did not know, and equals the
-- state asked when nothing changed (the same state again, other than a new pause).
-- Refused while a call is in progress or a leg of the agent is live (ON_CALL), and after
-- a call whose outcome is not given yet (OUTCOME_DUE).
local aid, site, langs, state = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local reason, now = ARGV[5], tonumber(ARGV[6])
local a = redis.call('HMGET', akey(aid), 'state', 'offer', 'call', 'leg')
if a[1] == 'on_call' or (a[4] and a[4] ~= '') then return redis.error_reply('ON_CALL') end
if a[1] == 'wrap_up' and a[3] and a[3] ~= '' then return redis.error_reply('OUTCOME_DUE') end
if a[1] == state and state ~= 'paused' then
  return {tonumber(redis.call('HGET', akey(aid), 'v')), '', 0, a[1]}
end
local returned, cv = '', 0
if a[1] == 'offered' and a[2] and a[2] ~= '' then
  returned = a[2]
  cv = contact_requeue(a[2])
end
agent_leave_pool(aid)
redis.call('HSET', akey(aid), 'site', site, 'langs', langs)
if not a[1] then redis.call('HSET', akey(aid), 'missed', '0') end
redis.call('SADD', P .. 'sites', site)
return {agent_set(aid, state, now, reason), returned, cv, a[1] or ''}
