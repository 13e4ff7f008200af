-- ARGV: aid cid call_sid. The agent's leg for contact cid was placed: its CallSid is
-- known from now on, so the end of another leg (an earlier one placed again by the
-- recovery) is refused by leg_ended.lua. Returns 1, or 0 when nothing changed (the leg
-- has ended already, or its CallSid was known).
local aid, cid, sid = ARGV[1], ARGV[2], ARGV[3]
local a = redis.call('HMGET', akey(aid), 'leg', 'leg_sid')
if a[1] ~= cid or (a[2] and a[2] ~= '') then return 0 end
redis.call('HSET', akey(aid), 'leg_sid', sid)
return 1
