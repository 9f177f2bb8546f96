//! The Lua scripts: each a step that must not interleave with another node's, run by
//! Redis atomically. Their keys and arguments are documented above each.

pub(super) struct Scripts {
    pub add_ticket: Lua,
    pub undo_ticket: Lua,
    pub add_pgt: Lua,
    pub redeem: Lua,
    pub take_pending: Lua,
    pub remove_tgt: Lua,
    pub drain_expired: Lua,
    pub claim: Lua,
    pub attempts: Lua,
}

/// A script, called by its SHA1 (`EVALSHA`), and by its text (`EVAL`, which also loads
/// it) on a Redis that does not know it yet. Not the crate's `Script::invoke_async`: on
/// `NOSCRIPT` it sends `SCRIPT LOAD`, which a cluster client sends to every node,
/// replicas included, and which fails while any node is down.
pub(super) struct Lua {
    code: String,
    hash: String,
}

impl Lua {
    fn new(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            hash: redis::Script::new(code).get_hash().to_owned(),
        }
    }

    /// Runs the script on `keys` and `args`.
    pub(super) async fn call<T: redis::FromRedisValue>(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        keys: &[String],
        args: &[String],
    ) -> redis::RedisResult<T> {
        let command = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match command("EVALSHA", &self.hash).query_async(connection).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                command("EVAL", &self.code).query_async(connection).await
            }
            answer => answer,
        }
    }
}

/// A session is live at `now` (ARGV[1]) if its hash holds kind `tgt`, `now` is before its
/// hard deadline `a` and, with an idle limit `i`, before its last use `u` plus `i`: the
/// policy check of [`crate::tickets::TicketGrantingTicket::is_expired`], on the plain fields stored beside
/// the sealed payload, so that checking and adding happen in one atomic step. (The fields
/// are not authenticated here; reads check the sealed policy and the tag of `u` again.)
/// Numbers computed in Lua go back to Redis through `%d`: some Redis versions print
/// large whole numbers in exponent form, which `PEXPIRE` refuses.
const LIVE_SESSION: &str = r"
local s = redis.call('HMGET', KEYS[1], 'k', 'u', 'a', 'i', 'd', 't')
local now = tonumber(ARGV[1])
if s[1] ~= 'tgt' then return 0 end
local u, a, i = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
if now >= a or (i > 0 and now >= u + i) then return 0 end
local function int(x) return string.format('%d', x) end
";

/// KEYS: session, history, PGT list, expiry index, new ticket.
/// ARGV: now (ms), slide ("1" or "0"), margin (ms), session hash, history entry, sealed
/// ticket, ticket TTL (ms), history bound, tag of the new last use, ticket key prefix,
/// and "1" to have the session back.
/// The session's liveness is judged on its clear fields, which are not authenticated,
/// and this script writes a fresh tag for the slid `u`: the caller must have checked the
/// session (the tag of `u`, the sealed policy) before, with `get_tgt`, or check it after,
/// in the session sent back (`{1 or 2, forgotten entry or '', sealed session, last use
/// before this one, its tag}`), and undo the ticket with `UNDO_TICKET` if it fails.
/// Sent again after a lost answer, it changes nothing: the ticket is already there.
/// Every `redis.call` costs a Lua round trip inside Redis (about as much as the command
/// itself), so the script makes as few as it can: the history's length is `RPUSH`'s
/// answer, and its TTL is set only when it changes (the session slid, or the list is new).
/// A history entry is `<ticket hash>:<destination tag>.<sealed entry>` (the tag is `-`
/// for a service told nothing; entries of older versions have no tag). When the history
/// overflows, the oldest repeat of a destination goes first, then the oldest entry that
/// tells no one; only then the oldest entry, which is returned as `{2, entry}` so the
/// caller can report the application forgotten.
const ADD_TICKET: &str = r"
if redis.call('EXISTS', KEYS[5]) == 1 then return 1 end
local slid = nil
if ARGV[2] == '1' and now > u then
  redis.call('HSET', KEYS[1], 'u', ARGV[1], 't', ARGV[9])
  local deadline = a
  if i > 0 and now + i < a then deadline = now + i end
  slid = int(deadline - now + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], slid)
  redis.call('PEXPIRE', KEYS[3], slid)
  for _, pgt in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    redis.call('PEXPIRE', ARGV[10] .. pgt, slid)
  end
  redis.call('ZADD', KEYS[4], int(deadline), ARGV[4])
