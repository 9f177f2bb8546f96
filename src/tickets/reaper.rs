//! Periodic sweep of expired tickets. Only frees memory: every read already checks expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{TicketGrantingTicket, TicketRegistry};
use crate::clock::Clock;

/// Told about sessions that ended by expiry (single logout on expiry), or by a logout
/// whose answer was lost (single logout owed).
pub type OnExpired = Arc<dyn Fn(Vec<TicketGrantingTicket>) + Send + Sync>;

/// Who is told what a sweep found.
#[derive(Clone, Default)]
pub struct Listeners {
    /// Sessions that ended by expiry.
    pub expired: Option<OnExpired>,
    /// Sessions a logout ended whose single logout was never sent.
    pub orphaned_logouts: Option<OnExpired>,
}

/// Sweeps every `every` until `shutdown` turns true (or its sender is dropped).
pub fn spawn(
    registry: Arc<dyn TicketRegistry>,
    clock: Arc<dyn Clock>,
    every: Duration,
    listeners: Listeners,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => match registry.sweep(clock.now()).await {
                    Ok(swept) => {
                        if swept.freed > 0 {
                            tracing::debug!(freed = swept.freed, "reaper swept expired tickets");
                        }
                        if let Some(notify) = &listeners.expired
                            && !swept.expired_sessions.is_empty()
                        {
                            notify(swept.expired_sessions);
                        }
                        if let Some(notify) = &listeners.orphaned_logouts
                            && !swept.orphaned_logouts.is_empty()
                        {
                            notify(swept.orphaned_logouts);
                        }
                    }
                    Err(e) => tracing::warn!(error = %crate::telemetry::Chain(&e), "reaper could not sweep"),
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        tracing::debug!("reaper stopped");
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::ManualClock;
    use crate::tickets::{ExpirationPolicy, MemoryRegistry, Principal, TicketGrantingTicket};

    #[tokio::test]
    async fn the_reaper_frees_expired_tickets_and_stops_on_shutdown() {
        let clock = ManualClock::new();
        let registry = Arc::new(MemoryRegistry::new());
        let ttl = Duration::from_secs(60);
        registry
            .add_tgt(TicketGrantingTicket::new(
                Principal {
                    id: "alice".into(),
                    attributes: BTreeMap::new(),
                },
                clock.now(),
                ExpirationPolicy::sliding(ttl, ttl),
                false,
            ))
            .await
            .unwrap();
        clock.advance(ttl);
        let (stop, stopped) = watch::channel(false);
        let notified = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notified.clone();
        let on_expired: OnExpired = Arc::new(move |tgts: Vec<TicketGrantingTicket>| {
            sink.lock()
                .unwrap()
                .extend(tgts.into_iter().map(|t| t.principal.id));
        });
        let handle = spawn(
            registry.clone(),
            Arc::new(clock),
            Duration::from_millis(5),
            Listeners {
                expired: Some(on_expired),
                orphaned_logouts: None,
            },
            stopped,
        );

        let mut emptied = false;
        for _ in 0..200 {
            // The sweep removes the session, then reports it: wait for both.
            if registry.count().await.unwrap() == 0 && !notified.lock().unwrap().is_empty() {
                emptied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();

        assert!(emptied, "the expired session was swept");
        assert_eq!(*notified.lock().unwrap(), vec!["alice".to_owned()]);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the reaper stops when told")
            .unwrap();
    }
}
