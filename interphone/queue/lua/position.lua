-- ARGV: cid, and optionally since (ms). Returns {state, position (1-based, 0 if not
-- waiting), site, kind, not_before, agent}; with ``since``, for a contact in line, also
-- the site's staffed agents and the calls completed since then (a wait estimate's two
-- figures, in the same round trip).
-- A contact held back by a retry delay reports the place it will take when it returns.
local cid = ARGV[1]
local c = redis.call('HMGET', ckey(cid), 'state', 'site', 'score', 'kind', 'not_before', 'agent')
if not c[1] then return false end
if c[1] ~= 'waiting' then return {c[1], 0, c[2], c[4], c[5], c[6]} end
local rank = redis.call('ZRANK', skey(c[2], 'waiting'), cid)
if not rank then
  rank = redis.call('ZCOUNT', skey(c[2], 'waiting'), '-inf', '(' .. c[3])
end
local out = {c[1], rank + 1, c[2], c[4], c[5], c[6]}
if ARGV[2] and ARGV[2] ~= '' then
  out[7] = redis.call('SCARD', skey(c[2], 'staffed'))
  out[8] = redis.call('ZCOUNT', skey(c[2], 'done'), ARGV[2], '+inf')
end
return out