end
local length = redis.call('RPUSH', KEYS[2], ARGV[5])
local full = length > tonumber(ARGV[8])
local forgot = nil
local function dest(e)
  local dot = string.find(e, '.', 1, true)
  if not dot then return nil end
  local colon = string.find(string.sub(e, 1, dot - 1), ':', 1, true)
  if not colon then return nil end
  return string.sub(e, colon + 1, dot - 1)
end
local oldest = nil
if full then
  oldest = dest(redis.call('LINDEX', KEYS[2], 0))
end
if oldest and oldest == dest(ARGV[5]) then
  -- The oldest entry repeats the new one's destination: the scan below would choose
  -- it first. The usual case (the same application again), without reading the list.
  redis.call('LPOP', KEYS[2])
elseif full then
  local entries = redis.call('LRANGE', KEYS[2], 0, -1)
  local last = {}
  for n, e in ipairs(entries) do
    local d = dest(e)
    if d then last[d] = n end
  end
  local victim = nil
  for n, e in ipairs(entries) do
    local d = dest(e)
    if d and last[d] ~= n then victim = e break end
  end
  if not victim then
    for _, e in ipairs(entries) do
      if dest(e) == '-' then victim = e break end
    end
  end
  if not victim then
    victim = entries[1]
    forgot = victim
  end
  redis.call('LREM', KEYS[2], 1, victim)
end
-- The history lives as long as its session.
if slid then
  redis.call('PEXPIRE', KEYS[2], slid)
elseif length == 1 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('HSET', KEYS[5], 'k', 'st', 'd', ARGV[6], 's', ARGV[4])
redis.call('PEXPIRE', KEYS[5], ARGV[7])
if ARGV[11] == '1' then
  local code = 1
  if forgot then code = 2 end
  return {code, forgot or '', s[5] or '', s[2] or '', s[6] or ''}
end
if forgot then return {2, forgot} end
return 1
";

/// KEYS: session, history, ticket. ARGV: the ticket's history entry, the last use
/// `ADD_TICKET` wrote and its tag, the last use before it and its tag. Takes back a
/// ticket that `ADD_TICKET` issued under a session its caller then refused: the ticket
/// and its entry go, and the last use is put back unless someone used the session since.
/// Repeatable.
const UNDO_TICKET: &str = r"
redis.call('DEL', KEYS[3])
redis.call('LREM', KEYS[2], 1, ARGV[1])
if ARGV[4] ~= '' and ARGV[5] ~= '' then
  local now = redis.call('HMGET', KEYS[1], 'u', 't')
  if now[1] == ARGV[2] and now[2] == ARGV[3] then
    redis.call('HSET', KEYS[1], 'u', ARGV[4], 't', ARGV[5])
  end
end
return 1
";

/// KEYS: session, PGT list, new PGT. ARGV: now (ms), sealed PGT, PGT hash, bound, ticket
/// key prefix. A PGT lives exactly as long as its session: it gets the session's TTL,
/// extended with it when the session slides. Idempotent, like `ADD_TICKET`.
const ADD_PGT: &str = r"
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('HSET', KEYS[3], 'k', 'pgt', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('RPUSH', KEYS[2], ARGV[3])
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[4]) do
  redis.call('DEL', ARGV[5] .. redis.call('LPOP', KEYS[2]))
end
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
";

