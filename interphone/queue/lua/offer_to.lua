-- ARGV: cid aid now_ms offer_deadline_ms
-- A supervisor's reassignment: offers one waiting contact to one chosen free agent of its
-- site, whatever the line order and the languages (the supervisor knows why). The offer
-- then runs as any other: countdown, accept, decline or expiry back to its place.
-- Returns {contact_v, agent_v} or an error reply naming the reason.
local cid, aid, now, deadline = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local c = redis.call('HMGET', ckey(cid), 'site', 'state')
if not c[1] then return redis.error_reply('UNKNOWN') end
if c[2] ~= 'waiting' or not redis.call('ZSCORE', skey(c[1], 'waiting'), cid) then
  return redis.error_reply('NOT_WAITING')
end
local a = redis.call('HMGET', akey(aid), 'site', 'state')
if a[1] ~= c[1] then return redis.error_reply('OTHER_SITE') end
if a[2] ~= 'available' then return redis.error_reply('AGENT_NOT_FREE') end
return make_offer(c[1], cid, aid, now, deadline)
