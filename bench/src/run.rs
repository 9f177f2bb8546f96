//! The load runs: `sso`, `login` and `sessions`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::{Http, Jar, encode, find_login_form, resolve, ticket_in};
use super::{BenchError, Failures, Report, Samples};

/// Longest run `cas-bench` accepts, whatever is asked.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The CAS base URL, e.g. `http://127.0.0.1:8080/cas`.
    pub base: String,
    pub service: String,
    pub username: String,
    pub password: String,
    pub concurrency: usize,
    pub duration: Duration,
    /// Stop after this many cycles (or logins) in all.
    pub max_requests: u64,
}

impl LoadOptions {
    fn check(&self) -> Result<(), BenchError> {
        if !self.base.starts_with("http://") {
            return Err(BenchError::Usage(format!(
                "{}: cas-bench speaks plain HTTP; benchmark on loopback or behind the TLS terminator",
                self.base
            )));
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(BenchError::Usage(
                "concurrency must be between 1 and 4096".into(),
            ));
        }
        Ok(())
    }

    fn login_url(&self) -> String {
        format!(
            "{}/login?service={}",
            self.base.trim_end_matches('/'),
            encode(&self.service)
        )
    }

    fn validate_url(&self, ticket: &str) -> String {
        format!(
            "{}/serviceValidate?service={}&ticket={}",
            self.base.trim_end_matches('/'),
            encode(&self.service),
            encode(ticket)
        )
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.duration.min(MAX_DURATION)
    }
}

/// Logs in through the HTML form, as a browser: keeps hidden fields and cookies.
/// Returns the jar holding the SSO cookie and the ticket of the redirect.
pub async fn login_once(http: &Http, opts: &LoadOptions) -> Result<(Jar, String), BenchError> {
    let mut jar = Jar::default();
    let page_url = opts.login_url();
    let page = http.get(&page_url, &jar).await?;
    jar.store(&page.set_cookies);
    if page.status != 200 {
        return Err(BenchError::Login(format!(
            "GET {page_url} answered {}",
            page.status
        )));
    }
    let html = String::from_utf8_lossy(&page.body);
    let form = find_login_form(&html).ok_or_else(|| {
        BenchError::Login(format!("no login form with a password field at {page_url}"))
    })?;
    let encoded = {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &form.fields {
            match name.as_str() {
                "username" => body.append_pair(name, &opts.username),
                "password" => body.append_pair(name, &opts.password),
                _ => body.append_pair(name, value),
            };
        }
        body.finish()
    };
    let action = resolve(&page_url, form.action.as_deref())?;
    let answer = http.post_form(&action, encoded, &jar).await?;
    jar.store(&answer.set_cookies);
    // Success is what a browser sees: a redirect back to the service with a ticket. A
    // failed login is a page again, whatever its status (CAS servers differ).
    let ticket = answer.location.as_deref().and_then(ticket_in);
    let Some(ticket) = ticket.filter(|_| matches!(answer.status, 302 | 303)) else {
        return Err(BenchError::Login(format!(
            "POST {action} answered {} without a ticket (wrong username or password?)",
            answer.status
        )));
    };
    Ok((jar, ticket))
}

/// `sso`: one login, then `concurrency` workers loop GET `/login` with the session cookie
/// and validate each ticket, until the deadline or the request budget.
pub async fn sso_load(opts: &LoadOptions) -> Result<Report, BenchError> {
    opts.check()?;
    let http = Http::new(Duration::from_secs(10));
    let (jar, _) = login_once(&http, opts).await?;
    let expected_user = user_element(&opts.username);
    let budget = Arc::new(AtomicU64::new(opts.max_requests));
    let deadline = opts.deadline();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (http, jar, opts, budget, expected_user) = (
            http.clone(),
            jar.clone(),
            opts.clone(),
            budget.clone(),
            expected_user.clone(),
        );
        workers.push(tokio::spawn(async move {
            let (mut cycle, mut login, mut validate) =
                (Samples::default(), Samples::default(), Samples::default());
            let mut failures = Failures::default();
            let login_url = opts.login_url();
            while Instant::now() < deadline && take(&budget) {
                let t0 = Instant::now();
                let Ok(redirect) = http.get(&login_url, &jar).await else {
                    failures.transport += 1;
                    continue;
                };
                let t1 = Instant::now();
                login.push(t1 - t0);
                let Some(ticket) = redirect.location.as_deref().and_then(ticket_in) else {
                    failures.no_ticket += 1;
                    continue;
                };
                match http.get(&opts.validate_url(&ticket), &Jar::default()).await {
                    Ok(r) if validated(&r, &expected_user) => {
                        let t2 = Instant::now();
                        validate.push(t2 - t1);
                        cycle.push(t2 - t0);
                    }
                    Ok(_) => failures.validation += 1,
                    Err(_) => failures.transport += 1,
                }
            }
            (cycle, login, validate, failures)
        }));
    }
    let (mut cycle, mut login, mut validate) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut failures = Failures::default();
    for worker in workers {
        let (c, l, v, f) = worker
            .await
            .map_err(|e| BenchError::Transport(e.to_string()))?;
        cycle.merge(c);
        login.merge(l);
        validate.merge(v);
        failures.add(&f);
    }
    let mut report = Report::new("sso", opts.concurrency, started, cycle, failures);
    report.login_request = Some(login.summary());
    report.validate_request = Some(validate.summary());
    Ok(report)
}