/// KEYS: the ticket. ARGV: ticket key prefix. Returns nil (absent), {kind} (not one-use:
/// untouched) or, removed, {'st', sealed} (a ticket stored without its session's hash),
/// {'st', sealed, ''} (its session is gone) or {'st', sealed, sealed session, last use,
/// its tag}: validation needs the session too, and gets it in the same trip. (The
/// session's key is read from the ticket's `s` field; a forged one could only name a
/// session whose payload does not open under this ticket's session id.)
const REDEEM: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd', 's')
if not v[1] then return false end
if v[1] ~= 'st' then return {v[1]} end
redis.call('DEL', KEYS[1])
if not v[3] then return {v[1], v[2]} end
local s = redis.call('HMGET', ARGV[1] .. v[3], 'k', 'd', 'u', 't')
if s[1] ~= 'tgt' then return {v[1], v[2], ''} end
return {v[1], v[2], s[2], s[3] or '0', s[4] or ''}
";

/// KEYS: the pending login. Returns its sealed value and removes it, or nil for anything
/// else (another kind of ticket is left alone).
const TAKE_PENDING: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd')
if v[1] ~= 'pl' then return false end
redis.call('DEL', KEYS[1])
return v[2]
";

/// KEYS: session, history, PGT list, expiry index, outbox, outbox queue. ARGV: session
/// hash, ticket key prefix, and when the outbox entry falls due (ms; '0' for none).
/// Removes the session with every ticket it issued; returns nil if it was not there, else
/// {sealed session, last use, its tag, history...}, which it also keeps in the outbox
/// until the caller acknowledges it: a reply lost in a stall does not lose the single
/// logout it carries (any node's sweep sends what falls due).
const REMOVE_TGT: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd', 'u', 't')
local issued = redis.call('LRANGE', KEYS[2], 0, -1)
for _, entry in ipairs(issued) do
  local dot = string.find(entry, '.', 1, true)
  if dot then
    local id = string.sub(entry, 1, dot - 1)
    local colon = string.find(id, ':', 1, true)
    if colon then id = string.sub(id, 1, colon - 1) end
    redis.call('DEL', ARGV[2] .. id)
  end
