-- ARGV: now_ms missed_limit. Expires offers (the contact returns to its place; the
-- agent is paused after missed_limit misses in a row) and ends timed wrap-ups.
-- Returns a flat list of records: 'expired', cid, aid, agent_state, contact_v, agent_v
-- and 'wrapped', aid, agent_v.
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for _, cid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'offers', '-inf', now, 'LIMIT', 0, 200)) do
  local aid = redis.call('HGET', ckey(cid), 'agent')
  local cv = contact_requeue(cid)
  local astate, av = 'available', 0
  if aid and aid ~= '' and redis.call('HGET', akey(aid), 'offer') == cid then
    local missed = redis.call('HINCRBY', akey(aid), 'missed', 1)
    if missed >= limit then
      astate = 'paused'
      av = agent_set(aid, 'paused', now, 'missed_offers')
      redis.call('HSET', akey(aid), 'missed', '0')
    else
      av = agent_set(aid, 'available', now, '', true)
    end
  end
  for _, x in ipairs({'expired', cid, aid or '', astate, cv, av}) do out[#out + 1] = x end
end
for _, aid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wrapups', '-inf', now, 'LIMIT', 0, 200)) do
  local av = agent_set(aid, 'available', now)
  for _, x in ipairs({'wrapped', aid, av}) do out[#out + 1] = x end
end
return out
