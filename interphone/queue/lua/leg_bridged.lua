-- ARGV: aid cid call_sid. The agent's leg for contact cid answered and is put through
-- (its CallSid is known from now on). Returns the agent's version, 0 when nothing
-- changed (a repeated or late webhook, a leg that has ended, another participant).
local aid, cid, sid = ARGV[1], ARGV[2], ARGV[3]
local a = redis.call('HMGET', akey(aid), 'leg', 'bridged', 'leg_sid')
if a[1] ~= cid or a[2] == cid then return 0 end
if a[3] and a[3] ~= '' and a[3] ~= sid then return 0 end
redis.call('HSET', akey(aid), 'bridged', cid, 'leg_sid', sid)
return bump(akey(aid))
