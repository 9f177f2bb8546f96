//! Periodic sweep of expired tickets. Only frees memory: every read already checks expiry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::TicketRegistry;
use crate::clock::Clock;

/// Sweeps every `every` until `shutdown` turns true (or its sender is dropped).
pub fn spawn(
    registry: Arc<dyn TicketRegistry>,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => match registry.sweep(clock.now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(freed = n, "reaper swept expired tickets"),
                    Err(e) => tracing::warn!(error = %e, "reaper could not sweep"),
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
        let handle = spawn(
            registry.clone(),
            Arc::new(clock),
            Duration::from_millis(5),
            stopped,
        );

        let mut emptied = false;
        for _ in 0..200 {
            if registry.count().await.unwrap() == 0 {
                emptied = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();

        assert!(emptied, "the expired session was swept");
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("the reaper stops when told")
            .unwrap();
    }
}
