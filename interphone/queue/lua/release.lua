-- ARGV: cid new_state now_ms [on_call]. Takes a contact out of the queue for good
-- (abandoned, cancelled). An agent holding its offer is freed without a missed offer.
-- A contact on a call is refused (ON_CALL) unless on_call is '1': a live caller who
-- hung up before being put through to the agent who accepted; that agent is freed
-- without an outcome ('gone' names the contact for their screen), at once when no leg
-- of theirs is live, else when it ends (leg_ended.lua).
-- Returns {previous_state, agent, contact_v, agent_v, agent_state, agent_state_before}
-- or false when unknown (the agent's states '' when the agent was not changed).
local cid, new_state, now, on_call = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'v')
if not c[1] then return false end
local av, astate, before = 0, '', ''
if c[1] == 'offered' and c[2] ~= '' then
  before = redis.call('HGET', akey(c[2]), 'state') or ''
  av, astate = agent_set(c[2], 'available', now), 'available'
elseif c[1] == 'on_call' then
  if not on_call then return redis.error_reply('ON_CALL') end
  local a = redis.call('HMGET', akey(c[2]), 'call', 'leg', 'state')
  if a[1] == cid then
    before = a[3]
    if a[2] == cid then
      redis.call('HSET', akey(c[2]), 'call', '', 'gone', cid)
      av, astate = bump(akey(c[2])), 'on_call'
    else
      av, astate = agent_set(c[2], 'available', now), 'available'
      redis.call('HSET', akey(c[2]), 'gone', cid)
    end
  end
end
contact_unindex(cid)
redis.call('DEL', ckey(cid))
return {c[1], c[2], tonumber(c[3]) + 1, av, astate, before}