end
for _, pgt in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  redis.call('DEL', ARGV[2] .. pgt)
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
if v[1] ~= 'tgt' then return false end
redis.call('DEL', KEYS[1])
local out = {v[2], v[3] or '0', v[4] or ''}
for _, entry in ipairs(issued) do out[#out + 1] = entry end
if ARGV[3] ~= '0' then
  redis.call('HSET', KEYS[5], ARGV[1], cjson.encode(out))
  redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
end
return out
";

/// KEYS: expiry index. ARGV: now (ms), batch, lease end (ms). Leases due sessions to the
/// caller: they are moved to the lease's end, so another node's reaper leaves them alone
/// meanwhile, and they come back if this one fails before removing them.
const DRAIN_EXPIRED: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return due
";

/// KEYS: the claim. ARGV: this call's token, TTL (ms), and optionally '0' to only look.
/// `1` for the first claimant, and for the same call sent again after a lost answer; `0`
/// for anyone else; `-1` when there is no claim and this call only looked.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then
  if ARGV[3] == '0' then return -1 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if held == ARGV[1] then return 1 end
return 0
";

/// KEYS: the per-user counter, the per-address counter. ARGV: operation, per-user
/// threshold, per-address threshold, window (ms), now (ms), address delay (ms). A counter
/// is a hash `{n: failures, s: start}` living `window` from its first failure; a slowed
/// address also has `g`, when its next password check may start. Returns `{kind, wait}`:
/// kind 0 (go ahead), 1 (the name is blocked) or 2 (the address is slowed), and the wait
/// in milliseconds. See `protocol::throttle` for the rules.
const ATTEMPTS: &str = r"
local window, now, delay = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function count(k)
  local v = redis.call('HMGET', k, 'n', 's')
  local n, s = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if now >= s + window then return 0, now end
  return n, s
end
local function slowed()
  local n = count(KEYS[2])
  return n >= tonumber(ARGV[3])
end
local function wait()
  local n, s = count(KEYS[1])
  if n >= tonumber(ARGV[2]) then return {1, s + window - now} end
  if slowed() then
    local g = tonumber(redis.call('HGET', KEYS[2], 'g') or '0')
    if g > now then return {2, g - now} end
  end
  return {0, 0}
end
local function bump(k)
  local n, s = count(k)
  redis.call('HSET', k, 'n', string.format('%d', n + 1), 's', string.format('%d', s))
  redis.call('PEXPIRE', k, string.format('%d', math.max(1, s + window - now)))
end
local function give_back(k)
  local n = count(k)
  if n > 0 then redis.call('HSET', k, 'n', string.format('%d', n - 1)) end
end
local op = ARGV[1]
if op == 'blocked' then return wait() end
if op == 'begin' then
  local w = wait()
  if w[1] > 0 then return w end
  if slowed() then redis.call('HSET', KEYS[2], 'g', string.format('%d', now + delay)) end
  bump(KEYS[1])
  bump(KEYS[2])
  return {0, 0}
end
if op == 'fail' then bump(KEYS[1]) return {0, 0} end
if op == 'succeeded' then redis.call('DEL', KEYS[1]) give_back(KEYS[2]) return {0, 0} end
if op == 'release' then give_back(KEYS[1]) give_back(KEYS[2]) return {0, 0} end
if op == 'form_refused' then give_back(KEYS[2]) return {0, 0} end
return redis.error_reply('unknown operation')
";

/// How long a one-shot script's reply is kept for a repeat of the same call.
const RECEIPT_TTL_MS: u64 = 30_000;

/// Makes a script that must not run twice safe to send twice. Its last key is a receipt,
/// unique to one call: the first run keeps its reply there, and a repeat answers the
/// kept reply instead of running again. A command whose connection broke may or may not
/// have reached Redis (a restart closes every pooled connection, and the first command
/// on each fails so); with a receipt the pool sends it again on a fresh connection, and
/// a ticket is never redeemed twice nor lost to a broken pipe.
fn once(body: &str) -> String {
    format!(
        r"
local kept = redis.call('GET', KEYS[#KEYS])
if kept then return cjson.decode(kept) end
local function run()
{body}
end
local reply = run()
-- Nothing found (an unknown ticket, a session already gone): nothing was changed, and a
-- repeat answers the same without a receipt. A flood of made-up tickets stores nothing.
if reply == nil or reply == false then return reply end
redis.call('SET', KEYS[#KEYS], cjson.encode(reply), 'PX', {RECEIPT_TTL_MS})
return reply
"
    )
}

/// [`once`] for a script that consumes what it finds (a ticket, a pending login, a
/// session): it finds nothing exactly when it never existed or a first run of this call
/// took it, and changes nothing then. So the receipt is read only in that case, and the
/// usual call, which finds its ticket, makes one `redis.call` fewer.
fn once_consuming(body: &str) -> String {
    format!(
        r"
local function run()
{body}
end
local reply = run()
if reply == nil or reply == false then
  local kept = redis.call('GET', KEYS[#KEYS])
  if kept then return cjson.decode(kept) end
  return reply
end
redis.call('SET', KEYS[#KEYS], cjson.encode(reply), 'PX', {RECEIPT_TTL_MS})
return reply
"
    )
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            add_ticket: Lua::new(&format!("{LIVE_SESSION}{ADD_TICKET}")),
            undo_ticket: Lua::new(UNDO_TICKET),
            add_pgt: Lua::new(&format!("{LIVE_SESSION}{ADD_PGT}")),
            redeem: Lua::new(&once_consuming(REDEEM)),
            take_pending: Lua::new(&once_consuming(TAKE_PENDING)),
            remove_tgt: Lua::new(&once_consuming(REMOVE_TGT)),
            // Repeatable without a receipt: a lease whose answer was lost only delays
            // those entries by the lease, and a receipt per sweep would pile up.
            drain_expired: Lua::new(DRAIN_EXPIRED),
            claim: Lua::new(CLAIM),
            attempts: Lua::new(&once(ATTEMPTS)),
        }
    }
}
