//! A ticket registry in Redis (or Valkey), shared by every node of a cluster.
//!
//! Layout, under a configurable prefix (`cas:` by default), every id a keyed hash
//! ([`TicketSealer::hash_id`]) and every payload sealed with the registry key:
//! - `t:<hash>`: a hash `{k: kind, d: sealed ticket}`; a session also has its last use `u`,
//!   hard deadline `a` (Unix milliseconds) and idle limit `i` (milliseconds, 0 for none)
//!   in clear, so that a script can check and slide it without the key.
//! - `h:<hash>`: a session's ticket history (single logout), a list of
//!   `<ticket hash>:<destination tag>.<sealed IssuedTicket>`, newest last, at most
//!   [`MAX_ISSUED`] (see the `ADD_TICKET` script for what a full history lets go).
//! - `p:<hash>`: a session's proxy-granting tickets, a list of their hashes.
//! - `c:<hash>`: a claimed single-use key (login forms).
//! - `t:<hash>` with kind `pl`: a login waiting for the browser (see
//!   `protocol::login`), taken back once by a script.
//! - `a:<hash>`: a failed-login counter (per address and name, and per address), so the
//!   throttle's thresholds hold for the cluster.
//! - `expiry`: a sorted set of sessions by deadline, which the reaper drains (single logout
//!   on expiry, and the removal of whatever a session still holds).
//! - `keycheck`: a keyed value recorded by the first node, by which a node configured with
//!   another registry key finds out and reports it.
//! - `outbox`, `outbox:due`: removals by logout whose single logout is not yet known to be
//!   taken care of (see `REMOVE_TGT`).
//!
//! On Redis Cluster every key but `keycheck` and `health` goes under a hash tag after the
//! prefix, `cas:{x}t:<hash>`, so that each script touches one slot: for a session and
//! everything it holds (its history, PGTs, tickets, its entries in the expiry index and
//! the outbox) the tag is the session's shard ([`crate::tickets::shard_of`]), which every
//! ticket id carries, so a ticket leads to its slot without a lookup; for the rest (login
//! forms, pending logins, the throttle's counters) it is the first character of the
//! keyed hash. The expiry index and the outbox are thus one per shard, 62 in all, spread
//! over the primaries like the sessions. On a single Redis (or Sentinel) there is no tag,
//! and one of each.
//!
//! The connections are in [`pool`], the Lua scripts in [`scripts`].
//!
//! Every key carries a Redis TTL derived from its policy (a session's slides with use, never
//! past its hard limit), so Redis frees memory by itself; the policy is still checked on
//! every read, exactly as in memory. Steps that must not interleave across nodes (redeem a
//! ticket, add one under a live session, destroy a session with all it holds) are one Lua
//! script each, which Redis runs atomically.

mod attempts;
mod checks;
mod connect;
mod issue;
mod pool;
mod scripts;
mod sentinel;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use self::connect::{client, with_credentials};
use self::pool::{Connection, Pool, Target};
use self::scripts::{Lua, Scripts};
use self::sentinel::Sentinels;
use super::model::MAX_PGTS;
use super::sealing::TicketSealer;
use super::{
    Added, Grant, IssuedTicket, LogoutTarget, ProxyGrantingTicket, Redeemed, RedisSetupError,
    RegistryError, ServiceTicket, Swept, TicketGrantingTicket, TicketRegistry, from_unix_ms,
    model::MAX_ISSUED, unix_ms,
};
use crate::clock::Clock;
use crate::config::RedisOptions;

/// Sessions drained from the expiry index per script call, and calls per sweep.
const SWEEP_BATCH: usize = 500;
const SWEEP_BATCHES: usize = 200;

/// Kinds as stored in the `k` field.
const TGT: &str = "tgt";
const ST: &str = "st";
const PGT: &str = "pgt";
/// A login waiting for the browser; Redis expires it.
const PENDING: &str = "pl";

