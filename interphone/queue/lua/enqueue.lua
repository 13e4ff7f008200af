-- ARGV: cid site kind lang cls arrived_ms score not_before_ms attempts now_ms
-- Returns {'new'|'exists', state, version, free agents at the site}. Idempotent: a
-- contact already known is left alone.
local cid, site, kind, lang = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cls, arrived, score = ARGV[5], ARGV[6], ARGV[7]
local not_before, attempts, now = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local existing = redis.call('HGET', ckey(cid), 'state')
local function free() return redis.call('ZCARD', skey(site, 'avail')) end
if existing then return {'exists', existing, 0, free()} end
redis.call('HSET', ckey(cid), 'site', site, 'kind', kind, 'lang', lang, 'cls', cls,
  'arrived', arrived, 'score', score, 'not_before', fmt(not_before), 'attempts', attempts,
  'state', 'waiting', 'agent', '', 'deadline', '')
redis.call('SADD', P .. 'sites', site)
if not_before > now then
  redis.call('ZADD', skey(site, 'delayed'), not_before, cid)
else
  redis.call('ZADD', skey(site, 'waiting'), score, cid)
end
return {'new', 'waiting', bump(ckey(cid)), free()}
