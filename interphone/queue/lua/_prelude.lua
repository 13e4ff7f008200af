-- Shared helpers, prepended to every script by interphone.queue.scripts.
-- Keys are computed here from ids and the prefix: Interphone runs on one Redis primary (with Sentinel
-- for fail-over), not on Redis Cluster. Times are milliseconds passed in ARGV, never
-- Redis TIME, so that a virtual clock can drive the same scripts.
local P = KEYS[1]  -- key prefix, 'ip:' in production
local function fmt(n) return string.format('%.0f', n) end
local function ckey(cid) return P .. 'contact:' .. cid end
local function akey(aid) return P .. 'agent:' .. aid end
local function skey(site, name) return P .. 'site:' .. site .. ':' .. name end
local function split(s)
  local t = {}
  if s and s ~= '' then
    for w in string.gmatch(s, '[^,]+') do t[#t + 1] = w end
  end
  return t
end
local function bump(key)
  return redis.call('HINCRBY', key, 'v', 1)
end
local function agent_leave_pool(aid)
  local a = redis.call('HMGET', akey(aid), 'site', 'langs')
  if not a[1] then return end
  redis.call('ZREM', skey(a[1], 'avail'), aid)
  for _, l in ipairs(split(a[2])) do redis.call('ZREM', skey(a[1], 'avail:' .. l), aid) end
  redis.call('ZREM', P .. 'wrapups', aid)
end
-- back_of_line: the agent joins the idle order behind every free agent (after a decline
-- or a missed offer), so that the next offer goes to somebody else.
-- The agent's live leg ('leg', 'leg_sid', 'bridged') is left alone: only its end clears it.
local function agent_set(aid, state, now, reason, back_of_line)
  agent_leave_pool(aid)
  redis.call('HSET', akey(aid), 'state', state, 'since', fmt(now), 'offer', '', 'call', '',
    'done', '', 'reason', reason or '')
  local a = redis.call('HMGET', akey(aid), 'site', 'langs')
  if state == 'offline' or state == 'paused' then
    redis.call('SREM', skey(a[1], 'staffed'), aid)
  else
    redis.call('SADD', skey(a[1], 'staffed'), aid)
  end
  if state == 'available' then
    local idle = now
    if back_of_line then
      local last = redis.call('ZRANGE', skey(a[1], 'avail'), -1, -1, 'WITHSCORES')
      if last[2] and tonumber(last[2]) >= idle then idle = tonumber(last[2]) + 1 end
    end
    redis.call('ZADD', skey(a[1], 'avail'), idle, aid)
    for _, l in ipairs(split(a[2])) do redis.call('ZADD', skey(a[1], 'avail:' .. l), idle, aid) end
  end
  return bump(akey(aid))
end
-- Offer a waiting contact to a free agent until the deadline. Returns {contact_v, agent_v}.
local function make_offer(site, cid, aid, now, deadline)
  redis.call('ZREM', skey(site, 'waiting'), cid)
  redis.call('ZADD', P .. 'offers', deadline, cid)
  redis.call('HSET', ckey(cid), 'state', 'offered', 'agent', aid, 'deadline', fmt(deadline))
  local cv = bump(ckey(cid))
  agent_leave_pool(aid)
  redis.call('HSET', akey(aid), 'state', 'offered', 'since', fmt(now), 'offer', cid, 'gone', '')
  return {cv, bump(akey(aid))}
end
-- Put a contact back at its own place: same score, so the same position as before.
local function contact_requeue(cid)
  local c = redis.call('HMGET', ckey(cid), 'site', 'score', 'not_before')
  redis.call('ZREM', P .. 'offers', cid)
  redis.call('HSET', ckey(cid), 'state', 'waiting', 'agent', '', 'deadline', '')
  redis.call('ZADD', skey(c[1], 'waiting'), c[2], cid)
  return bump(ckey(cid))
end
-- Take a contact out of every index (it keeps its hash until the caller deletes it).
local function contact_unindex(cid)
  local site = redis.call('HGET', ckey(cid), 'site')
  redis.call('ZREM', skey(site, 'waiting'), cid)
  redis.call('ZREM', skey(site, 'delayed'), cid)
  redis.call('ZREM', P .. 'offers', cid)
end
-- The agent's wrap-up after a call whose leg has ended and whose outcome is given:
-- timed until wrap_until, or straight back to the pool. Returns {agent_state, agent_v}.
local function agent_after_call(aid, now, wrap_until)
  if wrap_until > now then
    local av = agent_set(aid, 'wrap_up', now)
    redis.call('ZADD', P .. 'wrapups', wrap_until, aid)
    return {'wrap_up', av}
  end
  return {'available', agent_set(aid, 'available', now)}
end
-- Agent aid is done with contact cid (an outcome given, the call handed over). Their leg
-- still live, they stay on the call and the wrap-up starts when it ends (leg_ended.lua);
-- otherwise as agent_after_call. Returns {agent_state, agent_v}.
local function agent_done_with(aid, cid, now, wrap_until)
  if redis.call('HGET', akey(aid), 'leg') == cid then
    redis.call('HSET', akey(aid), 'call', '', 'done', cid)
    return {'on_call', bump(akey(aid))}
  end
  return agent_after_call(aid, now, wrap_until)
end
-- True when agent aid holds the open offer of contact cid.
local function holds_offer(aid, cid)
  local a = redis.call('HMGET', akey(aid), 'state', 'offer')
  local c = redis.call('HMGET', ckey(cid), 'state', 'agent')
  return a[1] == 'offered' and a[2] == cid and c[1] == 'offered' and c[2] == aid
end
