//! The Lua scripts that change the cluster's state in Redis. Each runs
//! atomically, so two nodes can never both admit the ninth peer of a room of
//! eight, both take over one peer, or both report one peer left.
//!
//! Keys are built inside the scripts from the prefix (ARGV[1]), which is
//! fine on a standalone Redis and the reason Redis Cluster is not supported.
//!
//! In Redis:
//!   P:room:ROOM       hash  peer id -> PeerInfo JSON (the room's members)
//!   P:rooms           set   room names
//!   P:peer:ID         hash  room, name, node ('' while away), token, away, epoch
//!   P:token:TOKEN     string peer id (the current resume token)
//!   P:inbox:ID        list  signals kept for an away peer
//!   P:inboxb:ID       int   their bytes
//!   P:away            zset  away peer id -> end of its grace (ms, Redis clock)
//!   P:node:NODE       string NodeInfo JSON, expiring: the heartbeat
//!   P:nodes           set   nodes that announced themselves
//!   P:nodepeers:NODE  set   peer ids connected to NODE
//!   P:revoked         zset  TURN user -> when its credential expires anyway (s)
//! Channels: P:events (room events, for every node), P:to:NODE (signals).

use std::sync::LazyLock;

use redis::Script;

/// The removal of a peer, shared by leave, grace expiry and the resync.
/// Returns false when there was no such peer, else 2 when it was the last
/// of its room (the room finished) and 1 otherwise, with the room's name.
const REMOVE_PEER: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function remove_peer(P, id, reason, revoke_until)
  local pk = P .. ':peer:' .. id
  local p = redis.call('HMGET', pk, 'room', 'node', 'token')
  if not p[1] then return false end
  local rk = P .. ':room:' .. p[1]
  redis.call('HDEL', rk, id)
  local removed = 1
  if redis.call('HLEN', rk) == 0 then
    redis.call('DEL', rk)
    redis.call('SREM', P .. ':rooms', p[1])
    removed = 2
  end
  redis.call('DEL', pk, P .. ':inbox:' .. id, P .. ':inboxb:' .. id)
  if p[3] then redis.call('DEL', P .. ':token:' .. p[3]) end
  if p[2] and p[2] ~= '' then redis.call('SREM', P .. ':nodepeers:' .. p[2], id) end
  redis.call('ZREM', P .. ':away', id)
  local user = p[1] .. '/' .. id
  redis.call('ZADD', P .. ':revoked', revoke_until, user)
  redis.call('PUBLISH', P .. ':events',
    cjson.encode({k = 'left', room = p[1], peer = id, reason = reason, user = user}))
  return removed, p[1]
end
"#;

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{REMOVE_PEER}\n{body}"))
}

/// ARGV: P, room, id, name, token, node, capacity, info JSON, joined event.
/// Returns {'ok', {info JSON of the others}}, {'full'} or {'dup'}.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local P, room, id = ARGV[1], ARGV[2], ARGV[3]
local pk = P .. ':peer:' .. id
if redis.call('EXISTS', pk) == 1 then return {'dup'} end
local rk = P .. ':room:' .. room
if redis.call('HLEN', rk) >= tonumber(ARGV[7]) then return {'full'} end
local others = redis.call('HVALS', rk)
redis.call('HSET', rk, id, ARGV[8])
redis.call('HSET', pk, 'room', room, 'name', ARGV[4], 'node', ARGV[6], 'token', ARGV[5],
  'away', '0', 'epoch', '1')
redis.call('SET', P .. ':token:' .. ARGV[5], id)
redis.call('SADD', P .. ':nodepeers:' .. ARGV[6], id)
redis.call('SADD', P .. ':rooms', room)
redis.call('PUBLISH', P .. ':events', ARGV[9])
return {'ok', others}
"#,
    )
});

