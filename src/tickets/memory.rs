//! The default registry: one map behind one mutex. Critical sections are a hash lookup
//! or two and never await, so a plain `std` mutex beats an async one here.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    Grant, IssuedTicket, LogoutTarget, ProxyGrantingTicket, Redeemed, RegistryError, ServiceTicket,
    Swept, Ticket, TicketGrantingTicket, TicketRegistry,
};

#[derive(Debug, Default)]
pub struct MemoryRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tickets: HashMap<String, Ticket>,
    claims: HashMap<String, OffsetDateTime>,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written map entry behind
        // (every mutation is a single insert or remove), so the data stays usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn live_tgt_mut(&mut self, id: &str, now: OffsetDateTime) -> Option<&mut TicketGrantingTicket> {
        match self.tickets.get_mut(id) {
            Some(Ticket::Tgt(tgt)) if !tgt.is_expired(now) => Some(tgt),
            _ => None,
        }
    }

    fn remove_tgt(&mut self, id: &str) -> Option<TicketGrantingTicket> {
        let Some(Ticket::Tgt(tgt)) = self.tickets.remove(id) else {
            return None;
        };
        for issued in &tgt.issued {
            if matches!(
                self.tickets.get(&issued.ticket_id),
                Some(Ticket::Service(_))
            ) {
                self.tickets.remove(&issued.ticket_id);
            }
        }
        for pgt in &tgt.proxy_granting {
            if matches!(self.tickets.get(pgt), Some(Ticket::ProxyGranting(_))) {
                self.tickets.remove(pgt);
            }
        }
        Some(tgt)
    }

    fn has_live_tgt(&self, id: &str, now: OffsetDateTime) -> bool {
        matches!(self.tickets.get(id), Some(Ticket::Tgt(tgt)) if !tgt.is_expired(now))
    }
}

#[async_trait]
impl TicketRegistry for MemoryRegistry {
    async fn add_tgt(&self, tgt: TicketGrantingTicket) -> Result<(), RegistryError> {
        self.lock().tickets.insert(tgt.id.clone(), Ticket::Tgt(tgt));
        Ok(())
    }

    async fn get_tgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        Ok(self.lock().live_tgt_mut(id, now).map(|t| t.clone()))
    }

    async fn add_service_ticket(
        &self,
        ticket: ServiceTicket,
        logout: LogoutTarget,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let mut inner = self.lock();
        let Some(tgt) = inner.live_tgt_mut(&ticket.tgt_id, now) else {
            return Ok(false);
        };
        if ticket.grant == Grant::Service {
            tgt.last_used_at = now;
        }
        tgt.record_issued(IssuedTicket {
            ticket_id: ticket.id.clone(),
            service: ticket.service.clone(),
            logout,
        });
        inner
            .tickets
            .insert(ticket.id.clone(), Ticket::Service(ticket));
        Ok(true)
    }

    async fn redeem(&self, id: &str, now: OffsetDateTime) -> Result<Redeemed, RegistryError> {
        let mut inner = self.lock();
        match inner.tickets.get(id) {
            None => return Ok(Redeemed::Missing),
            Some(Ticket::Tgt(_) | Ticket::ProxyGranting(_)) => return Ok(Redeemed::WrongKind),
            Some(Ticket::Service(_)) => {}
        }
        let Some(Ticket::Service(st)) = inner.tickets.remove(id) else {
            return Ok(Redeemed::Missing);
        };
        Ok(if st.is_expired(now) {
            Redeemed::Expired(st)
        } else {
            Redeemed::Valid(st)
        })
    }

    async fn add_pgt(
        &self,
        pgt: ProxyGrantingTicket,
        now: OffsetDateTime,
    ) -> Result<bool, RegistryError> {
        let mut inner = self.lock();
        let Some(tgt) = inner.live_tgt_mut(&pgt.tgt_id, now) else {
            return Ok(false);
        };
        if let Some(evicted) = tgt.record_pgt(pgt.id.clone()) {
            inner.tickets.remove(&evicted);
        }
        inner
            .tickets
            .insert(pgt.id.clone(), Ticket::ProxyGranting(pgt));
        Ok(true)
    }

    async fn get_pgt(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ProxyGrantingTicket>, RegistryError> {
        let inner = self.lock();
        match inner.tickets.get(id) {
            Some(Ticket::ProxyGranting(pgt)) if inner.has_live_tgt(&pgt.tgt_id, now) => {
                Ok(Some(pgt.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn remove_pgt(&self, id: &str) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if let Some(Ticket::ProxyGranting(pgt)) = inner.tickets.remove(id)
            && let Some(Ticket::Tgt(tgt)) = inner.tickets.get_mut(&pgt.tgt_id)
        {
            tgt.proxy_granting.retain(|p| p != id);
        }
        Ok(())
    }

    async fn remove_tgt(&self, id: &str) -> Result<Option<TicketGrantingTicket>, RegistryError> {
        Ok(self.lock().remove_tgt(id))
    }

    async fn claim_once(&self, key: &str, until: OffsetDateTime) -> Result<bool, RegistryError> {
        let mut inner = self.lock();
        if inner.claims.contains_key(key) {
            return Ok(false);
        }
        inner.claims.insert(key.to_owned(), until);
        Ok(true)
    }

    async fn sweep(&self, now: OffsetDateTime) -> Result<Swept, RegistryError> {
        let mut inner = self.lock();
        let expired: Vec<String> = inner
            .tickets
            .iter()
            .filter(|(_, t)| match t {
                Ticket::Tgt(tgt) => tgt.is_expired(now),
                Ticket::Service(st) => st.is_expired(now),
                // Normally removed with its TGT; this catches a parent that is already gone.
                Ticket::ProxyGranting(pgt) => !inner.has_live_tgt(&pgt.tgt_id, now),
            })
            .map(|(id, _)| id.clone())
            .collect();
        let before = inner.tickets.len() + inner.claims.len();
        let mut expired_sessions = Vec::new();
        for id in expired {
            match inner.remove_tgt(&id) {
                Some(tgt) => expired_sessions.push(tgt),
                None => {
                    inner.tickets.remove(&id);
                }
            }
        }
        inner.claims.retain(|_, until| *until > now);
        Ok(Swept {
            freed: before - inner.tickets.len() - inner.claims.len(),
            expired_sessions,
        })
    }

    async fn count(&self) -> Result<usize, RegistryError> {
        Ok(self.lock().tickets.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
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

    #[tokio::test]
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
}
