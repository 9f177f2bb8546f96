//! A ticket registry in Redis (or Valkey), shared by every node of a cluster.
//!
//! Layout, under a configurable prefix (`cas:` by default), every id a keyed hash
//! ([`TicketSealer::hash_id`]) and every payload sealed with the registry key:
//! - `t:<hash>`: a hash `{k: kind, d: sealed ticket}`; a session also has its last use `u`,
//!   hard deadline `a` (Unix milliseconds) and idle limit `i` (milliseconds, 0 for none)
//!   in clear, so that a script can check and slide it without the key.
//! - `h:<hash>`: a session's ticket history (single logout), a list of
//!   `<ticket hash>.<sealed IssuedTicket>`, newest last, at most [`MAX_ISSUED`].
//! - `p:<hash>`: a session's proxy-granting tickets, a list of their hashes.
//! - `c:<hash>`: a claimed single-use key (login forms).
//! - `a:<hash>`: a failed-login counter (per address and name, and per address), so the
//!   throttle's thresholds hold for the cluster.
//! - `expiry`: a sorted set of sessions by deadline, which the reaper drains (single logout
//!   on expiry, and the removal of whatever a session still holds).
//!
//! Every key carries a Redis TTL derived from its policy (a session's slides with use, never
//! past its hard limit), so Redis frees memory by itself; the policy is still checked on
//! every read, exactly as in memory. Steps that must not interleave across nodes (redeem a
//! ticket, add one under a live session, destroy a session with all it holds) are one Lua
//! script each, which Redis runs atomically. Not for Redis Cluster: a script touches keys
//! of several hash slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script};
use time::OffsetDateTime;

use super::model::MAX_PGTS;
use super::sealing::TicketSealer;
use super::{
    AttemptOp, AttemptStore, Grant, IssuedTicket, LogoutTarget, ProxyGrantingTicket, Redeemed,
    RegistryError, ServiceTicket, Swept, TicketGrantingTicket, TicketRegistry, model::MAX_ISSUED,
};
use crate::clock::Clock;
use crate::crypto::Secret;

/// `[tickets.redis]`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// May carry a password, so it never prints.
    pub url: Secret<String>,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    /// Trusted roots for `rediss://`, PEM; the system's roots when absent.
    pub ca_pem: Option<Vec<u8>>,
    pub key_prefix: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub encrypt: bool,
}

impl RedisOptions {
    /// `redis://` to anything but this machine.
    pub fn is_plain_remote(&self) -> bool {
        // `redis:` is not a special scheme to the URL parser: an IPv4 host stays text.
        url::Url::parse(self.url.expose()).is_ok_and(|u| {
            let host = u.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            u.scheme() == "redis" && !loopback
        })
    }
}

/// After a failed connection attempt, requests fail at once for this long instead of each
/// waiting out its own connect timeout while Redis is down.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
/// Sessions drained from the expiry index per script call, and calls per sweep.
const SWEEP_BATCH: usize = 500;
const SWEEP_BATCHES: usize = 200;

/// One multiplexed connection per slot, opened on first use and reopened after a failure,
/// so the server starts, and recovers, whatever state Redis is in.
struct Pool {
    client: redis::Client,
    config: AsyncConnectionConfig,
    slots: Vec<tokio::sync::Mutex<Slot>>,
    failed_at: std::sync::Mutex<Option<Instant>>,
    next: AtomicUsize,
    command_timeout: Duration,
    /// The most any operation may take: one connection attempt and one command.
    deadline: Duration,
}

#[derive(Default)]
struct Slot {
    connection: Option<MultiplexedConnection>,
}

fn unavailable(what: impl std::fmt::Display) -> RegistryError {
    RegistryError(format!("redis: {what}"))
}

impl Pool {
    async fn connection(&self, index: usize) -> Result<MultiplexedConnection, RegistryError> {
        let mut slot = self.slots[index].lock().await;
        if let Some(c) = &slot.connection {
            return Ok(c.clone());
        }
        if self
            .failed_at()
            .is_some_and(|at| at.elapsed() < RECONNECT_BACKOFF)
        {
            return Err(unavailable("unreachable (retrying)"));
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(c) => {
                if self.set_failed_at(None).is_some() {
                    tracing::info!("ticket registry: connected to redis again");
                }
                slot.connection = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                if self.set_failed_at(Some(Instant::now())).is_none() {
                    tracing::warn!(error = %e, "ticket registry: cannot connect to redis");
                }
                Err(unavailable(e))
            }
        }
    }

