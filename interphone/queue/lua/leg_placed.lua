-- ARGV: aid cid. The agent's leg for contact cid is about to be placed: recorded first,
-- so that its end, however early it comes, finds it. From now until that end the agent
-- is never offered a contact. Refused unless the agent is on that call (NOT_ON_CALL),
-- and while a leg of theirs for another contact is live (OTHER_LEG): never two legs.
-- Returns the agent's version (0 when the leg was recorded already: a job run again).
local aid, cid = ARGV[1], ARGV[2]
local a = redis.call('HMGET', akey(aid), 'call', 'leg')
if a[1] ~= cid then return redis.error_reply('NOT_ON_CALL') end
if a[2] and a[2] ~= '' and a[2] ~= cid then return redis.error_reply('OTHER_LEG') end
if a[2] == cid then
  redis.call('HSET', akey(aid), 'leg_sid', '')  -- placed again: its CallSid is to come
  return 0
end
redis.call('HSET', akey(aid), 'leg', cid, 'leg_sid', '', 'bridged', '')
return bump(akey(aid))
