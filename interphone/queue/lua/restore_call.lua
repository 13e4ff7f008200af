-- ARGV: cid aid now_ms. Used by ``queue rebuild`` only: the contact is on a call with
-- agent aid (as SQL says), so it leaves the line and the agent is marked on that call.
local cid, aid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local site = redis.call('HGET', ckey(cid), 'site')
if not site then return redis.error_reply('UNKNOWN') end
contact_unindex(cid)
redis.call('HSET', ckey(cid), 'state', 'on_call', 'agent', aid, 'deadline', '')
agent_leave_pool(aid)
redis.call('HSET', akey(aid), 'state', 'on_call', 'since', fmt(now), 'offer', '', 'call', cid)
redis.call('SADD', skey(site, 'staffed'), aid)
return {bump(ckey(cid)), bump(akey(aid))}