    /// When a connection attempt last failed, if none has succeeded since: shared by the
    /// slots, so that one success ends the backoff for all.
    fn failed_at(&self) -> Option<Instant> {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_failed_at(&self, at: Option<Instant>) -> Option<Instant> {
        std::mem::replace(
            &mut *self
                .failed_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            at,
        )
    }

    async fn forget(&self, index: usize) {
        let mut slot = self.slots[index].lock().await;
        slot.connection = None;
    }

    /// Runs an idempotent `command` on a pooled connection. A connection that broke
    /// (Redis restarted, say) is replaced and the command sent once more, so a restart
    /// costs no request: only for commands whose repetition answers the same.
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, RegistryError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.within_deadline(self.attempt(command, 2)).await
    }

    /// Runs a command that must not be repeated (redeeming a ticket, removing a session):
    /// had the first attempt reached Redis and only its answer been lost, a second one
    /// would answer differently.
    async fn run_once<T, F, Fut>(&self, command: F) -> Result<T, RegistryError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.within_deadline(self.attempt(command, 1)).await
    }

    /// However the attempts go, a request waits at most one connection and one command.
    async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        tokio::time::timeout(self.deadline, work)
            .await
            .unwrap_or_else(|_| Err(unavailable("no answer within the timeouts")))
    }

    async fn attempt<T, F, Fut>(&self, command: F, attempts: usize) -> Result<T, RegistryError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut last = None;
        for _ in 0..attempts {
            let connection = self.connection(index).await?;
            match tokio::time::timeout(self.command_timeout, command(connection)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e))
                    if e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || (e.is_io_error() && !e.is_timeout()) =>
                {
                    self.forget(index).await;
                    last = Some(unavailable(e));
                }
                // A slow Redis is not retried: that would only double the wait.
                Ok(Err(e)) if e.is_io_error() || e.is_timeout() => {
                    self.forget(index).await;
                    return Err(unavailable(e));
                }
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => {
                    self.forget(index).await;
                    return Err(unavailable("command timed out"));
                }
            }
        }
        Err(last.unwrap_or_else(|| unavailable("unreachable")))
    }
}

/// Kinds as stored in the `k` field.
const TGT: &str = "tgt";
const ST: &str = "st";
const PGT: &str = "pgt";

