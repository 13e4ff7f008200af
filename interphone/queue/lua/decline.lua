-- ARGV: aid cid now_ms. The contact goes back to its place; the agent is free again,
-- at the back of the idle order so that another agent gets the next offer.
local aid, cid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local a = redis.call('HMGET', akey(aid), 'state', 'offer')
local c = redis.call('HMGET', ckey(cid), 'state', 'agent')
if a[1] ~= 'offered' or a[2] ~= cid or c[1] ~= 'offered' or c[2] ~= aid then
  return redis.error_reply('NO_OFFER')
end
local cv = contact_requeue(cid)
return {cv, agent_set(aid, 'available', now, '', true)}
