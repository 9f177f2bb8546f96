//! The ticket registry: every ticket the server has issued and not yet forgotten.
//!
//! The trait is async and its tickets are serde values linked by id, so a networked
//! store can implement it; the in-memory store is the default. Expiry is checked on
//! every read, so correctness never depends on the reaper, which only frees memory.

mod expiration;
mod memory;
mod model;
pub mod reaper;
mod redis;
mod sealing;
mod snapshot;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use self::redis::RedisRegistry;
pub use crate::config::RedisOptions;
pub use expiration::ExpirationPolicy;
pub use memory::MemoryRegistry;
pub use model::{
    Grant, IssuedTicket, LogoutTarget, Principal, ProxyGrantingTicket, ServiceTicket, Ticket,
    TicketGrantingTicket, new_pgt_iou, new_service_ticket_id, new_tgt_id, shard_of,
};
pub use sealing::TicketSealer;
pub use snapshot::SnapshotFile;

/// A store that cannot answer (a networked store that is down or misconfigured). The
/// in-memory store never returns it; the protocol layer handles it all the same.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis failed a command, or the connection to it.
    #[error("redis failed")]
    Redis(#[source] ::redis::RedisError),
    /// No answer within the configured timeouts.
    #[error("redis did not answer within {0:?}; the command may still run when it does")]
    Timeout(std::time::Duration),
    /// A recent connection attempt failed: requests fail at once until the backoff ends.
    #[error("redis is unreachable (retrying)")]
    Unreachable,
    /// Redis answers but refuses to write: out of memory under `noeviction`, or a
    /// read-only replica. Nothing can be logged in until it writes again.
    #[error("redis refuses writes (out of memory, or a read-only replica)")]
    RefusesWrites(#[source] ::redis::RedisError),
    /// Fewer replicas than `min_replicas_acks` acknowledged a new session in time: it
    /// may not survive a failover.
    #[error("only {acked} of {wanted} replicas acknowledged the new session in time")]
    NotReplicated { acked: i64, wanted: i64 },
    /// The stored tickets were written with another registry key.
    #[error("the tickets in redis were written with another tickets.key")]
    KeyMismatch,
    /// Redis answered something no script of ours returns.
    #[error("redis gave an unexpected answer to {0}")]
    UnexpectedAnswer(&'static str),
}

/// The Redis store cannot be set up from its options.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("tickets.redis.url is not a Redis URL the client accepts")]
    Url(#[source] ::redis::RedisError),
    #[error("tickets.redis: the client cannot be built")]
    Client(#[source] ::redis::RedisError),
}

/// Instants as stored outside this process (Redis, the snapshot): Unix milliseconds.
fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant `ms` Unix milliseconds stand for; `None` outside the representable range
/// (a corrupt or hostile stored value).
fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// What a login-attempt counter is asked to do (see `protocol::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOp {
    /// Whether the next attempt must wait; counts nothing.
    Blocked,
    /// As `Blocked`, and when it need not wait counts the attempt as a failure of both
    /// counts at once (and spaces the next one, for an address being slowed).
    Begin,
    /// Counts a failure of the name only (an attempt refused before its password check).
    Fail,
    /// Clears the per-user count and gives back one per-address failure.
    Succeeded,
    /// The attempt reserved by `Begin` was refused before its password check (its form):
    /// it stays a failure of the name, and is given back to the address.
    FormRefused,
    /// Gives back one failure of each count.
    Release,
}

/// The rules the counters apply (see `protocol::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRules {
    /// Failures of one name from one address before that name is blocked there.
    pub per_user: u32,
    /// Failed password checks from one address before the address is slowed.
    pub per_address: u32,
    /// How long counts last from their first failure.
    pub window: std::time::Duration,
    /// The spacing of password checks from a slowed address.
    pub address_delay: std::time::Duration,
}

/// Why an attempt must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptWait {
    /// THR-03: this name failed too often from this address; blocked until the window
    /// of its first failure has passed.
    Blocked(std::time::Duration),
    /// The address failed for many names: its password checks are spaced, and this one
    /// comes too early.
    Slowed(std::time::Duration),
}

impl AttemptWait {
    pub fn retry_after(self) -> std::time::Duration {
        match self {
            Self::Blocked(wait) | Self::Slowed(wait) => wait,
        }
    }
}

/// Failed-login counters shared by every node, so that thresholds hold across a
/// cluster rather than per node.
#[async_trait]
pub trait AttemptStore: Send + Sync + std::fmt::Debug {
    /// Applies `op` at `now` to the counters named `per_user` and `per_address`, which
    /// start at their first failure and last `rules.window`; returns why the attempt
    /// must wait, if it must.
    async fn attempts(
        &self,
        op: AttemptOp,
        per_user: &str,
        per_address: &str,
        rules: AttemptRules,
        now: OffsetDateTime,
    ) -> Result<Option<AttemptWait>, RegistryError>;
}

/// The result of redeeming a one-use ticket. Every variant except `Missing` and `WrongKind`
/// means the ticket has been removed (TKT-03).
#[derive(Debug)]
pub enum Redeemed {
    Missing,
    /// The id names a ticket of another kind (a TGT, say); it was left untouched.
    WrongKind,
    Expired(ServiceTicket),
    Valid(ServiceTicket),
}

/// What storing a ticket under its session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored, and recorded for single logout.
    Recorded,
    /// Stored; the session's history was full of distinct applications, so the oldest
    /// one was forgotten: it will not be told of the logout.
    Forgot(IssuedTicket),
    /// Not stored: the parent session is gone.
    SessionEnded,
}