pub struct RedisRegistry {
    pool: Pool,
    sealer: TicketSealer,
    prefix: String,
    /// How long a session's keys outlive its deadline, so the reaper can still tell its
    /// services (single logout on expiry); zero otherwise. Reads check the policy, so a
    /// session is never used in this margin.
    expiry_margin: Duration,
    scripts: Arc<Scripts>,
    clock: Arc<dyn Clock>,
    /// Set while the key check fails, so the error is logged once, not at every probe.
    key_mismatch: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Scripts {
    add_ticket: Script,
    add_pgt: Script,
    redeem: Script,
    remove_tgt: Script,
    drain_expired: Script,
    claim: Script,
    attempts: Script,
}

/// A session is live at `now` (ARGV[1]) if its hash holds kind `tgt`, `now` is before its
/// hard deadline `a` and, with an idle limit `i`, before its last use `u` plus `i`: the
/// policy check of [`TicketGrantingTicket::is_expired`], on the plain fields stored beside
/// the sealed payload, so that checking and adding happen in one atomic step. (The fields
/// are not authenticated here; reads check the sealed policy and the tag of `u` again.)
/// Numbers computed in Lua go back to Redis through `%d`: some Redis versions print
/// large whole numbers in exponent form, which `PEXPIRE` refuses.
const LIVE_SESSION: &str = r"
local s = redis.call('HMGET', KEYS[1], 'k', 'u', 'a', 'i')
local now = tonumber(ARGV[1])
if s[1] ~= 'tgt' then return 0 end
local u, a, i = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
if now >= a or (i > 0 and now >= u + i) then return 0 end
local function int(x) return string.format('%d', x) end
";

/// KEYS: session, history, PGT list, expiry index, new ticket.
/// ARGV: now (ms), slide ("1" or "0"), margin (ms), session hash, history entry, sealed
/// ticket, ticket TTL (ms), history bound, tag of the new last use, ticket key prefix.
/// Sent again after a lost answer, it changes nothing: the ticket is already there.
const ADD_TICKET: &str = r"
if redis.call('EXISTS', KEYS[5]) == 1 then return 1 end
if ARGV[2] == '1' and now > u then
  redis.call('HSET', KEYS[1], 'u', ARGV[1], 't', ARGV[9])
  local deadline = a
  if i > 0 and now + i < a then deadline = now + i end
  local ttl = int(deadline - now + tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  for _, pgt in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    redis.call('PEXPIRE', ARGV[10] .. pgt, ttl)
  end
  redis.call('ZADD', KEYS[4], int(deadline), ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[8]), -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('HSET', KEYS[5], 'k', 'st', 'd', ARGV[6])
redis.call('PEXPIRE', KEYS[5], ARGV[7])
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

/// KEYS: the ticket. Returns nil (absent), {kind} (not one-use: untouched) or
/// {'st', sealed} (removed).
const REDEEM: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd')
if not v[1] then return false end
if v[1] ~= 'st' then return {v[1]} end
redis.call('DEL', KEYS[1])
return {v[1], v[2]}
";

/// KEYS: session, history, PGT list, expiry index. ARGV: session hash, ticket key prefix.
/// Removes the session with every ticket it issued; returns nil if it was not there, else
/// {sealed session, last use, its tag, history...}.
const REMOVE_TGT: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd', 'u', 't')
local issued = redis.call('LRANGE', KEYS[2], 0, -1)
for _, entry in ipairs(issued) do
  local dot = string.find(entry, '.', 1, true)
  if dot then redis.call('DEL', ARGV[2] .. string.sub(entry, 1, dot - 1)) end
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

/// KEYS: the claim. ARGV: this call's token, TTL (ms). `1` for the first claimant, and
/// for the same call sent again after a lost answer; `0` for anyone else.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if held == ARGV[1] then return 1 end
return 0
";

/// The key check value is rewritten by the first node to ask after it expires (ten years).
const KEY_CHECK_TTL_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

/// KEYS: per-user counter, per-address counter. ARGV: operation, user threshold, address
/// threshold, window (ms), now (ms). Returns the wait in ms when blocked, else 0. Each
/// counter is a hash `{n: failures, s: first failure}` whose window is judged by the
/// nodes' clock, as in memory; its TTL only frees it.
const ATTEMPTS: &str = r"
local window, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local function count(k)
  local v = redis.call('HMGET', k, 'n', 's')
  local n, s = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if now >= s + window then return 0, now end
  return n, s
end
local function wait()
  local w = 0
  local n, s = count(KEYS[1])
  if n >= tonumber(ARGV[2]) then w = math.max(w, s + window - now) end
  n, s = count(KEYS[2])
  if n >= tonumber(ARGV[3]) then w = math.max(w, s + window - now) end
  return w
end
local function fail()
  for _, k in ipairs(KEYS) do
    local n, s = count(k)
    redis.call('HSET', k, 'n', string.format('%d', n + 1), 's', string.format('%d', s))
    redis.call('PEXPIRE', k, string.format('%d', math.max(1, s + window - now)))
  end
end
local function give_back(k)
  local n = count(k)
  if n > 0 then redis.call('HSET', k, 'n', string.format('%d', n - 1)) end
end
local op = ARGV[1]
if op == 'blocked' then return wait() end
if op == 'begin' then
  local w = wait()
  if w > 0 then return w end
  fail()
  return 0
end
if op == 'fail' then fail() return 0 end
if op == 'succeeded' then redis.call('DEL', KEYS[1]) give_back(KEYS[2]) return 0 end
if op == 'release' then give_back(KEYS[1]) give_back(KEYS[2]) return 0 end
return redis.error_reply('unknown operation')
";

/// How long a reaper holds the expired sessions it took before another may retry them.
const SWEEP_LEASE: Duration = Duration::from_secs(300);

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Milliseconds from `now` to `until`, at least 1 (Redis refuses 0, and a key whose time
/// has come should go at once).
fn ms_until(until: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (unix_ms(until) - unix_ms(now)).max(1)
}

/// When a session ends if not used again.
fn session_deadline(tgt: &TicketGrantingTicket) -> OffsetDateTime {
    let hard = tgt.expiration.hard_deadline(tgt.authenticated_at);
    match tgt.expiration.idle {
        Some(idle) => hard.min(tgt.last_used_at + idle),
        None => hard,
    }
}

impl RedisRegistry {
    /// Checks the options; connects lazily, on first use.
    pub fn new(
        options: &RedisOptions,
        key: &[u8; 32],
        expiry_margin: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        use redis::IntoConnectionInfo as _;
        let mut info = options
            .url
            .expose()
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("tickets.redis.url: {e}"))?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(user) = &options.username {
            redis_settings = redis_settings.set_username(user);
        }
        if let Some(password) = &options.password {
            redis_settings = redis_settings.set_password(password.expose());
        }
        info = info.set_redis_settings(redis_settings);
        let client = match &options.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
        .map_err(|e| format!("tickets.redis: {e}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout));
        Ok(Self {
            pool: Pool {
                client,
                config,
                slots: (0..options.pool_size.max(1))
                    .map(|_| tokio::sync::Mutex::new(Slot::default()))
                    .collect(),
                failed_at: std::sync::Mutex::new(None),
                next: AtomicUsize::new(0),
                command_timeout: options.command_timeout,
                deadline: options.connect_timeout + options.command_timeout,
            },
            sealer: TicketSealer::new(key, options.encrypt),
            prefix: options.key_prefix.clone(),
            expiry_margin,
            clock,
            key_mismatch: std::sync::atomic::AtomicBool::new(false),
            scripts: Arc::new(Scripts {
                add_ticket: Script::new(&format!("{LIVE_SESSION}{ADD_TICKET}")),
                add_pgt: Script::new(&format!("{LIVE_SESSION}{ADD_PGT}")),
                redeem: Script::new(REDEEM),
                remove_tgt: Script::new(REMOVE_TGT),
                drain_expired: Script::new(DRAIN_EXPIRED),
                claim: Script::new(CLAIM),
                attempts: Script::new(ATTEMPTS),
            }),
        })
    }

    fn margin_ms(&self) -> i64 {
        i64::try_from(self.expiry_margin.as_millis()).unwrap_or(i64::MAX)
    }

    fn ticket_key(&self, hash: &str) -> String {
        format!("{}t:{hash}", self.prefix)
    }

    fn history_key(&self, hash: &str) -> String {
        format!("{}h:{hash}", self.prefix)
    }

    fn pgts_key(&self, hash: &str) -> String {
        format!("{}p:{hash}", self.prefix)
    }

    fn expiry_key(&self) -> String {
        format!("{}expiry", self.prefix)
    }

    /// One command, built afresh for each attempt; sent again after a broken connection,
    /// so only for commands whose repetition answers the same.
    async fn command<T: redis::FromRedisValue>(
        &self,
        build: impl Fn() -> redis::Cmd,
    ) -> Result<T, RegistryError> {
        self.pool
            .run(|mut c| {
                let cmd = build();
                async move { cmd.query_async(&mut c).await }
            })
            .await
    }

    /// One of the scripts, on `keys` and `args`; `repeatable` as for [`Pool::run`].
    async fn script<T: redis::FromRedisValue>(
        &self,
        pick: fn(&Scripts) -> &Script,
        keys: &[String],
        args: &[String],
        repeatable: bool,
    ) -> Result<T, RegistryError> {
        let call = |mut c: MultiplexedConnection| {
            let scripts = self.scripts.clone();
            async move {
                pick(&scripts)
                    .key(keys)
                    .arg(args)
                    .invoke_async(&mut c)
                    .await
            }
        };
        if repeatable {
            self.pool.run(call).await
        } else {
            self.pool.run_once(call).await
        }
    }

    fn seal<T: serde::Serialize>(&self, value: &T, kind: &str, hash: &str) -> String {
        #[allow(clippy::expect_used)] // plain structs of strings and numbers
        let json = serde_json::to_vec(value).expect("tickets serialize");
        self.sealer.seal(&json, &format!("{kind}:{hash}"))
    }

    /// `None` for a payload this node cannot open: sealed with another key, tampered with,
    /// or written by an incompatible version. Such an entry is treated as absent.
    fn open<T: serde::de::DeserializeOwned>(
        &self,
        stored: &str,
        kind: &str,
        hash: &str,
    ) -> Option<T> {
        let value = self
            .sealer
            .open(stored, &format!("{kind}:{hash}"))
            .and_then(|json| serde_json::from_slice(&json).ok());
        if value.is_none() {
            tracing::warn!(
                kind,
                "ticket registry: an entry in redis cannot be opened with this node's registry key (another key, or tampered with); treated as absent"
            );
        }
        value
    }

    /// The session stored under `hash`, live or not, with its last use applied.
    async fn load_tgt(&self, hash: &str) -> Result<Loaded, RegistryError> {
        let key = self.ticket_key(hash);
        let (kind, data, used, tag): Fields4 = self
            .command(|| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&key).arg(&["k", "d", "u", "t"][..]);
                cmd
            })
            .await?;
        if kind.as_deref() != Some(TGT) {
            return Ok(Loaded::Absent);
        }
        let Some(mut tgt) = data.and_then(|d| self.open::<TicketGrantingTicket>(&d, TGT, hash))
        else {
            return Ok(Loaded::Unreadable);
        };
        self.apply_last_use(&mut tgt, hash, used.as_deref(), tag.as_deref());
        Ok(Loaded::Tgt(tgt))
    }

    async fn live_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let Loaded::Tgt(tgt) = self.load_tgt(&self.sealer.hash_id(id)).await? else {
            return Ok(None);
        };
        // The id inside the payload must be the one asked for: the hash binds them, this
        // makes it explicit.
        Ok((tgt.id == id && !tgt.is_expired(now)).then_some(tgt))
    }

    /// `u`, a session's last use, is stored in clear so that scripts can slide it; its
    /// tag proves this node's key wrote it. Without a valid tag the sealed value (the
    /// login time) stands: an edited `u` cannot keep a session alive.
    fn apply_last_use(
        &self,
        tgt: &mut TicketGrantingTicket,
        hash: &str,
        used: Option<&str>,
        tag: Option<&str>,
    ) {
        let (Some(used), Some(tag)) = (used, tag) else {
            return;
        };
        if !self.sealer.verify_tag(&format!("u:{hash}"), used, tag) {
            tracing::warn!(
                "ticket registry: a session's last-use time in redis carries no valid tag; ignored"
            );
            return;
        }
        if let Some(at) = used.parse::<i64>().ok().and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        }) && at > tgt.last_used_at
        {
            tgt.last_used_at = at;
        }
    }

    fn last_use_tag(&self, hash: &str, used_ms: i64) -> String {
        self.sealer.tag(&format!("u:{hash}"), &used_ms.to_string())
    }

    /// Whether the key check value in Redis is this node's, without recording one if there
    /// is none (`None`): for `check-config --probe`, which must not claim an empty Redis
    /// for a key that may be the wrong one.
    pub async fn key_matches(&self) -> Result<Option<bool>, RegistryError> {
        let name = format!("{}keycheck", self.prefix);
        let held: Option<String> = self
            .command(|| {
                let mut cmd = redis::cmd("GET");
                cmd.arg(&name);
                cmd
            })
            .await?;
        Ok(held.map(|h| h == self.sealer.tag("keycheck", "cas-server registry key")))
    }

    /// Redis' `maxmemory-policy`, if this user may read it: anything but `noeviction`
    /// lets Redis drop live sessions, used login forms and logout histories under memory
    /// pressure. For `check-config --probe`.
    pub async fn eviction_policy(&self) -> Option<String> {
        let reply: Vec<String> = self
            .command(|| {
                let mut cmd = redis::cmd("CONFIG");
                cmd.arg("GET").arg("maxmemory-policy");
                cmd
            })
            .await
            .ok()?;
        reply.get(1).cloned()
    }

    /// Sessions due at `now`, leased to this node for [`SWEEP_LEASE`].
    async fn lease_expired(&self, now: OffsetDateTime) -> Result<Vec<String>, RegistryError> {
        let args = [
            unix_ms(now).to_string(),
            SWEEP_BATCH.to_string(),
            unix_ms(now + SWEEP_LEASE).to_string(),
        ];
        self.script(|s| &s.drain_expired, &[self.expiry_key()], &args, false)
            .await
    }

    /// One leased session: put back if it was used meanwhile (on another node, say), left
    /// alone if this node cannot read it, else removed with all it holds.
    async fn sweep_one(
        &self,
        hash: &str,
        now: OffsetDateTime,
        swept: &mut Swept,
    ) -> Result<(), RegistryError> {
        match self.load_tgt(hash).await? {
            Loaded::Tgt(tgt) if !tgt.is_expired(now) => {
                let score = unix_ms(session_deadline(&tgt));
                let expiry = self.expiry_key();
                self.command(|| {
                    let mut cmd = redis::cmd("ZADD");
                    cmd.arg(&expiry).arg(score).arg(hash);
                    cmd
                })
                .await
            }
            Loaded::Unreadable => Ok(()),
            Loaded::Tgt(_) | Loaded::Absent => {
                if let Some(tgt) = self.remove_by_hash(hash).await? {
                    swept.freed += 1 + tgt.issued.len();
                    swept.expired_sessions.push(tgt);
                }
                Ok(())
            }
        }
    }

    /// Whether the entries in Redis were written with this node's registry key. The first
    /// node to ask records a keyed check value; a node whose key differs is told, and says
    /// so in its log and on `/health`, instead of silently seeing no session.
    async fn key_check(&self) -> Result<(), RegistryError> {
        let name = format!("{}keycheck", self.prefix);
        let ours = self.sealer.tag("keycheck", "cas-server registry key");
        let args = [ours, KEY_CHECK_TTL_MS.to_string()];
        let matches: i64 = self
            .script(|s| &s.claim, std::slice::from_ref(&name), &args, true)
            .await?;
        if matches == 1 {
            self.key_mismatch.store(false, Ordering::Relaxed);
            return Ok(());
        }
        if !self.key_mismatch.swap(true, Ordering::Relaxed) {
            tracing::error!(
                prefix = %self.prefix,
                check_key = %name,
                "ticket registry: the tickets in redis were written with another tickets.key; this node cannot read them. Every node needs the same key; if the key was changed on purpose on every node, delete the check key in redis"
            );
        }
        Err(unavailable(
            "its tickets were written with another tickets.key",
        ))
    }

    /// Removes the session stored under `hash` with everything it issued.
    async fn remove_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let keys = [
            self.ticket_key(hash),
            self.history_key(hash),
            self.pgts_key(hash),
            self.expiry_key(),
        ];
        let args = [hash.to_owned(), format!("{}t:", self.prefix)];
        let reply: Option<Vec<String>> =
            self.script(|s| &s.remove_tgt, &keys, &args, false).await?;
        let Some(mut reply) = reply.filter(|r| r.len() >= 3) else {
            return Ok(None);
        };
        let history = reply.split_off(3);
        let Some(mut tgt) = self.open::<TicketGrantingTicket>(&reply[0], TGT, hash) else {
            return Ok(None);
        };
        self.apply_last_use(&mut tgt, hash, Some(&reply[1]), Some(&reply[2]));
        tgt.issued = history
            .iter()
            .filter_map(|entry| {
                let (_, sealed) = entry.split_once('.')?;
                self.open::<IssuedTicket>(sealed, "issued", hash)
            })
            .collect();
        Ok(Some(tgt))
    }
}