/// `login`: full password logins, each in a fresh cookie jar.
pub async fn login_load(opts: &LoadOptions) -> Result<Report, BenchError> {
    opts.check()?;
    let http = Http::new(Duration::from_secs(30));
    // One login first: a wrong password stops here with a clear error.
    login_once(&http, opts).await?;
    let budget = Arc::new(AtomicU64::new(opts.max_requests));
    let deadline = opts.deadline();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (http, opts, budget) = (http.clone(), opts.clone(), budget.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut failures = Failures::default();
            while Instant::now() < deadline && take(&budget) {
                let t0 = Instant::now();
                match login_once(&http, &opts).await {
                    Ok(_) => samples.push(t0.elapsed()),
                    Err(BenchError::Transport(_)) => failures.transport += 1,
                    Err(_) => failures.login += 1,
                }
            }
            (samples, failures)
        }));
    }
    let mut samples = Samples::default();
    let mut failures = Failures::default();
    for worker in workers {
        let (s, f) = worker
            .await
            .map_err(|e| BenchError::Transport(e.to_string()))?;
        samples.merge(s);
        failures.add(&f);
    }
    Ok(Report::new(
        "login",
        opts.concurrency,
        started,
        samples,
        failures,
    ))
}

fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// A CAS 2/3 success document for the expected user (`<cas:user>…</cas:user>`, which
/// only a success carries): a `200` alone says nothing, failures are `200` too.
fn validated(reply: &super::http::Reply, expected_user: &str) -> bool {
    reply.status == 200
        && reply
            .body
            .windows(expected_user.len())
            .any(|w| w == expected_user.as_bytes())
}

fn user_element(username: &str) -> String {
    format!("<cas:user>{username}</cas:user>")
}

/// What `sessions` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SessionsReport {
    pub requested: u64,
    /// Sessions created, each with one validated ticket.
    pub sessions: u64,
    pub seconds: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Growth of resident memory over the sessions created.
    pub bytes_per_session: Option<f64>,
    pub failures: u64,
}

/// `sessions N`: N password logins, each leaving an SSO session with one validated
/// ticket; with the server's pid, its resident memory before and after. Stops after
/// [`MAX_DURATION`] whatever N is.
pub async fn sessions(
    opts: &LoadOptions,
    count: u64,
    pid: Option<u32>,
) -> Result<SessionsReport, BenchError> {
    opts.check()?;
    let http = Http::new(Duration::from_secs(30));
    login_once(&http, opts).await?;
    let before = pid.and_then(rss_kib);
    let next = Arc::new(AtomicU64::new(count));
    let (created, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let expected_user = user_element(&opts.username);
    let started = Instant::now();
    let deadline = started + MAX_DURATION;
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (http, opts, next, created, failures, expected_user) = (
            http.clone(),
            opts.clone(),
            next.clone(),
            created.clone(),
            failures.clone(),
            expected_user.clone(),
        );
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline && take(&next) {
                let ok = match login_once(&http, &opts).await {
                    Ok((_, ticket)) => http
                        .get(&opts.validate_url(&ticket), &Jar::default())
                        .await
                        .is_ok_and(|r| validated(&r, &expected_user)),
                    Err(_) => false,
                };
                let counter = if ok { &created } else { &failures };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| BenchError::Transport(e.to_string()))?;
    }
    let after = pid.and_then(rss_kib);
    let created = created.load(Ordering::Relaxed);
    Ok(SessionsReport {
        requested: count,
        sessions: created,
        seconds: started.elapsed().as_secs_f64(),
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_session: before
            .zip(after)
            .filter(|_| created > 0)
            .map(|(b, a)| (a.saturating_sub(b) as f64 * 1024.0) / created as f64),
        failures: failures.load(Ordering::Relaxed),
    })
}

/// Resident memory of a local process, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
