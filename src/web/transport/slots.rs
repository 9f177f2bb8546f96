//! Who holds the connection slots: a global cap, a cap per client address, and the
//! choice of which idle connection to close when either is reached.
//!
//! One client must not be able to take every slot. A connection is *busy* while a request
//! is on it (an HTTP/1 head or body being read or answered, an open HTTP/2 stream) and
//! *idle* otherwise; what keeps a connection busy is requests, never HTTP/2 PINGs or other
//! control frames. When the server is full, the idle connection of the client holding the
//! most is closed to let the next one in; when a client reaches its own cap, one of its
//! own idle connections is closed, and only if it has none is the new one refused.
//! Trusted proxies carry many clients and have no cap of their own (their clients are
//! limited per request, by forwarded address, in `web::client`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::sync::Notify;

/// How long a connection must have been idle before it may be closed for another: a
/// request is usually under way again within that time on a connection just answered,
/// and a client that has just connected has yet to send its first.
const RECLAIM_MIN_IDLE: Duration = Duration::from_millis(100);
/// How often a full listener looks again for a connection that has become idle.
const RECLAIM_RETRY: Duration = Duration::from_millis(25);
/// At most one warning of each kind per this period; the counts say the rest.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters for `/health`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    /// Connections closed at once: their client held its cap, all busy.
    pub refused: AtomicU64,
    /// Idle connections closed to make room for another.
    pub reclaimed: AtomicU64,
}

/// The slot table of one listener.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    per_client: usize,
    exempt: Vec<IpNet>,
    epoch: Instant,
    table: Mutex<Table>,
    freed: Notify,
    stats: Arc<ConnectionStats>,
    warned: Mutex<[Option<Instant>; 2]>,
}

#[derive(Debug, Default)]
struct Table {
    open: usize,
    clients: HashMap<IpAddr, Vec<Arc<Shared>>>,
}

/// What a connection and the table both see of it.
#[derive(Debug)]
pub struct Shared {
    client: IpAddr,
    /// Milliseconds since the table's epoch, plus one, since the connection went idle;
    /// zero while busy.
    idle_since: AtomicU64,
    /// Set when the table gave the slot away: the connection closes once idle.
    reclaimed: AtomicBool,
    released: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A slot held by one connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    shared: Arc<Shared>,
}

#[derive(Clone, Copy)]
enum Warning {
    Refused = 0,
    Reclaimed = 1,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Slots {
    pub fn new(
        max: usize,
        per_client: usize,
        exempt: Vec<IpNet>,
        stats: Arc<ConnectionStats>,
    ) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            per_client: per_client.max(1),
            exempt,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
            stats,
            warned: Mutex::new([None, None]),
        })
    }

    /// Waits until a slot is free, closing idle connections to free one while the
    /// listener is full. Until then new clients wait in the kernel's accept queue.
    pub async fn room(&self) {
        loop {
            {
                let mut table = lock(&self.table);
                if table.open < self.max {
                    return;
                }
                let now = self.now_ms();
                let victim = table
                    .clients
                    .values()
                    .flat_map(|conns| conns.iter().map(move |c| (conns.len(), c)))
                    .filter(|(_, c)| c.reclaimable(now))
                    .max_by_key(|(held, c)| (*held, std::cmp::Reverse(c.idle_since())))
                    .map(|(_, c)| c.clone());
                if let Some(victim) = victim {
                    self.reclaim(&mut table, &victim);
                    continue;
                }
            }
            tokio::select! {
                () = self.freed.notified() => {}
                () = tokio::time::sleep(RECLAIM_RETRY) => {}
            }
        }
    }

    /// A slot for a new connection from `client`, or `None` when the client holds its
    /// cap and none of its connections is idle (the new one is then closed at once).
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Slot> {
        let client = client.to_canonical();
        let capped = !self.exempt.iter().any(|net| net.contains(&client));
        // One client per /64 for IPv6, as the login throttle counts them.
        let client = crate::protocol::throttle::ip_key(client);
        let mut table = lock(&self.table);
        let held = table.clients.get(&client).map_or(0, Vec::len);
        if capped && held >= self.per_client {
            let now = self.now_ms();
            let own_idle = table.clients.get(&client).and_then(|conns| {
                conns
                    .iter()
                    .filter(|c| c.reclaimable(now))
                    .min_by_key(|c| c.idle_since())
                    .cloned()
            });
            match own_idle {
                Some(victim) => self.reclaim(&mut table, &victim),
                None => {
                    drop(table);
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    self.warn(Warning::Refused, client);
                    return None;
                }
            }
        }
        let shared = Arc::new(Shared {
            client,
            idle_since: AtomicU64::new(0),
            reclaimed: AtomicBool::new(false),
            released: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        table
            .clients
            .entry(client)
            .or_default()
            .push(shared.clone());
        table.open += 1;
        self.stats.open.store(table.open as u64, Ordering::Relaxed);
        Some(Slot {
            slots: self.clone(),
            shared,
        })
    }

    fn reclaim(&self, table: &mut Table, victim: &Arc<Shared>) {
        self.release(table, victim);
        victim.reclaimed.store(true, Ordering::Release);
        if let Some(waker) = lock(&victim.waker).take() {
            waker.wake();
        }
        self.stats.reclaimed.fetch_add(1, Ordering::Relaxed);
        self.warn(Warning::Reclaimed, victim.client);
    }

    fn release(&self, table: &mut Table, shared: &Arc<Shared>) {
        if shared.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(conns) = table.clients.get_mut(&shared.client) {
            conns.retain(|c| !Arc::ptr_eq(c, shared));
            if conns.is_empty() {
                table.clients.remove(&shared.client);
            }
        }
        table.open -= 1;
        self.stats.open.store(table.open as u64, Ordering::Relaxed);
        self.freed.notify_one();
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn warn(&self, kind: Warning, client: IpAddr) {
        let mut warned = lock(&self.warned);
        let last = &mut warned[kind as usize];
        if last.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            tracing::debug!(%client, "connection limit reached");
            return;
        }
        *last = Some(Instant::now());
        drop(warned);
        let refused = self.stats.refused.load(Ordering::Relaxed);
        let reclaimed = self.stats.reclaimed.load(Ordering::Relaxed);
        match kind {
            Warning::Refused => tracing::warn!(
                %client,
                refused,
                reclaimed,
                "refused a connection: this client holds server.max_connections_per_client, none idle"
            ),
            Warning::Reclaimed => tracing::warn!(
                %client,
                refused,
                reclaimed,
                "closed an idle connection to make room for another (a connection limit was reached)"
            ),
        }
    }
}

impl Shared {
    fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Acquire)
    }

    fn reclaimable(&self, now_ms: u64) -> bool {
        let since = self.idle_since();
        since != 0
            && !self.released.load(Ordering::Acquire)
            && now_ms.saturating_sub(since - 1) >= RECLAIM_MIN_IDLE.as_millis() as u64
    }
}

