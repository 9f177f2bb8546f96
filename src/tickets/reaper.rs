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
