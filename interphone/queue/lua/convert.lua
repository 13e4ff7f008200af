-- ARGV: cid. A live caller waiting in line becomes a callback at the same place.
local cid = ARGV[1]
local c = redis.call('HMGET', ckey(cid), 'state', 'kind')
if not c[1] then return redis.error_reply('UNKNOWN') end
if c[1] ~= 'waiting' then return redis.error_reply('NOT_WAITING') end
redis.call('HSET', ckey(cid), 'kind', 'callback')
return bump(ckey(cid))
