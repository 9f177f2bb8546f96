//! `cas-bench`: a load generator for any CAS server, a do-nothing "null" CAS server that
//! marks the machine's ceiling, and a comparison of the two.
//!
//! The SSO cycle is what a CAS server does most: a browser with a session asks `/login`
//! for a service and is redirected with a ticket, and the application validates it.

mod compare;
pub mod http;
mod null;
mod run;

use std::time::Duration;

use serde::Serialize;

pub use compare::{CompareOptions, Comparison, ReaperReport, compare};
pub use null::{NULL_TICKET, NULL_USER, serve_null};
pub use run::{LoadOptions, MAX_DURATION, SessionsReport, login_load, rss_kib, sessions, sso_load};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Transport(String),
    /// The initial login could not be completed: the benchmark cannot run.
    #[error("login failed: {0}")]
    Login(String),
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u32>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50, p90, p99 and max, in milliseconds.
    pub fn summary(&mut self) -> Latency {
        self.0.sort_unstable();
        let at = |q: f64| {
            if self.0.is_empty() {
                return 0.0;
            }
            let index = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            f64::from(self.0[index]) / 1000.0
        };
        Latency {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Failures by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Failures {
    /// Connection errors and timeouts.
    pub transport: u64,
    /// `/login` did not redirect with a ticket.
    pub no_ticket: u64,
    /// Validation did not answer success for the expected user.
    pub validation: u64,
    /// A password login did not succeed.
    pub login: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.transport + self.no_ticket + self.validation + self.login
    }

    fn add(&mut self, other: &Failures) {
        self.transport += other.transport;
        self.no_ticket += other.no_ticket;
        self.validation += other.validation;
        self.login += other.login;
    }
}

/// The result of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub concurrency: usize,
    pub seconds: f64,
    /// Completed cycles (or logins) per second.
    pub per_second: f64,
    pub completed: u64,
    pub failures: Failures,
    /// Whole cycle (or login).
    pub latency: Latency,
    /// `GET /login` with the session (SSO only).
    pub login_request: Option<Latency>,
    /// `GET /serviceValidate` (SSO only).
    pub validate_request: Option<Latency>,
}

impl Report {
    /// A run that began at `started` and just ended, one sample per completed unit.
    pub fn new(
        kind: &'static str,
        concurrency: usize,
        started: std::time::Instant,
        mut samples: Samples,
        failures: Failures,
    ) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        Self {
            kind,
            concurrency,
            seconds,
            per_second: samples.len() as f64 / seconds,
            completed: samples.len() as u64,
            failures,
            latency: samples.summary(),
            login_request: None,
            validate_request: None,
        }
    }

    pub fn print(&self) {
        println!(
            "{} c={} {:.1}s: {:.0}/s, {} done, {} failed (transport {}, no ticket {}, validation {}, login {})",
            self.kind,
            self.concurrency,
            self.seconds,
            self.per_second,
            self.completed,
            self.failures.total(),
            self.failures.transport,
            self.failures.no_ticket,
            self.failures.validation,
            self.failures.login,
        );
        let line = |name: &str, l: &Latency| {
            println!(
                "  {name:<10} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        };
        line("cycle", &self.latency);
        if let Some(l) = &self.login_request {
            line("/login", l);
        }
        if let Some(l) = &self.validate_request {
            line("/validate", l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let mut s = Samples::default();
        for ms in (1..=100).rev() {
            s.push(Duration::from_millis(ms));
        }
        let l = s.summary();
        assert_eq!(l.p50_ms, 51.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Samples::default().summary(), Latency::default());
    }
}
