//! The default registry: tickets in memory, spread over shards by a hash of their id, so
//! requests for different tickets rarely meet on a lock. Critical sections are a hash
//! lookup or two and never await, so plain `std` mutexes beat async ones here. Sessions
//! are shared as `Arc`s: a read costs a reference count, not a copy.
//!
//! Operations that touch a session and one of its tickets lock one shard at a time; the
//! only window this leaves (a ticket stored just after its session was removed) is closed
//! by validation, which requires the session to be alive.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    Added, Grant, IssuedTicket, LogoutTarget, ProxyGrantingTicket, Redeemed, RegistryError,
    ServiceTicket, Swept, TicketGrantingTicket, TicketRegistry, from_unix_ms, unix_ms,
};

/// Independent locks. Enough that two requests rarely meet, and that the reaper holds
/// any one for well under a millisecond with a million tickets stored.
const SHARDS: usize = 256;

/// Boxed so that every entry, sessions included (the most numerous and longest-lived),
/// is a pointer wide: inline, each would pay for the largest variant (152 bytes).
#[derive(Debug)]
enum Stored {
    Tgt(Arc<TicketGrantingTicket>),
    Service(Box<ServiceTicket>),
    ProxyGranting(Box<ProxyGrantingTicket>),
    /// A login waiting for the browser, until its deadline. Not in snapshots: it lives
    /// minutes, and a restart only sends the user back to the form.
    Pending(Box<(String, OffsetDateTime)>),
}

#[derive(Debug, Default)]
struct Shard {
    tickets: HashMap<String, Stored>,
    /// Single-use keys already claimed, by digest: one per login for the form's life,
    /// so they are kept small (no heap allocation per key).
    claims: HashMap<[u8; 16], OffsetDateTime>,
}

pub struct MemoryRegistry {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// Only the shape: the contents are live tickets.
impl std::fmt::Debug for MemoryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRegistry")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(id) as usize) % SHARDS;
        // A panic while holding a lock cannot leave a half-written entry behind (every
        // mutation is a single insert, remove or field update), so the data stays usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims are sharded by their digest (not the key), so a restored snapshot, which
    /// holds only digests, puts each where `claim_once` looks for it.
    fn claim_shard(&self, digest: &[u8; 16]) -> MutexGuard<'_, Shard> {
        let index = usize::from(digest[0]) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn tgt_is_live(&self, id: &str, now: OffsetDateTime) -> bool {
        matches!(self.shard(id).tickets.get(id), Some(Stored::Tgt(t)) if !t.is_expired(now))
    }

    /// One shard's share of a sweep: expired tickets out; the children of expired
    /// sessions go once the shard is released. (PGTs leave with their session: see
    /// `add_pgt` for the one race, closed there, that could orphan one.)
    fn sweep_shard(&self, shard: &Mutex<Shard>, now: OffsetDateTime, swept: &mut Swept) {
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let before = shard.tickets.len() + shard.claims.len();
        let mut expired_sessions = Vec::new();
        shard.tickets.retain(|_, stored| match stored {
            Stored::Tgt(tgt) if tgt.is_expired(now) => {
                expired_sessions.push(tgt.clone());
                false
            }
            Stored::Service(st) => !st.is_expired(now),
            Stored::Pending(pending) => pending.1 > now,
            Stored::ProxyGranting(_) | Stored::Tgt(_) => true,
        });
        shard.claims.retain(|_, until| *until > now);
        swept.freed += before - shard.tickets.len() - shard.claims.len();
        drop(shard);
        for tgt in expired_sessions {
            self.remove_children(&tgt);
            swept.expired_sessions.push(Arc::unwrap_or_clone(tgt));
        }
    }

    fn remove_children(&self, tgt: &TicketGrantingTicket) {
        for issued in &tgt.issued {
            let mut shard = self.shard(&issued.ticket_id);
            if matches!(
                shard.tickets.get(&issued.ticket_id),
                Some(Stored::Service(_))
            ) {
                shard.tickets.remove(&issued.ticket_id);
            }
        }
        for pgt in &tgt.proxy_granting {
            let mut shard = self.shard(pgt);
            if matches!(shard.tickets.get(pgt), Some(Stored::ProxyGranting(_))) {
                shard.tickets.remove(pgt);
            }
        }
    }