/// What is stored under a session's key.
enum Loaded {
    Absent,
    /// There, but not openable with this node's key (another key, or tampered with).
    Unreadable,
    Tgt(TicketGrantingTicket),
}

type Fields4 = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

#[async_trait]
impl TicketRegistry for RedisRegistry {
    async fn add_tgt(&self, tgt: TicketGrantingTicket) -> Result<(), RegistryError> {
        let hash = self.sealer.hash_id(&tgt.id);
        // Created `now` by the caller: its last use is its creation.
        let now = tgt.last_used_at;
        let deadline = session_deadline(&tgt);
        let ttl = ms_until(deadline + self.expiry_margin, now);
        let sealed = self.seal(&tgt, TGT, &hash);
        let (key, expiry) = (self.ticket_key(&hash), self.expiry_key());
        let used = unix_ms(tgt.last_used_at);
        let hard = unix_ms(tgt.expiration.hard_deadline(tgt.authenticated_at));
        let idle = tgt
            .expiration
            .idle
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let score = unix_ms(deadline);
        let tag = self.last_use_tag(&hash, used);
        self.pool
            .run(|mut c| {
                let (key, expiry, sealed, hash, tag) = (
                    key.clone(),
                    expiry.clone(),
                    sealed.clone(),
                    hash.clone(),
                    tag.clone(),
                );
                async move {
                    redis::pipe()
                        .atomic()
                        .hset_multiple(&key, &[("k", TGT), ("d", &sealed), ("t", &tag)])
                        .ignore()
                        .hset_multiple(&key, &[("u", used), ("a", hard), ("i", idle)])
                        .ignore()
                        .pexpire(&key, ttl)
                        .ignore()
                        .zadd(&expiry, &hash, score)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                }
            })
            .await
    }

