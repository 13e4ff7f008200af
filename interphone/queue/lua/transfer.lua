-- ARGV: aid cid bid now_ms wrap_until_ms. Agent aid, on the call with contact cid, hands
-- it to agent bid of the same site (a cold or warm transfer): bid must be available
-- with no live leg (AGENT_NOT_FREE), and is reserved at once (on the call, out of the
-- pool: never offered anything else meanwhile). aid's outcome counts as given: their
-- wrap-up starts when their leg ends (at once when none is live).
-- Returns {contact_v, agent_v, agent_state, agent_state_before, receiver_v}.
local aid, cid, bid = ARGV[1], ARGV[2], ARGV[3]
local now, wrap_until = tonumber(ARGV[4]), tonumber(ARGV[5])
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'site')
if c[1] ~= 'on_call' or c[2] ~= aid then return redis.error_reply('NOT_ON_CALL') end
local b = redis.call('HMGET', akey(bid), 'state', 'leg', 'site')
if bid == aid or b[1] ~= 'available' or (b[2] and b[2] ~= '') or b[3] ~= c[3] then
  return redis.error_reply('AGENT_NOT_FREE')
end
agent_leave_pool(bid)
redis.call('HSET', akey(bid), 'state', 'on_call', 'since', fmt(now), 'offer', '',
  'call', cid, 'done', '', 'gone', '', 'missed', '0')
local bv = bump(akey(bid))
redis.call('HSET', ckey(cid), 'agent', bid)
local cv = bump(ckey(cid))
local before = redis.call('HGET', akey(aid), 'state') or ''
local av, astate
if redis.call('HGET', akey(aid), 'leg') == cid then
  redis.call('HSET', akey(aid), 'call', '', 'done', cid)
  av, astate = bump(akey(aid)), 'on_call'
else
  local after = agent_after_call(aid, now, wrap_until)
  astate, av = after[1], after[2]
end
return {cv, av, astate, before, bv}
