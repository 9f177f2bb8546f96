//! Logging setup and the audit trail.
//!
//! Tickets, cookies and passwords never appear in a log line: a ticket is logged as its
//! prefix plus a short hash ([`redact`]), enough to correlate lines without being usable.
//! Audit events go to the `cas_audit` target, so operators can route them apart.

use std::io::{Stderr, Write as _};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::crypto::sha256;

/// An error and each of its causes, `first: second: third`, for one log line: every
/// error enum of the server keeps its cause, and this is where it is read.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// How often a repeated fault is logged: the first time in full, then at most once per
/// interval, with the number of occurrences left out since. An outage of the ticket
/// store fails every request, and logging each one wrote 200 000 lines in six seconds.
#[derive(Debug)]
pub struct Repeats {
    interval: Duration,
    /// When the last line was written, and how many occurrences were left out since.
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl Repeats {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left_out)` when this occurrence is to be logged (`left_out` occurrences were
    /// not, since the last line), `None` when it is one of them.
    pub fn admit(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0 {
            Some(at) if now.duration_since(at) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let left_out = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(left_out)
            }
        }
    }
}

/// The interval of the repeated-fault logs of the ticket store and authentication
/// sources ([`Repeats`]).
pub const FAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Logs to stderr, filtered by `RUST_LOG` (default: info for this crate, warnings
/// elsewhere). Returns the flusher to keep until exit, unless stderr is a terminal.
pub fn init() -> Option<LogFlusher> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("cas_server=info,cas_audit=info,warn"));
    // Colours and immediate lines only for a person at a terminal: escape codes cost
    // time and clutter files.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(tty);
    let flusher = if tty { None } else { LogFlusher::start() };
    // A second init (tests that start several servers) is harmless: keep the first.
    match &flusher {
        Some(f) => builder.with_writer(f.buffer.clone()).try_init().ok()?,
        None => builder.with_writer(std::io::stderr).try_init().ok()?,
    }
    flusher
}

type SharedBuffer = Arc<LineBuffer>;

/// Lines waiting to be written. Loggers only append under `pending` (a copy); writing
/// happens under `output`, after taking the whole batch, so a slow stderr (a throttled
/// journal, a full pipe) delays the flusher, not the threads serving requests.
pub struct LineBuffer {
    pending: Mutex<Vec<u8>>,
    output: Mutex<Stderr>,
}

impl LineBuffer {
    /// Above this, the logging thread writes the batch itself: memory stays bounded if
    /// the flusher falls behind.
    const HIGH_WATER: usize = 1 << 20;

    fn new() -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            output: Mutex::new(std::io::stderr()),
        }
    }

    /// Writes out everything pending, in order: batches are taken under `output`.
    fn flush(&self) {
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !batch.is_empty() {
            let _ = output.write_all(&batch);
        }
    }
}

/// Whole lines, one lock each, so lines never interleave.
impl std::io::Write for &LineBuffer {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_all(line).map(|()| line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        let backlog = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.extend_from_slice(line);
            pending.len()
        };
        if backlog > LineBuffer::HIGH_WATER {
            LineBuffer::flush(self);
        }
        Ok(())
    }

    /// The flusher's job, on its schedule.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines are formatted on the thread that logs them and appended to one shared
/// buffer, which a thread writes out every 100 ms. One write system call per batch, and
/// no cross-thread wake-up per line: per-line writes were about a tenth of an SSO
/// cycle's CPU (two audit records per cycle). Dropping the flusher writes out what is
/// pending; a crash loses at most the last 100 ms.
pub struct LogFlusher {
    buffer: SharedBuffer,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogFlusher {
    const EVERY: Duration = Duration::from_millis(100);

    fn start() -> Option<Self> {
        let buffer: SharedBuffer = Arc::new(LineBuffer::new());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (buffer, stop) = (buffer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("cas-log-flush".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(Self::EVERY);
                        buffer.flush();
                    }
                })
                // Without the thread, lines could wait forever: write them directly.
                .ok()?
        };
        Some(Self {
            buffer,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.buffer.flush();
    }
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
        // Hashed only when the audit line is written at all.
        if !tracing::enabled!(target: "cas_audit", tracing::Level::INFO) {
            return;
        }
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
    fn a_repeated_fault_is_logged_once_per_interval_with_the_count_left_out() {
        let repeats = Repeats::new(Duration::from_millis(200));
        assert_eq!(repeats.admit(), Some(0), "the first occurrence is logged");
        for _ in 0..1000 {
            assert_eq!(repeats.admit(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            repeats.admit(),
            Some(1000),
            "then one line says how many were left out"
        );
        assert_eq!(repeats.admit(), None);
    }

    #[test]
    fn redaction_keeps_kind_and_hides_the_secret() {
        let r = redact("ST-abcdefghijklmnopqrstuvwxyz012");
        assert!(r.starts_with("ST-…#"));
        assert!(!r.contains("abcdef"));
        assert_eq!(r, redact("ST-abcdefghijklmnopqrstuvwxyz012"));
        assert!(redact("<script>").starts_with("?-"));
    }
}