    /// Applies `change` to a live session; `None` if it is not there or expired.
    fn with_live_tgt<T>(
        &self,
        id: &str,
        now: OffsetDateTime,
        change: impl FnOnce(&mut TicketGrantingTicket) -> T,
    ) -> Option<T> {
        let mut shard = self.shard(id);
        match shard.tickets.get_mut(id) {
            Some(Stored::Tgt(tgt)) if !tgt.is_expired(now) => Some(change(Arc::make_mut(tgt))),
            _ => None,
        }
    }
}

/// Everything a registry holds, as the snapshot file stores it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Contents {
    pub tickets: Vec<Entry>,
    /// Claimed single-use keys: their digest and until when (Unix milliseconds).
    pub claims: Vec<([u8; 16], i64)>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) enum Entry {
    Tgt(TicketGrantingTicket),
    Service(ServiceTicket),
    ProxyGranting(ProxyGrantingTicket),
}

impl MemoryRegistry {
    /// The live contents at `now` (expired entries are left out).
    pub(super) fn export(&self, now: OffsetDateTime) -> Contents {
        let mut contents = Contents::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for stored in shard.tickets.values() {
                match stored {
                    Stored::Tgt(t) if !t.is_expired(now) => {
                        contents.tickets.push(Entry::Tgt((**t).clone()));
                    }
                    Stored::Service(st) if !st.is_expired(now) => {
                        contents.tickets.push(Entry::Service((**st).clone()));
                    }
                    Stored::ProxyGranting(pgt) => {
                        contents.tickets.push(Entry::ProxyGranting((**pgt).clone()));
                    }
                    _ => {}
                }
            }
            contents.claims.extend(
                shard
                    .claims
                    .iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(digest, until)| (*digest, unix_ms(*until))),
            );
        }
        contents
    }

    /// Adds `contents`, skipping whatever has expired by `now` (and PGTs whose session
    /// did not come back); returns how many tickets were restored.
    pub(super) fn import(&self, contents: Contents, now: OffsetDateTime) -> usize {
        let mut restored = 0;
        let mut pgts = Vec::new();
        for entry in contents.tickets {
            let (id, stored) = match entry {
                Entry::Tgt(t) if !t.is_expired(now) => (t.id.clone(), Stored::Tgt(Arc::new(t))),
                Entry::Service(st) if !st.is_expired(now) => {
                    (st.id.clone(), Stored::Service(Box::new(st)))
                }
                Entry::ProxyGranting(pgt) => {
                    pgts.push(pgt);
                    continue;
                }
                _ => continue,
            };
            self.shard(&id).tickets.insert(id, stored);
            restored += 1;
        }
        for pgt in pgts {
            if self.tgt_is_live(&pgt.tgt_id, now) {
                self.shard(&pgt.id)
                    .tickets
                    .insert(pgt.id.clone(), Stored::ProxyGranting(Box::new(pgt)));
                restored += 1;
            }
        }
        for (digest, until_ms) in contents.claims {
            let Some(until) = from_unix_ms(until_ms) else {
                continue;
            };
            if until > now {
                self.claim_shard(&digest).claims.insert(digest, until);
            }
        }
        restored
    }
}

#[async_trait]
impl TicketRegistry for MemoryRegistry {
    async fn add_tgt(&self, tgt: TicketGrantingTicket) -> Result<(), RegistryError> {
        self.shard(&tgt.id)
            .tickets
            .insert(tgt.id.clone(), Stored::Tgt(Arc::new(tgt)));
        Ok(())
    }

    async fn get_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<TicketGrantingTicket>>, RegistryError> {
        Ok(match self.shard(id).tickets.get(id) {
            Some(Stored::Tgt(tgt)) if !tgt.is_expired(now) => Some(tgt.clone()),
            _ => None,
        })
    }