impl Slot {
    /// The connection has no request on it now (`true`), or has one again.
    pub fn set_idle(&self, idle: bool) {
        let busy = self.shared.idle_since() == 0;
        if idle && busy {
            let now = self.slots.now_ms();
            self.shared.idle_since.store(now + 1, Ordering::Release);
        } else if !idle && !busy {
            self.shared.idle_since.store(0, Ordering::Release);
        }
    }

    /// Whether the table gave this slot to another connection: close once idle.
    pub fn reclaimed(&self) -> bool {
        self.shared.reclaimed.load(Ordering::Acquire)
    }

    /// Wakes `waker` when the slot is reclaimed.
    pub fn wake_on_reclaim(&self, waker: &Waker) {
        let mut slot = lock(&self.shared.waker);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = lock(&self.slots.table);
        self.slots.release(&mut table, &self.shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn slots(max: usize, per_client: usize) -> Arc<Slots> {
        Slots::new(
            max,
            per_client,
            vec!["10.0.0.0/8".parse().unwrap()],
            Arc::default(),
        )
    }

    #[test]
    fn a_client_at_its_cap_gives_up_its_own_idle_connection_or_is_refused() {
        let slots = slots(10, 2);
        let first = slots.admit(ip(1)).unwrap();
        let second = slots.admit(ip(1)).unwrap();
        assert!(slots.admit(ip(1)).is_none(), "both busy: refused");
        assert!(slots.admit(ip(2)).is_some(), "another client is not");
        first.set_idle(true);
        assert!(slots.admit(ip(1)).is_none(), "idle, but only just");

        std::thread::sleep(RECLAIM_MIN_IDLE);
        let third = slots.admit(ip(1)).expect("its idle connection made room");
        assert!(first.reclaimed() && !second.reclaimed());
        assert_eq!(slots.stats.refused.load(Ordering::Relaxed), 2);
        assert_eq!(slots.stats.reclaimed.load(Ordering::Relaxed), 1);
        drop((first, second, third));
        assert_eq!(slots.stats.open.load(Ordering::Relaxed), 0, "counted once");
    }

    #[tokio::test]
    async fn a_full_listener_closes_the_idle_connection_of_the_biggest_holder() {
        let slots = slots(3, 3);
        let a1 = slots.admit(ip(1)).unwrap();
        let a2 = slots.admit(ip(1)).unwrap();
        let b = slots.admit(ip(2)).unwrap();
        for slot in [&a1, &a2, &b] {
            slot.set_idle(true);
        }
        a1.set_idle(false);
        std::thread::sleep(RECLAIM_MIN_IDLE);

        tokio::time::timeout(Duration::from_secs(1), slots.room())
            .await
            .expect("room was made");

        assert!(a2.reclaimed(), "the idle one of the client holding two");
        assert!(!a1.reclaimed() && !b.reclaimed());
    }

    #[tokio::test]
    async fn a_full_listener_of_busy_connections_waits_for_one_to_end() {
        let slots = slots(1, 1);
        let only = slots.admit(ip(1)).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), slots.room())
                .await
                .is_err()
        );
        drop(only);
        tokio::time::timeout(Duration::from_secs(1), slots.room())
            .await
            .expect("the freed slot");
    }

    #[test]
    fn an_ipv6_client_is_its_whole_slash_64() {
        let slots = slots(10, 2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _first = slots.admit(a).unwrap();
        let _second = slots.admit(b).unwrap();
        assert!(
            slots.admit("2001:db8:1:2::77".parse().unwrap()).is_none(),
            "a third address of the same /64 is the same client"
        );
        assert!(slots.admit(other).is_some(), "the next /64 is another");
    }

    #[test]
    fn trusted_proxies_have_no_cap_of_their_own() {
        let slots = slots(10, 1);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| slots.admit(proxy).unwrap()).collect();
        assert_eq!(held.len(), 5);
    }
}
