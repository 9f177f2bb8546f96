//! Failed-login throttling (THR-01..05), by two rules.
//!
//! - **Per name and address**: failures of one username from one client address (wrong
//!   passwords, and forms refused before the password check, THR-04) are counted within a
//!   window; past `threshold`, that name is blocked from that address without a password
//!   check until the window has passed (423).
//! - **Per address**: failed *password checks* from one address are counted, whatever the
//!   names (password spraying). Past `ip_threshold` the address is slowed, not locked: its
//!   password checks are spaced `ip_delay` apart for the rest of the window, and an
//!   attempt that comes too early is told how long to wait (429). Everyone behind a
//!   campus NAT or a proxy shares an address: a user who has not failed must still get
//!   in, and cheap failures (a bogus form token costs the server nothing) never count
//!   here, or anyone could lock a whole site out.
//!
//! Each attempt is counted as a failure when it starts and given back when it succeeds,
//! so parallel guesses cannot all pass before the first failure is recorded.
//!
//! Memory is bounded: both tables are LRU caches of `max_entries`, so a flood of distinct
//! usernames or addresses evicts the oldest entries instead of growing without end.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lru::LruCache;
use time::OffsetDateTime;

use crate::telemetry::{FAULT_LOG_INTERVAL, Repeats};
pub use crate::tickets::AttemptWait as Wait;
use crate::tickets::{AttemptOp, AttemptRules, AttemptStore, RegistryError};

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures for one username from one IP before blocking it there.
    pub threshold: u32,
    /// Failed password checks from one IP, whatever the usernames, before slowing it.
    pub ip_threshold: u32,
    pub window: Duration,
    /// The spacing of password checks from a slowed address.
    pub ip_delay: Duration,
    pub max_entries: usize,
}

