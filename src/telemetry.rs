//! Logging setup and the audit trail.
//!
//! Tickets, cookies and passwords never appear in a log line: a ticket is logged as its
//! prefix plus a short hash ([`redact`]), enough to correlate lines without being usable.
//! Audit events go to the `cas_audit` target, so operators can route them apart.

use std::net::IpAddr;

use tracing_subscriber::EnvFilter;

use crate::crypto::sha256;

/// Logs to stderr, filtered by `RUST_LOG` (default: info for this crate, warnings elsewhere).
/// Logs and audit events go to stderr through a background writer: formatting stays
/// on the request path, but the write system calls (two thirds of logging's cost in an
/// SSO-cycle profile, more on a slow disk) move to one thread that batches lines. Never lossy:
/// when the queue is full, requests wait rather than drop audit records. Keep the guard
/// until exit; dropping it flushes what is queued.
#[must_use = "dropping the guard stops and flushes the log writer"]
pub fn init() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("cas_server=info,cas_audit=info,warn"));
    // Colours only for a person at a terminal: escape codes cost time and clutter files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The default, 128 000 lines, preallocates 4 MiB; this is plenty to absorb bursts.
        .buffered_lines_limit(4096)
        .thread_name("cas-log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    // A second init (tests that start several servers) is harmless: keep the first.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .try_init()
        .ok()
        .map(|()| guard)
}

/// `ST-…#1a2b3c4d`: the ticket's kind and a short hash, never the ticket.
pub fn redact(ticket: &str) -> String {
    let prefix = ticket
        .split_once('-')
        .map(|(p, _)| p)
        .filter(|p| p.len() <= 6 && p.chars().all(|c| c.is_ascii_uppercase()))
        .unwrap_or("?");
    let hash = sha256(ticket.as_bytes());
    format!(
        "{prefix}-…#{:02x}{:02x}{:02x}{:02x}",
        hash[0], hash[1], hash[2], hash[3]
    )
}

/// The audit events; one function each so their fields stay consistent.
pub mod audit {
    use super::*;

    pub fn login_succeeded(user: &str, service: Option<&str>, ip: IpAddr) {
        tracing::info!(target: "cas_audit", event = "login_success", user, service, %ip);
    }

    pub fn login_failed(user: &str, service: Option<&str>, ip: IpAddr, reason: &str) {
        tracing::info!(target: "cas_audit", event = "login_failure", user, service, %ip, reason);
    }

    pub fn login_throttled(user: &str, ip: IpAddr) {
        tracing::warn!(target: "cas_audit", event = "login_throttled", user, %ip);
    }

    pub fn ticket_issued(ticket: &str, user: &str, service: &str, ip: IpAddr) {
        tracing::info!(target: "cas_audit", event = "ticket_issued", ticket = %redact(ticket), user, service, %ip);
    }

    pub fn ticket_validated(
        ticket: Option<&str>,
        endpoint: &str,
        service: Option<&str>,
        outcome: Result<&str, &str>,
        ip: IpAddr,
    ) {
        let ticket = ticket.map(redact);
        match outcome {
            Ok(user) => {
                tracing::info!(target: "cas_audit", event = "ticket_validated", ticket, endpoint, service, user, %ip)
            }
            Err(code) => {
                tracing::info!(target: "cas_audit", event = "ticket_validation_failed", ticket, endpoint, service, code, %ip)
            }
        }
    }

    pub fn proxy_ticket_issued(outcome: Result<&str, &str>, target: Option<&str>, ip: IpAddr) {
        match outcome {
            Ok(ticket) => {
                tracing::info!(target: "cas_audit", event = "proxy_ticket_issued", ticket = %redact(ticket), target_service = target, %ip)
            }
            Err(code) => {
                tracing::info!(target: "cas_audit", event = "proxy_ticket_refused", code, target_service = target, %ip)
            }
        }
    }

    pub fn logged_out(user: Option<&str>, ip: IpAddr) {
        tracing::info!(target: "cas_audit", event = "logout", user, %ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_kind_and_hides_the_secret() {
        let r = redact("ST-abcdefghijklmnopqrstuvwxyz012");
        assert!(r.starts_with("ST-…#"));
        assert!(!r.contains("abcdef"));
        assert_eq!(r, redact("ST-abcdefghijklmnopqrstuvwxyz012"));
        assert!(redact("<script>").starts_with("?-"));
    }
}
