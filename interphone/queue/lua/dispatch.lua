-- ARGV: site now_ms relax_ms scan promote_before_ms offer_deadline_ms
-- Offers the first contact (in queue order) that a free agent can serve, to the
-- longest-idle agent who speaks its language; a contact that has waited relax_ms
-- may go to any free agent. Returns {cid, aid, contact_v, agent_v, promoted...} or false.
local site, now, relax = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local scan, promote_before, deadline = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local waiting, delayed = skey(site, 'waiting'), skey(site, 'delayed')
local NORMAL = 10000000000000

-- 1. callbacks whose retry delay has passed come back at their own place
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)
for _, cid in ipairs(due) do
  redis.call('ZREM', delayed, cid)
  redis.call('ZADD', waiting, redis.call('HGET', ckey(cid), 'score'), cid)
end

-- 2. normal contacts that arrived before promote_before join the urgent class,
--    ordered among it by their original arrival time
local promoted = {}
local old = redis.call('ZRANGEBYSCORE', waiting, NORMAL, '(' .. fmt(NORMAL + promote_before),
  'LIMIT', 0, 100)
for _, cid in ipairs(old) do
  local arrived = redis.call('HGET', ckey(cid), 'arrived')
  redis.call('HSET', ckey(cid), 'cls', '0', 'score', arrived)
  redis.call('ZADD', waiting, arrived, cid)
  promoted[#promoted + 1] = cid
end

-- 3. match
if redis.call('ZCARD', skey(site, 'avail')) == 0 then return {'', '', 0, 0, unpack(promoted)} end
local head = redis.call('ZRANGE', waiting, 0, scan - 1)
for _, cid in ipairs(head) do
  local c = redis.call('HMGET', ckey(cid), 'lang', 'arrived')
  local pick = false
  if c[1] and c[1] ~= '' then
    pick = redis.call('ZRANGE', skey(site, 'avail:' .. c[1]), 0, 0)[1]
  end
  if not pick and (c[1] == '' or now - tonumber(c[2]) >= relax) then
    pick = redis.call('ZRANGE', skey(site, 'avail'), 0, 0)[1]
  end
  if pick then
    local v = make_offer(site, cid, pick, now, deadline)
    return {cid, pick, v[1], v[2], unpack(promoted)}
  end
end
return {'', '', 0, 0, unpack(promoted)}