    async fn get_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<TicketGrantingTicket>>, RegistryError> {
        Ok(self.live_tgt(id, now).await?.map(Arc::new))
    }

    async fn add_service_ticket(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let tgt_hash = self.sealer.hash_id(&ticket.tgt_id);
        let st_hash = self.sealer.hash_id(&ticket.id);
        let entry = format!(
            "{st_hash}.{}",
            self.seal(
                &IssuedTicket {
                    ticket_id: ticket.id.clone(),
                    service: ticket.service.clone(),
                    logout,
                },
                "issued",
                &tgt_hash,
            )
        );
        let sealed = self.seal(&ticket, ST, &st_hash);
        // Kept a little past its expiry, so a late validation is told "expired", as in
        // memory, rather than "not recognised".
        let st_ttl = ms_until(
            ticket.expiration.hard_deadline(ticket.created_at) + Duration::from_secs(60),
            now,
        );
        let keys = [
            self.ticket_key(&tgt_hash),
            self.history_key(&tgt_hash),
            self.pgts_key(&tgt_hash),
            self.expiry_key(),
            self.ticket_key(&st_hash),
        ];
        let slide = if ticket.grant == Grant::Service {
            "1"
        } else {
            "0"
        };
        let tag = self.last_use_tag(&tgt_hash, unix_ms(now));
        let args = [
            unix_ms(now).to_string(),
            slide.to_owned(),
            self.margin_ms().to_string(),
            tgt_hash,
            entry,
            sealed,
            st_ttl.to_string(),
            MAX_ISSUED.to_string(),
            tag,
            format!("{}t:", self.prefix),
        ];
        let added: i64 = self.script(|s| &s.add_ticket, &keys, &args, true).await?;
        Ok(added == 1)
    }

