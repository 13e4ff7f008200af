-- ARGV: aid cid now_ms. Returns {contact_v, agent_v} or an error reply naming the reason.
local aid, cid, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
if not holds_offer(aid, cid) then return redis.error_reply('NO_OFFER') end
redis.call('ZREM', P .. 'offers', cid)
redis.call('HSET', ckey(cid), 'state', 'on_call', 'deadline', '')
local cv = bump(ckey(cid))
-- the misses in a row end here, unless the agent's leg goes unanswered (leg_missed.lua)
local missed = redis.call('HGET', akey(aid), 'missed') or '0'
redis.call('HSET', akey(aid), 'state', 'on_call', 'since', fmt(now), 'missed', '0',
  'missed_before', missed, 'offer', '', 'call', cid)
return {cv, bump(akey(aid))}