    async fn add_service_ticket(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
    ) -> Result<Added, RegistryError> {
        let recorded = self.with_live_tgt(&ticket.tgt_id, now, |tgt| {
            if ticket.grant == Grant::Service {
                tgt.last_used_at = now;
            }
            tgt.record_issued(IssuedTicket {
                ticket_id: ticket.id.clone(),
                service: ticket.service.clone(),
                logout,
            })
        });
        let Some(forgotten) = recorded else {
            return Ok(Added::SessionEnded);
        };
        self.shard(&ticket.id)
            .tickets
            .insert(ticket.id.clone(), Stored::Service(Box::new(ticket)));
        Ok(forgotten.map_or(Added::Recorded, Added::Forgot))
    }

    async fn redeem(&self, id: &str, now: OffsetDateTime) -> Result<Redeemed, RegistryError> {
        let mut shard = self.shard(id);
        match shard.tickets.get(id) {
            None => return Ok(Redeemed::Missing),
            Some(Stored::Tgt(_) | Stored::ProxyGranting(_) | Stored::Pending(_)) => {
                return Ok(Redeemed::WrongKind);
            }
            Some(Stored::Service(_)) => {}
        }
        let Some(Stored::Service(st)) = shard.tickets.remove(id) else {
            return Ok(Redeemed::Missing);
        };
        Ok(if st.is_expired(now) {
            Redeemed::Expired(*st)
        } else {
            Redeemed::Valid(*st)
        })
    }

    async fn add_pgt(
        &self,
        pgt: ProxyGrantingTicket,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let Some(evicted) =
            self.with_live_tgt(&pgt.tgt_id, now, |tgt| tgt.record_pgt(pgt.id.clone()))
        else {
            return Ok(false);
        };
        if let Some(evicted) = evicted {
            self.shard(&evicted).tickets.remove(&evicted);
        }
        let (id, tgt_id) = (pgt.id.clone(), pgt.tgt_id.clone());
        self.shard(&id)
            .tickets
            .insert(id.clone(), Stored::ProxyGranting(Box::new(pgt)));
        // The session may have been removed between recording this PGT and storing it,
        // after its children were cleared: then the PGT goes too, or it would be orphaned.
        if !matches!(
            self.shard(&tgt_id).tickets.get(&tgt_id),
            Some(Stored::Tgt(_))
        ) {
            self.shard(&id).tickets.remove(&id);
            return Ok(false);
        }
        Ok(true)
    }

    async fn get_pgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError> {
        let pgt = match self.shard(id).tickets.get(id) {
            Some(Stored::ProxyGranting(pgt)) => (**pgt).clone(),
            _ => return Ok(None),
        };
        Ok(self.tgt_is_live(&pgt.tgt_id, now).then_some(pgt))
    }

    async fn remove_pgt(&self, id: &str) -> Result<(), RegistryError> {
        let removed = {
            let mut shard = self.shard(id);
            match shard.tickets.get(id) {
                // Another kind of id is left alone.
                Some(Stored::ProxyGranting(_)) => shard.tickets.remove(id),
                _ => None,
            }
        };
        if let Some(Stored::ProxyGranting(pgt)) = removed {
            let mut shard = self.shard(&pgt.tgt_id);
            if let Some(Stored::Tgt(tgt)) = shard.tickets.get_mut(&pgt.tgt_id) {
                Arc::make_mut(tgt).proxy_granting.retain(|p| p != id);
            }
        }
        Ok(())
    }