/// ARGV: P, room, token, new token, node.
/// Returns {'ok', id, epoch, own info JSON, {others' info JSON}, {queued
/// signals}} or {'failed'}.
pub static RESUME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local P, room, node = ARGV[1], ARGV[2], ARGV[5]
local id = redis.call('GET', P .. ':token:' .. ARGV[3])
if not id then return {'failed'} end
local pk = P .. ':peer:' .. id
local p = redis.call('HMGET', pk, 'room', 'node', 'away')
if p[1] ~= room then return {'failed'} end
local epoch = redis.call('HINCRBY', pk, 'epoch', 1)
redis.call('HSET', pk, 'node', node, 'away', '0', 'token', ARGV[4])
redis.call('DEL', P .. ':token:' .. ARGV[3])
redis.call('SET', P .. ':token:' .. ARGV[4], id)
redis.call('ZREM', P .. ':away', id)
if p[2] and p[2] ~= '' then redis.call('SREM', P .. ':nodepeers:' .. p[2], id) end
redis.call('SADD', P .. ':nodepeers:' .. node, id)
local ib = P .. ':inbox:' .. id
local queued = redis.call('LRANGE', ib, 0, -1)
redis.call('DEL', ib, P .. ':inboxb:' .. id)
local all = redis.call('HGETALL', P .. ':room:' .. room)
local others = {}
local own = ''
for i = 1, #all, 2 do
  if all[i] ~= id then table.insert(others, all[i + 1]) else own = all[i + 1] end
end
if p[3] == '0' then
  redis.call('PUBLISH', P .. ':events', cjson.encode({k = 'evict', peer = id, epoch = epoch}))
end
return {'ok', id, epoch, own, others, queued}
"#,
    )
});

/// ARGV: P, id, node, epoch, reason, revoke until (s). Removes the peer if
/// it is still the one this node has (node and epoch match); node '' skips
/// that check. Returns {0} when not removed, {1, room} when removed, {2,
/// room} when removed as the last of its room.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local P, id = ARGV[1], ARGV[2]
local p = redis.call('HMGET', P .. ':peer:' .. id, 'node', 'epoch')
if not p[2] then return {0} end
if ARGV[3] ~= '' and (p[1] ~= ARGV[3] or p[2] ~= ARGV[4]) then return {0} end
local removed, room = remove_peer(P, id, ARGV[5], ARGV[6])
if removed then return {removed, room} end
return {0}
"#,
    )
});

/// ARGV: P, id, node, epoch, grace (ms). The peer's connection to this node
/// dropped: it is away until its grace ends. Returns 1 when marked.
pub static DETACH: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local P, id = ARGV[1], ARGV[2]
local pk = P .. ':peer:' .. id
local p = redis.call('HMGET', pk, 'node', 'epoch')
if p[1] ~= ARGV[3] or p[2] ~= ARGV[4] then return 0 end
redis.call('HSET', pk, 'node', '', 'away', '1')
redis.call('SREM', P .. ':nodepeers:' .. ARGV[3], id)
redis.call('ZADD', P .. ':away', now_ms() + tonumber(ARGV[5]), id)
return 1
"#,
    )
});

/// ARGV: P, revoke until (s). Removes the away peers whose grace ended
/// (`peer.left` with reason timeout). Returns {room, id, removed (1 or 2,
/// as remove_peer), ...} for each, so that the node that removed them is
/// the one that reports them to the webhooks.
pub static EXPIRE_DUE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local P = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', P .. ':away', '-inf', now_ms(), 'LIMIT', 0, 500)
local gone = {}
for _, id in ipairs(due) do
  redis.call('ZREM', P .. ':away', id)
  if redis.call('HGET', P .. ':peer:' .. id, 'away') == '1' then
    local removed, room = remove_peer(P, id, 'timeout', ARGV[2])
    if removed then
      table.insert(gone, room)
      table.insert(gone, id)
      table.insert(gone, removed)
    end
  end
end
return gone
"#,
    )
});