impl Added {
    pub fn stored(&self) -> bool {
        !matches!(self, Self::SessionEnded)
    }
}

/// What a sweep removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub freed: usize,
    pub expired_sessions: Vec<TicketGrantingTicket>,
    /// Sessions a logout removed whose answer never reached the node that asked (a
    /// stalled Redis ran the removal after the request gave up): their single logout is
    /// still owed. Only a networked store has them.
    pub orphaned_logouts: Vec<TicketGrantingTicket>,
}

#[async_trait]
pub trait TicketRegistry: Send + Sync + std::fmt::Debug {
    async fn add_tgt(&self, tgt: TicketGrantingTicket) -> Result<(), RegistryError>;

    /// A new session and, with `first`, its first ticket (a login for a service), in
    /// one step where the store can.
    async fn add_tgt_with_ticket(
        &self,
        tgt: TicketGrantingTicket,
        first: Option<(ServiceTicket, LogoutTarget)>,
    ) -> Result<(), RegistryError> {
        let now = tgt.last_used_at;
        self.add_tgt(tgt).await?;
        if let Some((ticket, logout)) = first {
            // A session this new holds one ticket: nothing to forget, and it is live.
            self.add_service_ticket(ticket, logout, now).await?;
        }
        Ok(())
    }

    /// The live TGT, without sliding its idle window. A networked store may leave its
    /// `issued` list empty here: only `remove_tgt` and `sweep` (single logout) need it.
    async fn get_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<std::sync::Arc<TicketGrantingTicket>>, RegistryError>;

    /// Stores `ticket` under its live parent TGT and records it there for single logout,
    /// as one step; a service ticket (the user's own activity) also slides the parent's
    /// idle window, a proxy ticket does not.
    async fn add_service_ticket(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
    ) -> Result<Added, RegistryError>;

    /// Single sign-on in one step where the store can: `ticket` is stored under its live
    /// parent session (as [`Self::add_service_ticket`]) if `accept` takes that session;
    /// returns the session as [`Self::get_tgt`] would have, with what storing did, or
    /// `None` (nothing stored) when the session is not live or `accept` refused it.
    async fn issue_under_session(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
        accept: &(dyn for<'t> Fn(&'t TicketGrantingTicket) -> bool + Send + Sync),
    ) -> Result<Option<(std::sync::Arc<TicketGrantingTicket>, Added)>, RegistryError> {
        let Some(tgt) = self.get_tgt(&ticket.tgt_id, now).await? else {
            return Ok(None);
        };
        if !accept(&tgt) {
            return Ok(None);
        }
        let added = self.add_service_ticket(ticket, logout, now).await?;
        Ok(added.stored().then_some((tgt, added)))
    }

    /// Stores a PGT under its live parent TGT; `false` if the parent is gone.
    async fn add_pgt(
        &self,
        pgt: ProxyGrantingTicket,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError>;

    /// The PGT `id`, if it is one and its TGT is alive (TKT-06).
    async fn get_pgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError>;

    /// Removes one PGT (a proxy callback that failed).
    async fn remove_pgt(&self, id: &str) -> Result<(), RegistryError>;

    /// Atomically removes and returns a one-use ticket: two concurrent callers never both
    /// receive `Valid` for the same id.
    async fn redeem(&self, id: &str, now: OffsetDateTime) -> Result<Redeemed, RegistryError>;

    /// `redeem`, and for a valid ticket the live session it belongs to (`None` when that
    /// has ended): what validation needs, in one trip where the store can.
    async fn redeem_with_session(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(Redeemed, Option<std::sync::Arc<TicketGrantingTicket>>), RegistryError> {
        let redeemed = self.redeem(id, now).await?;
        let session = match &redeemed {
            Redeemed::Valid(st) => self.get_tgt(&st.tgt_id, now).await?,
            _ => None,
        };
        Ok((redeemed, session))
    }

    /// Destroys a TGT and every ticket issued under it; returns it as it was.
    async fn remove_tgt(&self, id: &str) -> Result<Option<TicketGrantingTicket>, RegistryError>;

    /// Records `key` as used until `until`: `true` the first time, `false` while it lasts.
    /// Makes login-flow tokens single-use (LOGINP-06).
    async fn claim_once(&self, key: &str, until: OffsetDateTime) -> Result<bool, RegistryError>;

    /// Keeps the state of a login waiting for the browser (a step between
    /// authentication and grant) under `id` until `until`, replacing any under that id.
    /// The value is opaque here; a networked store seals it like any ticket.
    async fn put_pending(
        &self,
        id: &str,
        value: String,
        until: OffsetDateTime,
    ) -> Result<(), RegistryError>;

    /// Takes the state under `id` back, once: it is removed, so a second take (a replay,
    /// another node) gets `None`, as does a state whose time has passed.
    async fn take_pending(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, RegistryError>;

    /// Frees expired entries; reports how many and hands back the sessions that expired
    /// (for single logout on expiry).
    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError>;

    /// Number of tickets held (for benchmarks and tests; may scan the whole store).
    async fn count(&self) -> Result<usize, RegistryError>;

    /// The store's name in `/health`.
    fn store(&self) -> &'static str;

    /// Whether the store answers, for `/health`: cheap, unlike `count`.
    async fn check(&self) -> Result<(), RegistryError> {
        Ok(())
    }
}
