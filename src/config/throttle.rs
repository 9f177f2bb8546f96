//! `[throttle]`: failed-login throttling per username and client, and per client.

use std::time::Duration;

use serde::Deserialize;

use super::Section;
use super::report::Scope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    enabled: bool,
    threshold: u32,
    ip_threshold: u32,
    window: String,
    ip_delay: String,
    max_entries: usize,
}

/// Failed-login throttling (THR-01..05).
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub enabled: bool,
    /// Failures per client IP and username within `window` before blocking.
    pub threshold: u32,
    /// Failed password checks per client IP (any username) within `window` before the
    /// address is slowed.
    pub ip_threshold: u32,
    pub window: Duration,
    /// The spacing of password checks from a slowed address.
    pub ip_delay: Duration,
    /// Bound on remembered IPs and IP+username pairs (oldest evicted first).
    pub max_entries: usize,
}

impl Section for Raw {
    const NAME: &'static str = "throttle";
    type Checked = Throttle;

    fn validate(self, cx: &mut Scope<'_>) -> Option<Throttle> {
        let window = cx.duration("window", &self.window);
        let ip_delay = cx.duration("ip_delay", &self.ip_delay);
        // At least 1: throttling is turned off with `enabled = false`, not with zeros.
        let counts = [
            cx.within("threshold", self.threshold as usize, 1..=1_000_000),
            cx.within("ip_threshold", self.ip_threshold as usize, 1..=1_000_000),
            // Each table preallocates its capacity.
            cx.within("max_entries", self.max_entries, 1..=1_000_000),
        ];
        if counts.contains(&false) {
            return None;
        }
        Some(Throttle {
            enabled: self.enabled,
            threshold: self.threshold,
            ip_threshold: self.ip_threshold,
            window: window?,
            ip_delay: ip_delay?,
            max_entries: self.max_entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    #[test]
    fn throttle_mistakes_name_the_file_and_key() {
        let e =
            load_text("[throttle]\nthreshold = 0\nwindow = \"10 minutes please\"\n").unwrap_err();
        assert_eq!(keys(&e), ["throttle.window", "throttle.threshold"]);
        assert_problem(&e, "throttle.threshold", "between 1 and 1000000");
    }
}
