-- ARGV: cid new_state now_ms [on_call]. Takes a contact out of the queue for good
-- (abandoned, cancelled). An agent holding its offer is freed without a missed offer.
-- A contact on a call is refused (ON_CALL) unless on_call is '1': a live caller who
-- hung up before being put through to the agent who accepted; that agent is freed.
-- Returns {previous_state, agent, contact_v, agent_v} or false when unknown.
local cid, new_state, now, on_call = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'v')
if not c[1] then return false end
local av = 0
if c[1] == 'offered' and c[2] ~= '' then
  av = agent_set(c[2], 'available', now)
elseif c[1] == 'on_call' then
  if not on_call then return redis.error_reply('ON_CALL') end
  local a = redis.call('HMGET', akey(c[2]), 'state', 'call')
  if a[1] == 'on_call' and a[2] == cid then av = agent_set(c[2], 'available', now) end
end
contact_unindex(cid)
redis.call('DEL', ckey(cid))
return {c[1], c[2], tonumber(c[3]) + 1, av}
