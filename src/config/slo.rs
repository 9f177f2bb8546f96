//! `[slo]`: single logout, and the pool that sends its back-channel messages.

use std::time::Duration;

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    enabled: bool,
    workers: u32,
    queue_capacity: u32,
    timeout: String,
    on_expiry: bool,
    shutdown_grace: String,
}

/// Single logout (SLO-01..12).
#[derive(Debug, Clone)]
pub struct Slo {
    pub enabled: bool,
    /// Back-channel messages in flight at once.
    pub workers: usize,
    /// Messages waiting for a worker; beyond it new messages are dropped.
    pub queue_capacity: usize,
    /// Longest one back-channel message may take.
    pub timeout: Duration,
    /// Also notify services when a session ends by idle or hard timeout.
    pub on_expiry: bool,
    /// How long a graceful shutdown waits for queued messages to go out.
    pub shutdown_grace: Duration,
}

impl Section for Raw {
    const NAME: &'static str = "slo";
    type Checked = Slo;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Slo> {
        let timeout = cx.duration("timeout", &self.timeout);
        let shutdown_grace = cx.duration("shutdown_grace", &self.shutdown_grace);
        let counts = [
            cx.within("workers", self.workers as usize, 1..=1024),
            cx.within(
                "queue_capacity",
                self.queue_capacity as usize,
                1..=1_000_000,
            ),
        ];
        if counts.contains(&false) {
            return None;
        }
        Some(Slo {
            enabled: self.enabled,
            workers: self.workers as usize,
            queue_capacity: self.queue_capacity as usize,
            timeout: timeout?,
            on_expiry: self.on_expiry,
            shutdown_grace: shutdown_grace?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn slo_mistakes_name_the_file_and_key() {
        let e = load_text("[slo]\nworkers = 0\nqueue_capacity = 2000000\ntimeout = \"-1s\"\n")
            .unwrap_err();
        assert_eq!(
            keys(&e),
            ["slo.timeout", "slo.workers", "slo.queue_capacity"]
        );
        assert_problem(&e, "slo.workers", "between 1 and 1024");
    }
}
