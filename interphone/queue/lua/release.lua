-- ARGV: cid new_state now_ms. Takes a contact out of the queue for good
-- (abandoned, cancelled). An agent holding its offer is freed without a missed offer.
-- Returns {previous_state, agent, contact_v, agent_v} or false when unknown.
local cid, new_state, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'v')
if not c[1] then return false end
local av = 0
if c[1] == 'offered' and c[2] ~= '' then
  av = agent_set(c[2], 'available', now)
elseif c[1] == 'on_call' then
  return redis.error_reply('ON_CALL')
end
contact_unindex(cid)
redis.call('DEL', ckey(cid))
return {c[1], c[2], tonumber(c[3]) + 1, av}