    async fn remove_tgt(&self, id: &str) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        let removed = self.shard(id).tickets.remove(id);
        let Some(Stored::Tgt(tgt)) = removed else {
            return Ok(None);
        };
        self.remove_children(&tgt);
        Ok(Some(Arc::unwrap_or_clone(tgt)))
    }

    async fn claim_once(&self, key: &str, until: OffsetDateTime) -> Result<bool, RegistryError> {
        let digest = crate::crypto::sha256(key.as_bytes());
        let mut short = [0u8; 16];
        short.copy_from_slice(&digest[..16]);
        let mut shard = self.claim_shard(&short);
        if shard.claims.contains_key(&short) {
            return Ok(false);
        }
        shard.claims.insert(short, until);
        Ok(true)
    }

    async fn put_pending(
        &self,
        id: &str,
        value: String,
        until: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let mut shard = self.shard(id);
        // Never over a ticket: ids of pending logins have their own prefix anyway.
        if matches!(shard.tickets.get(id), None | Some(Stored::Pending(_))) {
            shard
                .tickets
                .insert(id.to_owned(), Stored::Pending(Box::new((value, until))));
        }
        Ok(())
    }

    async fn take_pending(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, RegistryError> {
        let mut shard = self.shard(id);
        if !matches!(shard.tickets.get(id), Some(Stored::Pending(_))) {
            return Ok(None);
        }
        let Some(Stored::Pending(pending)) = shard.tickets.remove(id) else {
            return Ok(None);
        };
        let (value, until) = *pending;
        Ok((until > now).then_some(value))
    }

    /// One shard at a time, so a sweep of millions of tickets never holds up requests
    /// for long; children of expired sessions are removed after their shard is released.
    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError> {
        let mut swept = Swept::default();
        for shard in self.shards.iter() {
            self.sweep_shard(shard, now, &mut swept);
            // A sweep of a million tickets takes a while: let requests run between shards
            // instead of stalling this worker thread for all of it.
            tokio::task::yield_now().await;
        }
        Ok(swept)
    }

    fn store(&self) -> &'static str {
        "memory"
    }

    async fn count(&self) -> Result<usize, RegistryError> {
        Ok(self
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .tickets
                    .len()
            })
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::tickets::{ExpirationPolicy, Principal};

    fn tgt(now: OffsetDateTime) -> TicketGrantingTicket {
        TicketGrantingTicket::new(
            Principal {
                id: "alice".into(),
                attributes: BTreeMap::new(),
            },
            now,
            ExpirationPolicy::sliding(Duration::from_secs(60), Duration::from_secs(600)),
            false,
        )
    }

    fn st(tgt: &TicketGrantingTicket, now: OffsetDateTime) -> ServiceTicket {
        ServiceTicket::new(
            &tgt.id,
            "https://app.example.org/",
            now,
            ExpirationPolicy::fixed(Duration::from_secs(10)),
            true,
        )
    }

    #[tokio::test]
    async fn a_service_ticket_is_redeemed_once() {
        let reg = MemoryRegistry::new();
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(now);
        reg.add_tgt(t.clone()).await.unwrap();
        let s = st(&t, now);
        assert!(
            reg.add_service_ticket(s.clone(), LogoutTarget::None, now)
                .await
                .unwrap()
                .stored()
        );
        assert!(matches!(
            reg.redeem(&s.id, now).await.unwrap(),
            Redeemed::Valid(_)
        ));
        assert!(matches!(
            reg.redeem(&s.id, now).await.unwrap(),
            Redeemed::Missing
        ));
    }

    #[tokio::test]
    async fn a_tgt_id_cannot_be_redeemed_and_survives_the_attempt() {
        let reg = MemoryRegistry::new();
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(now);
        reg.add_tgt(t.clone()).await.unwrap();
        assert!(matches!(
            reg.redeem(&t.id, now).await.unwrap(),
            Redeemed::WrongKind
        ));
        assert!(reg.get_tgt(&t.id, now).await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_redemptions_yield_exactly_one_success() {
        let reg = Arc::new(MemoryRegistry::new());
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(now);
        reg.add_tgt(t.clone()).await.unwrap();
        let s = st(&t, now);
        reg.add_service_ticket(s.clone(), LogoutTarget::None, now)
            .await
            .unwrap();
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let reg = reg.clone();
                let id = s.id.clone();
                tokio::spawn(async move { reg.redeem(&id, now).await.unwrap() })
            })
            .collect();
        let mut valid = 0;
        for h in handles {
            if matches!(h.await.unwrap(), Redeemed::Valid(_)) {
                valid += 1;
            }
        }
        assert_eq!(valid, 1);
    }

    #[tokio::test]
    async fn removing_a_tgt_removes_its_tickets_and_service_tickets_need_a_live_parent() {
        let reg = MemoryRegistry::new();
        let now = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(now);
        reg.add_tgt(t.clone()).await.unwrap();
        let s = st(&t, now);
        reg.add_service_ticket(s.clone(), LogoutTarget::None, now)
            .await
            .unwrap();
        let removed = reg.remove_tgt(&t.id).await.unwrap().unwrap();
        assert_eq!(removed.issued.len(), 1);
        assert!(matches!(
            reg.redeem(&s.id, now).await.unwrap(),
            Redeemed::Missing
        ));
        assert!(
            !reg.add_service_ticket(st(&t, now), LogoutTarget::None, now)
                .await
                .unwrap()
                .stored()
        );
    }

    #[tokio::test]
    async fn expiry_is_checked_on_read_and_sweep_frees_memory() {
        let reg = MemoryRegistry::new();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(t0);
        reg.add_tgt(t.clone()).await.unwrap();
        let s = st(&t, t0);
        reg.add_service_ticket(s.clone(), LogoutTarget::None, t0)
            .await
            .unwrap();
        let later = t0 + time::Duration::seconds(11);
        assert!(reg.get_tgt(&t.id, later).await.unwrap().is_some());
        assert!(matches!(
            reg.redeem(&s.id, later).await.unwrap(),
            Redeemed::Expired(_)
        ));
        let much_later = t0 + time::Duration::seconds(61);
        assert!(reg.get_tgt(&t.id, much_later).await.unwrap().is_none());
        assert!(
            reg.claim_once("LT-x", t0 + time::Duration::seconds(5))
                .await
                .unwrap()
        );
        assert!(
            !reg.claim_once("LT-x", t0 + time::Duration::seconds(5))
                .await
                .unwrap()
        );
        let swept = reg.sweep(much_later).await.unwrap();
        assert_eq!(swept.freed, 2);
        assert_eq!(swept.expired_sessions.len(), 1);
        assert_eq!(swept.expired_sessions[0].id, t.id);
        assert_eq!(reg.count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_pgt_lives_exactly_as_long_as_its_tgt_and_is_never_redeemed() {
        let reg = MemoryRegistry::new();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(t0);
        reg.add_tgt(t.clone()).await.unwrap();
        let pgt = ProxyGrantingTicket::new(&t.id, "https://a/", vec!["https://a/cb".into()], t0);
        assert!(reg.add_pgt(pgt.clone(), t0).await.unwrap());
        assert!(matches!(
            reg.redeem(&pgt.id, t0).await.unwrap(),
            Redeemed::WrongKind
        ));
        assert!(reg.get_pgt(&pgt.id, t0).await.unwrap().is_some());
        assert!(
            reg.get_pgt(&t.id, t0).await.unwrap().is_none(),
            "a TGT is not a PGT"
        );
        let idle = t0 + time::Duration::seconds(60);
        assert!(
            reg.get_pgt(&pgt.id, idle).await.unwrap().is_none(),
            "expires with its TGT"
        );
        reg.remove_tgt(&t.id).await.unwrap();
        assert_eq!(reg.count().await.unwrap(), 0, "removed with its TGT");
    }

    #[tokio::test]
    async fn issuing_a_service_ticket_slides_the_session() {
        let reg = MemoryRegistry::new();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let t = tgt(t0);
        reg.add_tgt(t.clone()).await.unwrap();
        let at50 = t0 + time::Duration::seconds(50);
        reg.add_service_ticket(st(&t, at50), LogoutTarget::None, at50)
            .await
            .unwrap();
        let at100 = t0 + time::Duration::seconds(100);
        assert!(reg.get_tgt(&t.id, at100).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn sessions_spread_over_shards_are_all_found_and_swept() {
        let reg = MemoryRegistry::new();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let t = tgt(t0);
            ids.push(t.id.clone());
            reg.add_tgt(t).await.unwrap();
        }
        for id in &ids {
            assert!(reg.get_tgt(id, t0).await.unwrap().is_some());
        }
        let swept = reg.sweep(t0 + time::Duration::seconds(61)).await.unwrap();
        assert_eq!(swept.expired_sessions.len(), 1000);
        assert_eq!(reg.count().await.unwrap(), 0);
    }
}