impl ThrottlePolicy {
    fn rules(&self) -> AttemptRules {
        AttemptRules {
            per_user: self.threshold,
            per_address: self.ip_threshold,
            window: self.window,
            address_delay: self.ip_delay,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    since: OffsetDateTime,
    /// For a slowed address: when its next password check may start.
    next_check: Option<OffsetDateTime>,
}

impl Counter {
    fn new(now: OffsetDateTime) -> Self {
        Self {
            failures: 0,
            since: now,
            next_check: None,
        }
    }

    fn live(&self, now: OffsetDateTime, window: Duration) -> bool {
        now < self.since + window
    }
}

#[derive(Debug)]
struct Tables {
    by_user: LruCache<(IpAddr, String), Counter>,
    by_ip: LruCache<IpAddr, Counter>,
}

#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    tables: Mutex<Tables>,
}

fn remaining(until: OffsetDateTime, now: OffsetDateTime, otherwise: Duration) -> Duration {
    Duration::try_from(until - now).unwrap_or(otherwise)
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        let cap = NonZeroUsize::new(policy.max_entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            policy,
            tables: Mutex::new(Tables {
                by_user: LruCache::new(cap),
                by_ip: LruCache::new(cap),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the attempt must wait, and why.
    pub fn blocked(&self, ip: IpAddr, username: &str, now: OffsetDateTime) -> Option<Wait> {
        let tables = self.lock();
        self.wait_in(&tables, ip, username, now)
    }

    /// Reserves an attempt: refused if it must wait, otherwise counted as a failure at
    /// once, until [`Throttle::succeeded`] takes it back. Checking and counting in one step
    /// means parallel guesses cannot all slip in before the first failure is recorded.
    pub fn begin(&self, ip: IpAddr, username: &str, now: OffsetDateTime) -> Result<(), Wait> {
        let mut tables = self.lock();
        if let Some(wait) = self.wait_in(&tables, ip, username, now) {
            return Err(wait);
        }
        if let Some(address) = tables.by_ip.get_mut(&ip_key(ip))
            && self.slowed(address, now)
        {
            address.next_check = Some(now + self.policy.ip_delay);
        }
        self.bump(&mut tables, ip, Some(username), now);
        Ok(())
    }

    /// The attempt reserved by [`Throttle::begin`] succeeded: the user's count from this
    /// address is cleared and the address's count given back.
    pub fn succeeded(&self, ip: IpAddr, username: &str) {
        let mut tables = self.lock();
        let ip = ip_key(ip);
        tables.by_user.pop(&(ip, key(username)));
        if let Some(c) = tables.by_ip.get_mut(&ip) {
            c.failures = c.failures.saturating_sub(1);
        }
    }

    /// The attempt reserved by [`Throttle::begin`] was refused before its password check
    /// (its form): a failure of the name (THR-04), given back to the address.
    pub fn form_refused(&self, ip: IpAddr) {
        let mut tables = self.lock();
        if let Some(c) = tables.by_ip.get_mut(&ip_key(ip)) {
            c.failures = c.failures.saturating_sub(1);
        }
    }

    /// The attempt reserved by [`Throttle::begin`] could not be judged (the directory
    /// was down): both counts are given back, nothing else changes.
    pub fn release(&self, ip: IpAddr, username: &str) {
        let mut tables = self.lock();
        let ip = ip_key(ip);
        if let Some(c) = tables.by_user.get_mut(&(ip, key(username))) {
            c.failures = c.failures.saturating_sub(1);
        }
        if let Some(c) = tables.by_ip.get_mut(&ip) {
            c.failures = c.failures.saturating_sub(1);
        }
    }

    fn slowed(&self, address: &Counter, now: OffsetDateTime) -> bool {
        address.live(now, self.policy.window) && address.failures >= self.policy.ip_threshold
    }

    fn wait_in(
        &self,
        tables: &Tables,
        ip: IpAddr,
        username: &str,
        now: OffsetDateTime,
    ) -> Option<Wait> {
        let ip = ip_key(ip);
        let window = self.policy.window;
        if let Some(user) = tables.by_user.peek(&(ip, key(username)))
            && user.live(now, window)
            && user.failures >= self.policy.threshold
        {
            return Some(Wait::Blocked(remaining(user.since + window, now, window)));
        }
        let address = tables.by_ip.peek(&ip)?;
        let next = address.next_check.filter(|_| self.slowed(address, now))?;
        (next > now).then(|| Wait::Slowed(remaining(next, now, self.policy.ip_delay)))
    }

    /// Counts an attempt refused before its password check (a bad form token, THR-04):
    /// against the name, never the address.
    pub fn record_failure(&self, ip: IpAddr, username: &str, now: OffsetDateTime) {
        let mut tables = self.lock();
        let ip = ip_key(ip);
        let window = self.policy.window;
        let user = tables
            .by_user
            .get_or_insert_mut((ip, key(username)), || Counter::new(now));
        count(user, now, window);
    }

    /// Counts a failure of the name and, when `username` is given with a password check
    /// under way, of the address.
    fn bump(&self, tables: &mut Tables, ip: IpAddr, username: Option<&str>, now: OffsetDateTime) {
        let ip = ip_key(ip);
        let window = self.policy.window;
        if let Some(username) = username {
            let user = tables
                .by_user
                .get_or_insert_mut((ip, key(username)), || Counter::new(now));
            count(user, now, window);
        }
        count(
            tables.by_ip.get_or_insert_mut(ip, || Counter::new(now)),
            now,
            window,
        );
    }

    /// Entries held (IP+username pairs, IPs).
    pub fn len(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.by_user.len(), tables.by_ip.len())
    }
}

/// One more failure; a counter whose window has passed starts again.
fn count(c: &mut Counter, now: OffsetDateTime, window: Duration) {
    if !c.live(now, window) {
        *c = Counter::new(now);
    }
    c.failures = c.failures.saturating_add(1);
}

/// The throttle the login flow uses: counters in this process, or in the shared ticket
/// store when several nodes serve one deployment (otherwise each node would grant its
/// own allowance of guesses).
#[derive(Debug)]
pub enum LoginThrottle {
    Local(Throttle),
    Shared {
        policy: ThrottlePolicy,
        store: Arc<dyn AttemptStore>,
    },
}

impl LoginThrottle {
    /// Whether the attempt must wait, and why.
    pub async fn blocked(
        &self,
        ip: IpAddr,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Wait>, RegistryError> {
        match self {
            Self::Local(t) => Ok(t.blocked(ip, username, now)),
            Self::Shared { .. } => self.shared(AttemptOp::Blocked, ip, username, now).await,
        }
    }

    /// See [`Throttle::begin`].
    pub async fn begin(
        &self,
        ip: IpAddr,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<Result<(), Wait>, RegistryError> {
        match self {
            Self::Local(t) => Ok(t.begin(ip, username, now)),
            Self::Shared { .. } => Ok(
                match self.shared(AttemptOp::Begin, ip, username, now).await? {
                    Some(wait) => Err(wait),
                    None => Ok(()),
                },
            ),
        }
    }
    /// See [`Throttle::succeeded`]. A store that cannot answer is logged, not fatal: the
    /// login itself succeeded.
    pub async fn succeeded(&self, ip: IpAddr, username: &str, now: OffsetDateTime) {
        match self {
            Self::Local(t) => t.succeeded(ip, username),
            Self::Shared { .. } => {
                self.best_effort(AttemptOp::Succeeded, ip, username, now)
                    .await;
            }
        }
    }

    /// See [`Throttle::form_refused`].
    pub async fn form_refused(&self, ip: IpAddr, username: &str, now: OffsetDateTime) {
        match self {
            Self::Local(t) => t.form_refused(ip),
            Self::Shared { .. } => {
                self.best_effort(AttemptOp::FormRefused, ip, username, now)
                    .await;
            }
        }
    }

    /// See [`Throttle::release`].
    pub async fn release(&self, ip: IpAddr, username: &str, now: OffsetDateTime) {
        match self {
            Self::Local(t) => t.release(ip, username),
            Self::Shared { .. } => {
                self.best_effort(AttemptOp::Release, ip, username, now)
                    .await
            }
        }
    }

    /// See [`Throttle::record_failure`].
    pub async fn record_failure(&self, ip: IpAddr, username: &str, now: OffsetDateTime) {
        match self {
            Self::Local(t) => t.record_failure(ip, username, now),
            Self::Shared { .. } => self.best_effort(AttemptOp::Fail, ip, username, now).await,
        }
    }

    async fn shared(
        &self,
        op: AttemptOp,
        ip: IpAddr,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Wait>, RegistryError> {
        let Self::Shared { policy, store } = self else {
            return Ok(None);
        };
        let address = ip_key(ip).to_string();
        store
            .attempts(
                op,
                &format!("{address}\0{}", key(username)),
                &address,
                policy.rules(),
                now,
            )
            .await
    }

    async fn best_effort(&self, op: AttemptOp, ip: IpAddr, username: &str, now: OffsetDateTime) {
        if let Err(e) = self.shared(op, ip, username, now).await {
            static REPEATS: Repeats = Repeats::new(FAULT_LOG_INTERVAL);
            if let Some(left_out) = REPEATS.admit() {
                tracing::warn!(error = %crate::telemetry::Chain(&e), ?op, left_out, "login attempt counter not updated");
            }
        }
    }
}

/// IPv6 clients are counted per /64: one subscriber usually holds a whole /64, and
/// counting single addresses would let them rotate through it freely. (The connection
/// caps of `web` count clients the same way.)
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

/// Counting ignores case and surrounding space, as a user would.
fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max_entries: usize) -> Throttle {
        Throttle::new(ThrottlePolicy {
            threshold: 3,
            ip_threshold: 10,
            window: Duration::from_secs(60),
            ip_delay: Duration::from_secs(2),
            max_entries,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// THR-05: three failures in a second block the fourth attempt until the window ends.
    #[test]
    fn three_failures_block_until_the_window_has_passed() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for _ in 0..3 {
            assert!(t.blocked(IP, "alice", t0).is_none());
            t.record_failure(IP, "Alice ", t0);
        }
        assert_eq!(
            t.blocked(IP, "alice", t0),
            Some(Wait::Blocked(Duration::from_secs(60)))
        );
        assert!(
            t.blocked(IP, "bob", t0).is_none(),
            "other users are not blocked"
        );
        assert!(
            t.blocked(IP, "alice", t0 + time::Duration::seconds(60))
                .is_none()
        );
    }

    /// Security review (issue 13, item 2): failed password checks for many names slow
    /// the address (one check per `ip_delay`) but lock no one out; refused forms, which
    /// cost nothing, never count against the address.
    #[test]
    fn many_failed_checks_from_one_ip_slow_it_down_without_locking_anyone_out() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..100 {
            t.record_failure(IP, &format!("form{i}"), t0);
        }
        assert_eq!(t.blocked(IP, "someone-new", t0), None, "refused forms");
        for i in 0..10 {
            t.begin(IP, &format!("user{i}"), t0).unwrap();
        }

        assert_eq!(t.begin(IP, "carol", t0), Ok(()), "not locked out");
        assert_eq!(
            t.begin(IP, "dave", t0),
            Err(Wait::Slowed(Duration::from_secs(2)))
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            t.blocked(IP, "dave", later),
            Some(Wait::Slowed(Duration::from_millis(1500)))
        );
        let after = t0 + Duration::from_secs(2);
        assert_eq!(t.begin(IP, "dave", after), Ok(()));
        let window_over = t0 + Duration::from_secs(60);
        assert_eq!(t.begin(IP, "erin", window_over), Ok(()));
        assert_eq!(t.begin(IP, "frank", window_over), Ok(()), "a new window");
    }

    #[test]
    fn success_clears_the_users_count() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        t.record_failure(IP, "alice", t0);
        t.record_failure(IP, "alice", t0);
        t.begin(IP, "alice", t0).unwrap();
        t.succeeded(IP, "alice");
        t.record_failure(IP, "alice", t0);
        assert!(t.blocked(IP, "alice", t0).is_none());
    }

    /// Found in review: parallel attempts each passed the check before any failure was
    /// counted. Reserving counts them at once.
    #[test]
    fn parallel_attempts_are_counted_before_their_outcome() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let admitted = (0..10).filter(|_| t.begin(IP, "alice", t0).is_ok()).count();
        assert_eq!(admitted, 3);
    }

    /// An attempt the directory could not judge is given back whole; a success only
    /// gives back its own reservation, not earlier failures from the address.
    #[test]
    fn released_and_successful_attempts_give_back_only_their_own_count() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for _ in 0..3 {
            t.begin(IP, "alice", t0).unwrap();
            t.release(IP, "alice");
        }
        assert!(t.blocked(IP, "alice", t0).is_none(), "unjudged attempts");
        for i in 0..9 {
            t.begin(IP, &format!("user{i}"), t0).unwrap();
        }
        t.begin(IP, "bob", t0).unwrap();
        t.succeeded(IP, "bob");
        t.begin(IP, "carol", t0).unwrap();
        t.begin(IP, "dave", t0).unwrap();
        assert!(
            t.begin(IP, "erin", t0).is_err(),
            "9 failures plus carol reach the address's 10: dave's check is the last at once"
        );
    }

    #[test]
    fn ipv6_addresses_are_counted_per_64() {
        let t = throttle(100);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 1..=3u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            t.record_failure(ip, "alice", t0);
        }
        let other = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        assert!(t.blocked(other, "alice", t0).is_some());
    }

    /// Memory stays bounded under 100 000 distinct failing usernames and addresses.
    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_usernames() {
        let t = throttle(10_000);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.begin(ip, &format!("user{i}"), t0).unwrap();
        }
        assert_eq!(t.len(), (10_000, 10_000));
        // The newest entries are the ones kept.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 99_999));
        for _ in 0..2 {
            t.record_failure(last, "user99999", t0);
        }
        assert!(t.blocked(last, "user99999", t0).is_some());
    }
}
