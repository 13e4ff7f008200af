-- ARGV: aid cid bid now_ms wrap_until_ms mode. Agent aid, on the call with contact cid,
-- hands it to agent bid of the same site.
-- mode 'cold' and 'consult' reserve bid at once: bid must be available with no live
-- leg (AGENT_NOT_FREE); they are then on the call, out of the pool, never offered
-- anything else meanwhile. 'consult' stops there (a warm transfer: aid talks to bid
-- first). 'cold', and 'complete' (a warm transfer completed: bid reserved already,
-- NO_TRANSFER otherwise), make bid the contact's agent; aid's outcome counts as given:
-- their wrap-up starts when their leg ends (at once when none is live).
-- 'cancel' (a warm transfer cancelled): bid is let go, free once their leg ends.
-- Returns {contact_v, agent_v, agent_state, agent_state_before, receiver_v,
-- receiver_state}.
local aid, cid, bid = ARGV[1], ARGV[2], ARGV[3]
local now, wrap_until, mode = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local c = redis.call('HMGET', ckey(cid), 'state', 'agent', 'site')
if c[1] ~= 'on_call' or c[2] ~= aid then return redis.error_reply('NOT_ON_CALL') end
local b = redis.call('HMGET', akey(bid), 'state', 'leg', 'site', 'call')
local bv
if mode == 'cancel' or mode == 'complete' then
  if bid == aid or b[1] ~= 'on_call' or b[4] ~= cid then
    return redis.error_reply('NO_TRANSFER')
  end
  if mode == 'cancel' then
    if b[2] == cid then
      redis.call('HSET', akey(bid), 'call', '')
      return {0, 0, '', '', bump(akey(bid)), 'on_call'}
    end
    return {0, 0, '', '', agent_set(bid, 'available', now), 'available'}
  end
  bv = bump(akey(bid))
else
  if bid == aid or b[1] ~= 'available' or (b[2] and b[2] ~= '') or b[3] ~= c[3] then
    return redis.error_reply('AGENT_NOT_FREE')
  end
  agent_leave_pool(bid)
  redis.call('HSET', akey(bid), 'state', 'on_call', 'since', fmt(now), 'offer', '',
    'call', cid, 'done', '', 'gone', '', 'missed', '0')
  bv = bump(akey(bid))
  if mode == 'consult' then return {0, 0, '', '', bv, 'on_call'} end
end
redis.call('HSET', ckey(cid), 'agent', bid)
local cv = bump(ckey(cid))
local before = redis.call('HGET', akey(aid), 'state') or ''
local after = agent_done_with(aid, cid, now, wrap_until)
local astate, av = after[1], after[2]
return {cv, av, astate, before, bv, 'on_call'}