    async fn add_pgt(
        &self,
        pgt: ProxyGrantingTicket,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let tgt_hash = self.sealer.hash_id(&pgt.tgt_id);
        let pgt_hash = self.sealer.hash_id(&pgt.id);
        let sealed = self.seal(&pgt, PGT, &pgt_hash);
        let keys = [
            self.ticket_key(&tgt_hash),
            self.pgts_key(&tgt_hash),
            self.ticket_key(&pgt_hash),
        ];
        let args = [
            unix_ms(now).to_string(),
            sealed,
            pgt_hash,
            MAX_PGTS.to_string(),
            format!("{}t:", self.prefix),
        ];
        let added: i64 = self.script(|s| &s.add_pgt, &keys, &args, true).await?;
        Ok(added == 1)
    }

    async fn get_pgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError> {
        let hash = self.sealer.hash_id(id);
        let key = self.ticket_key(&hash);
        let (kind, data): (Option<String>, Option<String>) = self
            .command(|| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&key).arg("k").arg("d");
                cmd
            })
            .await?;
        if kind.as_deref() != Some(PGT) {
            return Ok(None);
        }
        let Some(pgt) = data
            .and_then(|d| self.open::<ProxyGrantingTicket>(&d, PGT, &hash))
            .filter(|p| p.id == id)
        else {
            return Ok(None);
        };
        Ok(self
            .live_tgt(&pgt.tgt_id, now)
            .await?
            .is_some()
            .then_some(pgt))
    }

    async fn remove_pgt(&self, id: &str) -> Result<(), RegistryError> {
        let hash = self.sealer.hash_id(id);
        let key = self.ticket_key(&hash);
        let data: Option<String> = self
            .command(|| {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(&key).arg("d");
                cmd
            })
            .await?;
        let list = data
            .and_then(|d| self.open::<ProxyGrantingTicket>(&d, PGT, &hash))
            .map(|pgt| self.pgts_key(&self.sealer.hash_id(&pgt.tgt_id)));
        self.pool
            .run(|mut c| {
                let (key, list, hash) = (key.clone(), list.clone(), hash.clone());
                async move {
                    let mut pipe = redis::pipe();
                    pipe.del(&key).ignore();
                    if let Some(list) = &list {
                        pipe.lrem(list, 0, &hash).ignore();
                    }
                    pipe.query_async::<()>(&mut c).await
                }
            })
            .await
    }

    async fn redeem(&self, id: &str, now: OffsetDateTime) -> Result<Redeemed, RegistryError> {
        let hash = self.sealer.hash_id(id);
        let key = self.ticket_key(&hash);
        let reply: Option<Vec<String>> = self.script(|s| &s.redeem, &[key], &[], false).await?;
        let Some(reply) = reply else {
            return Ok(Redeemed::Missing);
        };
        match reply.as_slice() {
            [kind, sealed] if kind == ST => {
                let Some(st) = self
                    .open::<ServiceTicket>(sealed, ST, &hash)
                    .filter(|st| st.id == id)
                else {
                    return Ok(Redeemed::Missing);
                };
                Ok(if st.is_expired(now) {
                    Redeemed::Expired(st)
                } else {
                    Redeemed::Valid(st)
                })
            }
            _ => Ok(Redeemed::WrongKind),
        }
    }

    async fn remove_tgt(&self, id: &str) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let tgt = self.remove_by_hash(&self.sealer.hash_id(id)).await?;
        Ok(tgt.filter(|t| t.id == id))
    }

    async fn claim_once(&self, key: &str, until: OffsetDateTime) -> Result<bool, RegistryError> {
        let name = format!("{}c:{}", self.prefix, self.sealer.hash_id(key));
        // Relative to this node's clock, so Redis' own clock does not matter.
        let ttl = ms_until(until, self.clock.now());
        let token = crate::crypto::random_base62(22);
        let claimed: i64 = self
            .script(|s| &s.claim, &[name], &[token, ttl.to_string()], true)
            .await?;
        Ok(claimed == 1)
    }

    /// Redis frees expired keys itself; the sweep drains the expiry index, removing what a
    /// dead session still holds and handing it back for single logout.
    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError> {
        // A node with another key would find every session unreadable: it sweeps nothing.
        self.key_check().await?;
        let mut swept = Swept::default();
        for _ in 0..SWEEP_BATCHES {
            let due = self.lease_expired(now).await?;
            let batch = due.len();
            for hash in due {
                if let Err(e) = self.sweep_one(&hash, now, &mut swept).await {
                    // What was removed so far is still handed back (single logout); the
                    // rest of the lease comes back to a later sweep.
                    tracing::warn!(error = %e, "ticket registry: sweep interrupted");
                    return Ok(swept);
                }
            }
            if batch < SWEEP_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        Ok(swept)
    }

    /// Counts stored tickets with SCAN, a batch per command: for benchmarks and tests,
    /// never on a request path.
    async fn count(&self) -> Result<usize, RegistryError> {
        let pattern = format!("{}t:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut total = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .command(|| {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000);
                    cmd
                })
                .await?;
            total += keys.len();
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }

    fn store(&self) -> &'static str {
        "redis"
    }

    /// Redis answers, and holds this node's key (which it cannot read otherwise).
    async fn check(&self) -> Result<(), RegistryError> {
        self.key_check().await
    }
}

/// Counters under `a:<keyed hash>`: neither addresses nor user names in clear. Every
/// operation is sent once: repeating one would count an attempt twice.
#[async_trait]
impl AttemptStore for RedisRegistry {
    async fn attempts(
        &self,
        op: AttemptOp,
        per_user: &str,
        per_address: &str,
        thresholds: (u32, u32),
        window: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<Duration>, RegistryError> {
        let key = |name: &str| {
            format!(
                "{}a:{}",
                self.prefix,
                self.sealer.hash_id(&format!("attempts\0{name}"))
            )
        };
        let op = match op {
            AttemptOp::Blocked => "blocked",
            AttemptOp::Begin => "begin",
            AttemptOp::Fail => "fail",
            AttemptOp::Succeeded => "succeeded",
            AttemptOp::Release => "release",
        };
        let args = [
            op.to_owned(),
            thresholds.0.to_string(),
            thresholds.1.to_string(),
            window.as_millis().to_string(),
            unix_ms(now).to_string(),
        ];
        let keys = [
            key(&format!("user\0{per_user}")),
            key(&format!("addr\0{per_address}")),
        ];
        let wait_ms: i64 = self.script(|s| &s.attempts, &keys, &args, false).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }
}
