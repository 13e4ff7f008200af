-- ARGV: aid cid now_ms. The contact goes back to its place; the agent is free again,
-- at the back of the idle order so that another agent gets the next offer.
local aid, cid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not holds_offer(aid, cid) then return redis.error_reply('NO_OFFER') end
local cv = contact_requeue(cid)
return {cv, agent_set(aid, 'available', now, '', true)}