pub struct RedisRegistry {
    pool: Pool,
    sealer: TicketSealer,
    prefix: String,
    /// On Redis Cluster: keys carry hash tags (see the module's documentation).
    cluster: bool,
    /// How long a session's keys outlive its deadline, so the reaper can still tell its
    /// services (single logout on expiry); zero otherwise. Reads check the policy, so a
    /// session is never used in this margin.
    expiry_margin: Duration,
    scripts: Arc<Scripts>,
    clock: Arc<dyn Clock>,
    /// Set while the key check fails, so the error is logged once, not at every probe.
    key_mismatch: std::sync::atomic::AtomicBool,
    /// `min_replicas_acks` and the wait for them (ms), when on.
    replicas: Option<(i64, i64)>,
    /// Since when the key check value has been seen absent by this node, which may not
    /// record it (see `key_check`).
    unclaimed_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// When `check` last succeeded.
    checked_ok_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The key check value is rewritten by the first node to ask after it expires (ten years).
const KEY_CHECK_TTL_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

/// How long a node that found another key in Redis waits, once the check value is gone,
/// before it records its own (see `key_check`).
const UNCLAIMED_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a reaper holds the expired sessions it took before another may retry them.
const SWEEP_LEASE: Duration = Duration::from_secs(300);

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
    ) -> Result<Self, RedisSetupError> {
        use redis::IntoConnectionInfo as _;
        let info = options
            .url
            .expose()
            .as_str()
            .into_connection_info()
            .map_err(RedisSetupError::Url)?;
        let redis_settings = with_credentials(
            info.redis_settings().clone(),
            options.username.as_deref(),
            options.password.as_ref(),
        );
        let target = match &options.sentinel {
            None if !options.cluster_nodes.is_empty() => Target::Cluster(Box::new(
                connect::cluster(&info, &options.cluster_nodes, redis_settings, options)?,
            )),
            Some(sentinel) => {
                let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
                Target::Sentinel(Sentinels::new(
                    sentinel,
                    redis_settings,
                    tls,
                    options.ca_pem.clone(),
                )?)
            }
            None => Target::Direct(client(
                info.set_redis_settings(redis_settings),
                options.ca_pem.as_deref(),
            )?),
        };
        Ok(Self {
            pool: Pool::new(
                target,
                options.pool_size,
                options.connect_timeout,
                options.command_timeout,
            ),
            sealer: TicketSealer::new(key, options.encrypt),
            prefix: options.key_prefix.clone(),
            cluster: !options.cluster_nodes.is_empty(),
            expiry_margin,
            clock,
            key_mismatch: std::sync::atomic::AtomicBool::new(false),
            replicas: (options.min_replicas_acks > 0).then(|| {
                (
                    i64::try_from(options.min_replicas_acks).unwrap_or(i64::MAX),
                    i64::try_from(options.replica_ack_timeout.as_millis()).unwrap_or(i64::MAX),
                )
            }),
            unclaimed_since: std::sync::Mutex::new(None),
            checked_ok_at: std::sync::Mutex::new(None),
            scripts: Arc::new(Scripts::new()),
        })
    }

    fn margin_ms(&self) -> i64 {
        i64::try_from(self.expiry_margin.as_millis()).unwrap_or(i64::MAX)
    }

    /// The start of every key of `shard`: the prefix, and on a cluster the shard's hash
    /// tag.
    fn space(&self, shard: char) -> String {
        if self.cluster {
            format!("{}{{{shard}}}", self.prefix)
        } else {
            self.prefix.clone()
        }
    }

    /// Where the session `id` (or a ticket issued under it) keeps its keys.
    fn session_space(&self, id: &str) -> String {
        self.space(super::shard_of(id))
    }

    /// Where a key that belongs to no session goes: by its keyed hash, spread evenly.
    fn hashed_space(&self, hash: &str) -> String {
        self.space(hash.chars().next().unwrap_or('0'))
    }

    /// Every session space, for what drains them all (the sweep).
    fn spaces(&self) -> Vec<String> {
        if self.cluster {
            ('0'..='9')
                .chain('A'..='Z')
                .chain('a'..='z')
                .map(|shard| self.space(shard))
                .collect()
        } else {
            vec![self.prefix.clone()]
        }
    }

    fn ticket_key(space: &str, hash: &str) -> String {
        format!("{space}t:{hash}")
    }

    fn history_key(space: &str, hash: &str) -> String {
        format!("{space}h:{hash}")
    }

    fn pgts_key(space: &str, hash: &str) -> String {
        format!("{space}p:{hash}")
    }

    fn expiry_key(space: &str) -> String {
        format!("{space}expiry")
    }

    /// Removals by logout, kept until their single logout is taken care of.
    fn outbox_key(space: &str) -> String {
        format!("{space}outbox")
    }

    /// The outbox's entries by when they fall due.
    fn outbox_queue_key(space: &str) -> String {
        format!("{space}outbox:due")
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

    /// One of the scripts, on `keys` (all in `space`) and `args`. A script that is not
    /// `repeatable` (it redeems, removes or counts) was built with a receipt (see
    /// `scripts::once`): it gets a receipt key of its own for this call, in the same
    /// space, so that the pool may send it again.
    async fn script<T: redis::FromRedisValue>(
        &self,
        pick: fn(&Scripts) -> &Lua,
        space: &str,
        keys: &[String],
        args: &[String],
        repeatable: bool,
    ) -> Result<T, RegistryError> {
        let with_receipt;
        let keys = if repeatable {
            keys
        } else {
            let receipt = format!("{space}r:{}", crate::crypto::random_base62(22));
            with_receipt = [keys, std::slice::from_ref(&receipt)].concat();
            &with_receipt[..]
        };
        let call = |mut c: Connection| {
            let scripts = self.scripts.clone();
            async move { pick(&scripts).call(&mut c, keys, args).await }
        };
        self.pool.run(call).await
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

    /// The session stored under `hash` in `space`, live or not, with its last use applied.
    async fn load_tgt(&self, space: &str, hash: &str) -> Result<Loaded, RegistryError> {
        let key = Self::ticket_key(space, hash);
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
        let Loaded::Tgt(tgt) = self
            .load_tgt(&self.session_space(id), &self.sealer.hash_id(id))
            .await?
        else {
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
        if let Some(at) = used.parse::<i64>().ok().and_then(from_unix_ms)
            && at > tgt.last_used_at
        {
            tgt.last_used_at = at;
        }
    }

    fn last_use_tag(&self, hash: &str, used_ms: i64) -> String {
        self.sealer.tag(&format!("u:{hash}"), &used_ms.to_string())
    }

    /// The PGT `id` (stored under `hash`), live or not; `None` for anything else there.
    async fn load_pgt(
        &self,
        id: &str,
        hash: &str,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError> {
        let key = Self::ticket_key(&self.session_space(id), hash);
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
        Ok(data
            .and_then(|d| self.open::<ProxyGrantingTicket>(&d, PGT, hash))
            .filter(|p| p.id == id))
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
        self.add_tgt_with_ticket(tgt, None).await
    }

    async fn add_tgt_with_ticket(
        &self,
        tgt: TicketGrantingTicket,
        first: Option<(ServiceTicket, LogoutTarget)>,
    ) -> Result<(), RegistryError> {
        self.store_session(tgt, first).await
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
    ) -> Result<Added, RegistryError> {
        let (keys, args, tgt_hash) = self.ticket_script(&ticket, logout, now, false);
        let space = self.session_space(&ticket.tgt_id);
        let added: redis::Value = self
            .script(|s| &s.add_ticket, &space, &keys, &args, true)
            .await?;
        self.added(added, &tgt_hash)
    }

    async fn issue_under_session(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
        accept: &(dyn for<'t> Fn(&'t TicketGrantingTicket) -> bool + Send + Sync),
    ) -> Result<Option<(Arc<TicketGrantingTicket>, Added)>, RegistryError> {
        self.issue_sso(ticket, logout, now, accept).await
    }

    async fn add_pgt(
        &self,
        pgt: ProxyGrantingTicket,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let tgt_hash = self.sealer.hash_id(&pgt.tgt_id);
        let pgt_hash = self.sealer.hash_id(&pgt.id);
        let sealed = self.seal(&pgt, PGT, &pgt_hash);
        let space = self.session_space(&pgt.tgt_id);
        let keys = [
            Self::ticket_key(&space, &tgt_hash),
            Self::pgts_key(&space, &tgt_hash),
            Self::ticket_key(&space, &pgt_hash),
        ];
        let args = [
            unix_ms(now).to_string(),
            sealed,
            pgt_hash,
            MAX_PGTS.to_string(),
            format!("{space}t:"),
        ];
        let added: i64 = self
            .script(|s| &s.add_pgt, &space, &keys, &args, true)
            .await?;
        Ok(added == 1)
    }

    async fn get_pgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError> {
        let Some(pgt) = self.load_pgt(id, &self.sealer.hash_id(id)).await? else {
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
        // Only a PGT this node can open is removed, as in memory: another id (a session's,
        // say) is left alone.
        let Some(pgt) = self.load_pgt(id, &hash).await? else {
            return Ok(());
        };
        let space = self.session_space(&pgt.tgt_id);
        let key = Self::ticket_key(&space, &hash);
        let list = Self::pgts_key(&space, &self.sealer.hash_id(&pgt.tgt_id));
        self.pool
            .run(|mut c| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .del(&key)
                    .ignore()
                    .lrem(&list, 0, &hash)
                    .ignore();
                async move { pipe.query_async::<()>(&mut c).await }
            })
            .await
    }

    async fn redeem(&self, id: &str, now: OffsetDateTime) -> Result<Redeemed, RegistryError> {
        Ok(self.redeem_reply(id, now).await?.0)
    }

    async fn redeem_with_session(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(Redeemed, Option<Arc<TicketGrantingTicket>>), RegistryError> {
        let (redeemed, session) = self.redeem_reply(id, now).await?;
        let Redeemed::Valid(st) = &redeemed else {
            return Ok((redeemed, None));
        };
        let session = match session.as_deref() {
            // Stored before tickets named their session: one more trip.
            None => self.live_tgt(&st.tgt_id, now).await?,
            Some([]) => None,
            Some([sealed, used, tag]) => {
                let hash = self.sealer.hash_id(&st.tgt_id);
                self.open::<TicketGrantingTicket>(sealed, TGT, &hash)
                    .map(|mut tgt| {
                        self.apply_last_use(&mut tgt, &hash, Some(used), Some(tag));
                        tgt
                    })
                    .filter(|tgt| tgt.id == st.tgt_id && !tgt.is_expired(now))
            }
            Some(_) => return Err(RegistryError::UnexpectedAnswer("redeeming a ticket")),
        };
        Ok((redeemed, session.map(Arc::new)))
    }

    async fn remove_tgt(&self, id: &str) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let hash = self.sealer.hash_id(id);
        // Due once this request could no longer be waiting for the answer.
        let due = self.clock.now() + self.pool.deadline() + Duration::from_secs(1);
        let space = self.session_space(id);
        let tgt = self.remove_by_hash(&space, &hash, Some(due)).await?;
        if tgt.is_some()
            && let Err(e) = self.acknowledge(&space, std::slice::from_ref(&hash)).await
        {
            // The outbox will send this session's single logout once more.
            tracing::warn!(error = %crate::telemetry::Chain(&e), "ticket registry: a logout was not acknowledged; its single-logout messages may be sent twice");
        }
        Ok(tgt.filter(|t| t.id == id))
    }

    async fn claim_once(&self, key: &str, until: OffsetDateTime) -> Result<bool, RegistryError> {
        let hash = self.sealer.hash_id(key);
        let space = self.hashed_space(&hash);
        let name = format!("{space}c:{hash}");
        // Relative to this node's clock, so Redis' own clock does not matter.
        let ttl = ms_until(until, self.clock.now());
        let token = crate::crypto::random_base62(22);
        let claimed: i64 = self
            .script(
                |s| &s.claim,
                &space,
                &[name],
                &[token, ttl.to_string()],
                true,
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn put_pending(
        &self,
        id: &str,
        value: String,
        until: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let hash = self.sealer.hash_id(id);
        let sealed = self
            .sealer
            .seal(value.as_bytes(), &format!("{PENDING}:{hash}"));
        let key = Self::ticket_key(&self.hashed_space(&hash), &hash);
        let ttl = ms_until(until, self.clock.now());
        // Idempotent (the same value, set again): safe to send again after a lost answer.
        self.pool
            .run(|mut c| {
                let (key, sealed) = (key.clone(), sealed.clone());
                async move {
                    redis::pipe()
                        .atomic()
                        .hset_multiple(&key, &[("k", PENDING), ("d", &sealed)])
                        .ignore()
                        .pexpire(&key, ttl)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                }
            })
            .await
    }

    async fn take_pending(
        &self,
        id: &str,
        _now: OffsetDateTime,
    ) -> Result<Option<String>, RegistryError> {
        let hash = self.sealer.hash_id(id);
        let space = self.hashed_space(&hash);
        let taken: Option<String> = self
            .script(
                |s| &s.take_pending,
                &space,
                &[Self::ticket_key(&space, &hash)],
                &[],
                false,
            )
            .await?;
        Ok(taken.and_then(|sealed| {
            let value = self.sealer.open(&sealed, &format!("{PENDING}:{hash}"))?;
            String::from_utf8(value).ok()
        }))
    }

    /// Redis frees expired keys itself; the sweep drains the expiry index, removing what a
    /// dead session still holds and handing it back for single logout.
    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError> {
        // A node with another key would find every session unreadable: it sweeps nothing.
        self.key_check().await?;
        let mut swept = Swept::default();
        for space in self.spaces() {
            if let Err(e) = self.sweep_space(&space, now, &mut swept).await {
                // What was removed so far is still handed back (single logout); the rest
                // of the lease comes back to a later sweep. The other spaces may be on
                // other primaries of a cluster, up while this one is not.
                tracing::warn!(error = %crate::telemetry::Chain(&e), "ticket registry: sweep interrupted");
                continue;
            }
            match self.orphaned_logouts(&space, now).await {
                Ok(sessions) => swept.orphaned_logouts.extend(sessions),
                // Still leased: a later sweep (here or on another node) takes them up.
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::Chain(&e), "ticket registry: the logout outbox was not read");
                }
            }
        }
        Ok(swept)
    }

    /// Counts stored tickets with SCAN, a batch per command (on every primary of a
    /// cluster): for benchmarks and tests, never on a request path.
    async fn count(&self) -> Result<usize, RegistryError> {
        self.count_keys().await
    }

    fn store(&self) -> &'static str {
        "redis"
    }

    /// Redis answers, holds this node's key (which it cannot read otherwise) and takes a
    /// write: an out-of-memory Redis still reads, and fails every login and SSO. A
    /// success is reused for a second: `/health` is public and must not become a way to
    /// load Redis; a failure is never reused, so recovery shows at once.
    async fn check(&self) -> Result<(), RegistryError> {
        let fresh = |at: &Option<std::time::Instant>| {
            at.is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1))
        };
        if fresh(
            &self
                .checked_ok_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ) {
            return Ok(());
        }
        self.key_check().await?;
        self.write_probe().await?;
        *self
            .checked_ok_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        Ok(())
    }
}
