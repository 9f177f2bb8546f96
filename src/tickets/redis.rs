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
    Grant, IssuedTicket, LogoutTarget, ProxyGrantingTicket, Redeemed, RegistryError, ServiceTicket,
    Swept, TicketGrantingTicket, TicketRegistry, model::MAX_ISSUED,
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
    next: AtomicUsize,
    command_timeout: Duration,
    /// The most any operation may take: one connection attempt and one command.
    deadline: Duration,
}

#[derive(Default)]
struct Slot {
    connection: Option<MultiplexedConnection>,
    failed_at: Option<Instant>,
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
        if slot
            .failed_at
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
                if slot.failed_at.take().is_some() {
                    tracing::info!("ticket registry: connected to redis again");
                }
                slot.connection = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                if slot.failed_at.is_none() {
                    tracing::warn!(error = %e, "ticket registry: cannot connect to redis");
                }
                slot.failed_at = Some(Instant::now());
                Err(unavailable(e))
            }
        }
    }

    async fn forget(&self, index: usize) {
        let mut slot = self.slots[index].lock().await;
        slot.connection = None;
    }

    /// Runs `command` on a pooled connection within the command timeout. A connection
    /// that failed is dropped and the command tried once more on a fresh one, so a Redis
    /// restart costs no request; a script retried this way is safe (a redeemed ticket
    /// answers `Missing` the second time, never `Valid` twice).
    async fn run<T, F, Fut>(&self, command: F) -> Result<T, RegistryError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // However the attempts go, a request waits at most one connection and one command.
        tokio::time::timeout(self.deadline, self.attempt(command))
            .await
            .unwrap_or_else(|_| Err(unavailable("no answer within the timeouts")))
    }

    async fn attempt<T, F, Fut>(&self, command: F) -> Result<T, RegistryError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut last = None;
        for _attempt in 0..2 {
            let connection = self.connection(index).await?;
            match tokio::time::timeout(self.command_timeout, command(connection)).await {
                Ok(Ok(value)) => return Ok(value),
                // A connection that broke (Redis restarted, say): once more on a new one.
                Ok(Err(e)) if e.is_connection_dropped() || e.is_connection_refusal() => {
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
}

/// A session is live at `now` (ARGV[1]) if its hash holds kind `tgt`, `now` is before its
/// hard deadline `a` and, with an idle limit `i`, before its last use `u` plus `i`: the
/// policy check of [`TicketGrantingTicket::is_expired`], on the plain fields stored beside
/// the sealed payload, so that checking and adding happen in one atomic step.
const LIVE_SESSION: &str = r"
local s = redis.call('HMGET', KEYS[1], 'k', 'u', 'a', 'i')
local now = tonumber(ARGV[1])
if s[1] ~= 'tgt' then return 0 end
local u, a, i = tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
if now >= a or (i > 0 and now >= u + i) then return 0 end
";

/// KEYS: session, history, PGT list, expiry index, new ticket.
/// ARGV: now (ms), slide ("1" or "0"), margin (ms), session hash, history entry, sealed
/// ticket, ticket TTL (ms), history bound.
const ADD_TICKET: &str = r"
if ARGV[2] == '1' and now > u then
  redis.call('HSET', KEYS[1], 'u', ARGV[1])
  local deadline = a
  if i > 0 and now + i < a then deadline = now + i end
  local ttl = deadline - now + tonumber(ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('ZADD', KEYS[4], deadline, ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[8]), -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('HSET', KEYS[5], 'k', 'st', 'd', ARGV[6])
redis.call('PEXPIRE', KEYS[5], ARGV[7])
return 1
";

/// KEYS: session, PGT list, new PGT. ARGV: now (ms), margin (ms), sealed PGT, PGT hash,
/// bound, ticket key prefix. A PGT lives exactly as long as its session, so its TTL is
/// the session's hard deadline.
const ADD_PGT: &str = r"
redis.call('HSET', KEYS[3], 'k', 'pgt', 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[3], a - now + tonumber(ARGV[2]))
redis.call('RPUSH', KEYS[2], ARGV[4])
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[5]) do
  redis.call('DEL', ARGV[6] .. redis.call('LPOP', KEYS[2]))
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
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
/// {sealed session, last use, history...}.
const REMOVE_TGT: &str = r"
local v = redis.call('HMGET', KEYS[1], 'k', 'd', 'u')
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
local out = {v[2], v[3] or '0'}
for _, entry in ipairs(issued) do out[#out + 1] = entry end
return out
";

/// KEYS: expiry index. ARGV: now (ms), batch. Takes due sessions out of the index, so
/// that of several nodes' reapers exactly one handles each.
const DRAIN_EXPIRED: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
";

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
                next: AtomicUsize::new(0),
                command_timeout: options.command_timeout,
                deadline: options.connect_timeout + options.command_timeout,
            },
            sealer: TicketSealer::new(key, options.encrypt),
            prefix: options.key_prefix.clone(),
            expiry_margin,
            clock,
            scripts: Arc::new(Scripts {
                add_ticket: Script::new(&format!("{LIVE_SESSION}{ADD_TICKET}")),
                add_pgt: Script::new(&format!("{LIVE_SESSION}{ADD_PGT}")),
                redeem: Script::new(REDEEM),
                remove_tgt: Script::new(REMOVE_TGT),
                drain_expired: Script::new(DRAIN_EXPIRED),
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
    async fn load_tgt(&self, hash: &str) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let key = self.ticket_key(hash);
        let (kind, data, used): (Option<String>, Option<String>, Option<i64>) = self
            .pool
            .run(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("k")
                        .arg("d")
                        .arg("u")
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        if kind.as_deref() != Some(TGT) {
            return Ok(None);
        }
        let Some(mut tgt) = data.and_then(|d| self.open::<TicketGrantingTicket>(&d, TGT, hash))
        else {
            return Ok(None);
        };
        apply_last_use(&mut tgt, used);
        Ok(Some(tgt))
    }

    async fn live_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let tgt = self.load_tgt(&self.sealer.hash_id(id)).await?;
        // The id inside the payload must be the one asked for: the hash binds them, this
        // makes it explicit.
        Ok(tgt.filter(|t| t.id == id && !t.is_expired(now)))
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
        let ticket_prefix = format!("{}t:", self.prefix);
        let scripts = self.scripts.clone();
        let reply: Option<Vec<String>> = self
            .pool
            .run(|mut c| {
                let scripts = scripts.clone();
                let (keys, hash, ticket_prefix) =
                    (keys.clone(), hash.to_owned(), ticket_prefix.clone());
                async move {
                    scripts
                        .remove_tgt
                        .key(&keys[..])
                        .arg(hash)
                        .arg(ticket_prefix)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        let Some(mut reply) = reply.filter(|r| r.len() >= 2) else {
            return Ok(None);
        };
        let history = reply.split_off(2);
        let Some(mut tgt) = self.open::<TicketGrantingTicket>(&reply[0], TGT, hash) else {
            return Ok(None);
        };
        apply_last_use(&mut tgt, reply[1].parse().ok());
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

/// `u` is the authority on a session's last use: the sealed copy is from its creation.
fn apply_last_use(tgt: &mut TicketGrantingTicket, used_ms: Option<i64>) {
    if let Some(at) = used_ms
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        && at > tgt.last_used_at
    {
        tgt.last_used_at = at;
    }
}

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
        self.pool
            .run(|mut c| {
                let (key, expiry, sealed, hash) =
                    (key.clone(), expiry.clone(), sealed.clone(), hash.clone());
                async move {
                    redis::pipe()
                        .atomic()
                        .hset_multiple(&key, &[("k", TGT), ("d", sealed.as_str())])
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
        let args = [
            unix_ms(now).to_string(),
            slide.to_owned(),
            self.margin_ms().to_string(),
            tgt_hash,
            entry,
            sealed,
            st_ttl.to_string(),
            MAX_ISSUED.to_string(),
        ];
        let scripts = self.scripts.clone();
        let added: i64 = self
            .pool
            .run(|mut c| {
                let (scripts, keys, args) = (scripts.clone(), keys.clone(), args.clone());
                async move {
                    scripts
                        .add_ticket
                        .key(&keys[..])
                        .arg(&args[..])
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
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
            self.margin_ms().to_string(),
            sealed,
            pgt_hash,
            MAX_PGTS.to_string(),
            format!("{}t:", self.prefix),
        ];
        let scripts = self.scripts.clone();
        let added: i64 = self
            .pool
            .run(|mut c| {
                let (scripts, keys, args) = (scripts.clone(), keys.clone(), args.clone());
                async move {
                    scripts
                        .add_pgt
                        .key(&keys[..])
                        .arg(&args[..])
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
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
            .pool
            .run(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("k")
                        .arg("d")
                        .query_async(&mut c)
                        .await
                }
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
            .pool
            .run(|mut c| {
                let key = key.clone();
                async move {
                    redis::cmd("HGET")
                        .arg(&key)
                        .arg("d")
                        .query_async(&mut c)
                        .await
                }
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
        let scripts = self.scripts.clone();
        let reply: Option<Vec<String>> = self
            .pool
            .run(|mut c| {
                let (scripts, key) = (scripts.clone(), key.clone());
                async move { scripts.redeem.key(&key).invoke_async(&mut c).await }
            })
            .await?;
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
        let set: Option<String> = self
            .pool
            .run(|mut c| {
                let name = name.clone();
                async move {
                    redis::cmd("SET")
                        .arg(&name)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(set.is_some())
    }

    /// Redis frees expired keys itself; the sweep drains the expiry index, removing what a
    /// dead session still holds and handing it back for single logout.
    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError> {
        let mut swept = Swept::default();
        let expiry = self.expiry_key();
        for _ in 0..SWEEP_BATCHES {
            let scripts = self.scripts.clone();
            let due: Vec<String> = self
                .pool
                .run(|mut c| {
                    let (scripts, expiry) = (scripts.clone(), expiry.clone());
                    async move {
                        scripts
                            .drain_expired
                            .key(&expiry)
                            .arg(unix_ms(now))
                            .arg(SWEEP_BATCH)
                            .invoke_async(&mut c)
                            .await
                    }
                })
                .await?;
            let batch = due.len();
            for hash in due {
                // Used since it was indexed (by another node, say): put it back.
                if let Some(tgt) = self.load_tgt(&hash).await?
                    && !tgt.is_expired(now)
                {
                    let score = unix_ms(session_deadline(&tgt));
                    let expiry = expiry.clone();
                    self.pool
                        .run(|mut c| {
                            let (expiry, hash) = (expiry.clone(), hash.clone());
                            async move {
                                redis::cmd("ZADD")
                                    .arg(&expiry)
                                    .arg(score)
                                    .arg(&hash)
                                    .query_async::<()>(&mut c)
                                    .await
                            }
                        })
                        .await?;
                    continue;
                }
                if let Some(tgt) = self.remove_by_hash(&hash).await? {
                    swept.freed += 1 + tgt.issued.len();
                    swept.expired_sessions.push(tgt);
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
                .pool
                .run(|mut c| {
                    let pattern = pattern.clone();
                    async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut c)
                            .await
                    }
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

    async fn check(&self) -> Result<(), RegistryError> {
        self.pool
            .run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }
}