/// ARGV: P, dead node, grace (ms). The node's heartbeat expired: its peers
/// are away from now on. Returns how many, or -1 when another node got
/// there first or the node is back.
pub static REAP_NODE: LazyLock<Script> = LazyLock::new(|| {
    with_prelude(
        r#"
local P, dead = ARGV[1], ARGV[2]
if redis.call('EXISTS', P .. ':node:' .. dead) == 1 then return -1 end
if redis.call('SREM', P .. ':nodes', dead) == 0 then return -1 end
local np = P .. ':nodepeers:' .. dead
local ids = redis.call('SMEMBERS', np)
local until_ms = now_ms() + tonumber(ARGV[3])
local n = 0
for _, id in ipairs(ids) do
  local pk = P .. ':peer:' .. id
  if redis.call('HGET', pk, 'node') == dead then
    redis.call('HSET', pk, 'node', '', 'away', '1')
    redis.call('ZADD', P .. ':away', until_ms, id)
    n = n + 1
  end
end
redis.call('DEL', np)
return n
"#,
    )
});

/// ARGV: P, from ('' to skip the room check), to, text, cost, byte limit,
/// this node ('' or the node that must not get it back). Publishes to the
/// target's node, or keeps it in the target's inbox while it is away.
/// Returns 'sent', 'queued', 'full' or 'unknown'.
pub static SIGNAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local P, from, to = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('HMGET', P .. ':peer:' .. to, 'room', 'node', 'away')
if not t[1] then return 'unknown' end
if from ~= '' and redis.call('HGET', P .. ':peer:' .. from, 'room') ~= t[1] then
  return 'unknown'
end
if t[3] == '0' and t[2] and t[2] ~= '' and t[2] ~= ARGV[7]
    and redis.call('EXISTS', P .. ':node:' .. t[2]) == 1 then
  redis.call('PUBLISH', P .. ':to:' .. t[2], to .. '\n' .. ARGV[4])
  return 'sent'
end
local bk = P .. ':inboxb:' .. to
local b = redis.call('INCRBY', bk, tonumber(ARGV[5]))
if b > tonumber(ARGV[6]) then
  redis.call('DECRBY', bk, tonumber(ARGV[5]))
  return 'full'
end
redis.call('RPUSH', P .. ':inbox:' .. to, ARGV[4])
return 'queued'
"#,
    )
});

/// ARGV: P, id, room, info JSON, state event. Returns 1 when published.
pub static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local P, id, room = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', P .. ':peer:' .. id, 'room') ~= room then return 0 end
redis.call('HSET', P .. ':room:' .. room, id, ARGV[4])
redis.call('PUBLISH', P .. ':events', ARGV[5])
return 1
"#,
    )
});

/// ARGV: P, id, room, name, node, epoch, info JSON, joined event, resume
/// token. After an
/// outage: puts a peer connected here back into Redis as it is here,
/// unless it resumed elsewhere meanwhile. Returns {'ok', {queued}} or
/// {'gone', epoch}.
pub static ATTACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local P, id, room, node = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local pk = P .. ':peer:' .. id
local p = redis.call('HMGET', pk, 'node', 'epoch', 'token')
if p[2] and tonumber(p[2]) > tonumber(ARGV[6]) then return {'gone', tonumber(p[2])} end
local rk = P .. ':room:' .. room
local known = redis.call('HEXISTS', rk, id) == 1
if p[1] and p[1] ~= '' and p[1] ~= node then
  redis.call('SREM', P .. ':nodepeers:' .. p[1], id)
end
redis.call('HSET', rk, id, ARGV[7])
redis.call('HSET', pk, 'room', room, 'name', ARGV[4], 'node', node, 'away', '0',
  'epoch', ARGV[6], 'token', ARGV[9])
if p[3] and p[3] ~= ARGV[9] then redis.call('DEL', P .. ':token:' .. p[3]) end
redis.call('SET', P .. ':token:' .. ARGV[9], id)
redis.call('SADD', P .. ':nodepeers:' .. node, id)
redis.call('SADD', P .. ':rooms', room)
redis.call('ZREM', P .. ':away', id)
local ib = P .. ':inbox:' .. id
local queued = redis.call('LRANGE', ib, 0, -1)
redis.call('DEL', ib, P .. ':inboxb:' .. id)
if not known then redis.call('PUBLISH', P .. ':events', ARGV[8]) end
return {'ok', queued}
"#,
    )
});
