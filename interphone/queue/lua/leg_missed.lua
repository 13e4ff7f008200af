-- ARGV: aid cid call_sid now_ms missed_limit. The agent's leg for contact cid ended
-- unanswered (no answer, busy, failed) while the contact was still on that agent's call:
-- as for an offer that timed out, the contact goes back to its place (same score), the
-- agent is free again at the back of the idle order, or paused after missed_limit misses
-- in a row, and the leg is cleared. 'missed_legs' counts these in the contact's hash:
-- each accept of the contact is a new bridge (interphone.voice.bridge).
-- Nothing changes (returns {0, 0, '', ''}) for another CallSid than the leg's, or when
-- the contact or the agent has moved on (the caller gone, the outcome given).
-- Returns {contact_v, agent_v, agent_state, agent_state_before}.
local aid, cid, sid = ARGV[1], ARGV[2], ARGV[3]
local now, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local a = redis.call('HMGET', akey(aid), 'state', 'leg', 'leg_sid', 'call')
local c = redis.call('HMGET', ckey(cid), 'state', 'agent')
if a[2] ~= cid or a[4] ~= cid or c[1] ~= 'on_call' or c[2] ~= aid then
  return {0, 0, '', ''}
end
if sid ~= '' and a[3] and a[3] ~= '' and a[3] ~= sid then return {0, 0, '', ''} end
redis.call('HSET', akey(aid), 'leg', '', 'leg_sid', '', 'bridged', '')
redis.call('HINCRBY', ckey(cid), 'missed_legs', 1)
local cv = contact_requeue(cid)
-- one more miss in a row: those before the accept (accept.lua) and this one
local missed = tonumber(redis.call('HGET', akey(aid), 'missed_before') or '0') + 1
redis.call('HSET', akey(aid), 'missed', missed)
local state, av = 'available', 0
if missed >= limit then
  state = 'paused'
  av = agent_set(aid, 'paused', now, 'missed_offers')
  redis.call('HSET', akey(aid), 'missed', '0')
else
  av = agent_set(aid, 'available', now, '', true)
end
return {cv, av, state, a[1]}
