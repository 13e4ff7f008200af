-- ARGV: cid cls score. Changes a contact's class (e.g. urgent set by an agent),
-- keeping its original arrival time. Returns contact_v or false.
local cid, cls, score = ARGV[1], ARGV[2], ARGV[3]
local c = redis.call('HMGET', ckey(cid), 'state', 'site')
if not c[1] then return false end
redis.call('HSET', ckey(cid), 'cls', cls, 'score', score)
if redis.call('ZSCORE', skey(c[2], 'waiting'), cid) then
  redis.call('ZADD', skey(c[2], 'waiting'), score, cid)
end
return bump(ckey(cid))
