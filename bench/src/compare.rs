//! `compare`: our release server and the null server started in turn on loopback, the
//! same loads run against each, so the ratio holds on a noisy machine.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::http::{Http, Jar};
use crate::run::{LoadOptions, SessionsReport, login_load, rss_kib, sessions, sso_load};
use crate::{BenchError, Report};

/// User plus system CPU time of a local process, from `/proc/<pid>/stat` (fields 14
/// and 15, in clock ticks: `USER_HZ`, 100 on every Linux architecture we build for).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// A server process started for a comparison; killed when dropped.
struct Spawned {
    child: Child,
    base: String,
    started: Instant,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` and reads its `listening on http://…` line (30 s at most). Its
/// stderr (logs, audit records) goes to `log` when given, as in production, where
/// writing them is part of the cost.
fn spawn(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> Result<Spawned, BenchError> {
    let started = Instant::now();
    let stderr = match log {
        Some(path) => Stdio::from(
            std::fs::File::create(path)
                .map_err(|e| BenchError::Usage(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Stdio::null(),
    };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| BenchError::Usage(format!("cannot start {}: {e}", program.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Usage("no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        let _ = child.kill();
        BenchError::Usage(format!(
            "{} did not report a listening address",
            program.display()
        ))
    })?;
    Ok(Spawned {
        child,
        base,
        started,
    })
}

/// From process start to the first `200` on `/login`.
async fn time_to_first_login_page(server: &Spawned) -> Result<Duration, BenchError> {
    let http = Http::new(Duration::from_secs(5));
    let url = format!("{}/login", server.base);
    for _ in 0..10_000 {
        if http
            .get(&url, &Jar::default())
            .await
            .is_ok_and(|r| r.status == 200)
        {
            return Ok(server.started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(BenchError::Transport(
        "the server never served /login".into(),
    ))
}

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub server_bin: PathBuf,
    pub bench_bin: PathBuf,
    pub duration: Duration,
    pub concurrency: Vec<usize>,
    pub sessions: u64,
    /// With `sessions`: also let that many sessions expire at once on a fresh server and
    /// measure SSO while the reaper sweeps them.
    pub reaper: bool,
    /// Also run the SSO loads against a server on the Redis store at this URL.
    pub redis: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Pair {
    pub concurrency: usize,
    pub server: Report,
    pub null: Report,
    /// Server cycles/s over null cycles/s.
    pub throughput_ratio: f64,
    /// Server cycle p99 over null cycle p99.
    pub p99_ratio: f64,
    /// CPU time (user + system) each process spent per cycle, in microseconds: steadier
    /// than throughput on a shared machine.
    pub server_cpu_us_per_cycle: Option<f64>,
    pub null_cpu_us_per_cycle: Option<f64>,
    /// With the Redis store: redis-server's own CPU per cycle, when it runs on this
    /// machine (found through `INFO server`).
    pub store_cpu_us_per_cycle: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub pairs: Vec<Pair>,
    /// Demo config: process start to the first login page.
    pub startup_ms: f64,
    pub idle_rss_kib: Option<u64>,
    pub null_idle_rss_kib: Option<u64>,
    pub logins: Option<Report>,
    pub cpu_ms_per_login: Option<f64>,
    /// SSO at the smallest concurrency while a login flood runs.
    pub sso_during_login_flood: Option<Report>,
    /// The flood itself (8 workers of password logins).
    pub login_flood: Option<Report>,
    /// How much SSO throughput the flood took: 0.3 = 30 % fewer cycles than without it.
    pub flood_slowdown: Option<f64>,
    pub sessions: Option<SessionsReport>,
    /// SSO at the largest concurrency with `sessions` live SSO sessions.
    pub sso_with_sessions: Option<Report>,
    pub reaper: Option<ReaperReport>,
    /// With `--redis`: the SSO loads again on the Redis store, against the same null runs.
    pub redis_pairs: Vec<Pair>,
}

/// SSO in one-second windows around a sweep that expires `sessions` sessions at once.
#[derive(Debug, Serialize)]
pub struct ReaperReport {
    pub sessions: u64,
    /// Seconds after the server started when the sweep was due.
    pub sweep_due_s: f64,
    /// Median cycle p99 of the windows before the sweep.
    pub normal_p99_ms: f64,
    /// Worst cycle p99 of the windows from one second before the sweep to ten after.
    pub sweep_p99_ms: f64,
    /// `sweep_p99_ms / normal_p99_ms`.
    pub p99_ratio: f64,
    /// Lowest cycles/s of a window around the sweep, and the median before it.
    pub sweep_min_per_second: f64,
    pub normal_per_second: f64,
    pub rss_before_sweep_kib: Option<u64>,
    pub rss_after_sweep_kib: Option<u64>,
    /// (seconds since server start, cycles/s, p99 ms) of each window.
    pub windows: Vec<(f64, f64, f64)>,
}

/// A configuration for the comparison: the demo's service pattern, a user with the
/// default (expensive) hash for the login figures, and one with a cheap hash so that
/// creating many sessions measures memory, not argon2. Throttling is off: every request
/// comes from one address.
fn bench_config(extra: &str) -> Result<String, BenchError> {
    use argon2::password_hash::PasswordHasher as _;
    let cheap = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, None).map_err(|e| BenchError::Usage(e.to_string()))?,
    )
    .hash_password(b"bench-password")
    .map_err(|e| BenchError::Usage(e.to_string()))?
    .to_string();
    let full =
        cas_server::auth::hash_password("Mellon").map_err(|e| BenchError::Usage(e.to_string()))?;
    Ok(format!(
        "[server]\nbind = \"127.0.0.1:0\"\n[tgc]\nsecure = false\n[throttle]\nenabled = false\n\
         [[users]]\nusername = \"casuser\"\npassword_hash = \"{full}\"\n\
         [[users]]\nusername = \"bench\"\npassword_hash = \"{cheap}\"\n\
         [[services]]\nid = 1\nname = \"Bench\"\npattern = 'regex:http://localhost(:\\d+)?/.*'\n{extra}"
    ))
}

pub async fn compare(opts: &CompareOptions) -> Result<Comparison, BenchError> {
    if opts.reaper && opts.sessions == 0 {
        return Err(BenchError::Usage(
            "--reaper needs --sessions N: the sessions it lets expire".into(),
        ));
    }
    let load = |base: &str, user: &str, password: &str, concurrency: usize, duration: Duration| {
        LoadOptions {
            base: base.to_owned(),
            service: "http://localhost/app".into(),
            username: user.into(),
            password: password.into(),
            concurrency,
            duration,
            max_requests: u64::MAX,
        }
    };
    // Startup and idle memory, on the demo configuration.
    let demo = spawn(
        &opts.server_bin,
        &[],
        &[("CAS__SERVER__BIND", "127.0.0.1:0")],
        None,
    )?;
    let startup = time_to_first_login_page(&demo).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = rss_kib(demo.child.id());
    drop(demo);

    let dir = tempfile_dir()?;
    let config = dir.join("bench.toml");
    std::fs::write(&config, bench_config("")?).map_err(|e| BenchError::Usage(e.to_string()))?;
    let config_arg = config.to_string_lossy().into_owned();
    let server = spawn(
        &opts.server_bin,
        &["--config", &config_arg],
        &[],
        Some(&dir.join("server.log")),
    )?;
    let null = spawn(&opts.bench_bin, &["null-server"], &[], None)?;
    let null_idle_rss = rss_kib(null.child.id());

    let mut pairs = Vec::new();
    // CPU per cycle of `pid` over one run.
    let per_cycle = |pid: u32, before: Option<f64>, report: &Report| {
        cpu_seconds(pid)
            .zip(before)
            .map(|(after, before)| (after - before) * 1e6 / report.completed.max(1) as f64)
    };
    for &c in &opts.concurrency {
        let before = cpu_seconds(server.child.id());
        let ours = sso_load(&load(&server.base, "casuser", "Mellon", c, opts.duration)).await?;
        let server_cpu_us_per_cycle = per_cycle(server.child.id(), before, &ours);
        let before = cpu_seconds(null.child.id());
        let theirs = sso_load(&load(&null.base, super::NULL_USER, "x", c, opts.duration)).await?;
        let null_cpu_us_per_cycle = per_cycle(null.child.id(), before, &theirs);
        pairs.push(Pair {
            concurrency: c,
            server_cpu_us_per_cycle,
            null_cpu_us_per_cycle,
            store_cpu_us_per_cycle: None,
            throughput_ratio: ours.per_second / theirs.per_second.max(f64::MIN_POSITIVE),
            p99_ratio: ours.latency.p99_ms / theirs.latency.p99_ms.max(f64::MIN_POSITIVE),
            server: ours,
            null: theirs,
        });
    }
    drop(null);
    let redis_pairs = match &opts.redis {
        Some(url) => redis_pairs(opts, &dir, url, &pairs).await?,
        None => Vec::new(),
    };

    // Password logins at the default cost, and SSO while they flood the server.
    let pid = server.child.id();
    let cpu_before = cpu_seconds(pid);
    let logins = login_load(&load(&server.base, "casuser", "Mellon", 4, opts.duration)).await?;
    let cpu_after = cpu_seconds(pid);
    let cpu_ms_per_login = cpu_before
        .zip(cpu_after)
        .map(|(b, a)| (a - b) * 1000.0 / logins.completed.max(1) as f64);
    let small = opts.concurrency.iter().copied().min().unwrap_or(8);
    let flood_options = load(&server.base, "casuser", "Mellon", 8, opts.duration);
    let flood = tokio::spawn(async move { login_load(&flood_options).await });
    let during = sso_load(&load(
        &server.base,
        "casuser",
        "Mellon",
        small,
        opts.duration,
    ))
    .await?;
    let flood = flood.await.ok().and_then(Result::ok);
    let alone = pairs
        .iter()
        .find(|p| p.concurrency == small)
        .map(|p| p.server.per_second);
    let flood_slowdown = alone.map(|a| 1.0 - during.per_second / a.max(f64::MIN_POSITIVE));

    let (sessions_report, with_sessions) = if opts.sessions > 0 {
        let created = sessions(
            &load(&server.base, "bench", "bench-password", 16, opts.duration),
            opts.sessions,
            Some(pid),
        )
        .await?;
        let large = opts.concurrency.iter().copied().max().unwrap_or(32);
        let after = sso_load(&load(
            &server.base,
            "casuser",
            "Mellon",
            large,
            opts.duration,
        ))
        .await?;
        (Some(created), Some(after))
    } else {
        (None, None)
    };
    drop(server);
    let reaper = match (&sessions_report, opts.reaper) {
        (Some(created), true) => {
            Some(reaper_run(opts, &dir, opts.sessions, created.seconds).await?)
        }
        _ => None,
    };
    Ok(Comparison {
        pairs,
        startup_ms: startup.as_secs_f64() * 1000.0,
        idle_rss_kib: idle_rss,
        null_idle_rss_kib: null_idle_rss,
        logins: Some(logins),
        cpu_ms_per_login,
        sso_during_login_flood: Some(during),
        login_flood: flood,
        flood_slowdown,
        sessions: sessions_report,
        sso_with_sessions: with_sessions,
        reaper,
        redis_pairs,
    })
}

/// The process id of the Redis at `url`, if it runs on this machine.
async fn redis_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut c = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .ok()?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// The SSO loads on a server whose tickets live in the Redis at `url` (under a prefix of
/// its own, with fresh keys), each set beside the in-memory run's null figures.
async fn redis_pairs(
    opts: &CompareOptions,
    dir: &Path,
    url: &str,
    memory: &[Pair],
) -> Result<Vec<Pair>, BenchError> {
    let key = || cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
    let tgc = cas_server::tgc::TgcKeys::generate().to_config();
    let base = bench_config(&format!(
        "[login]\nflow_key = \"{}\"\n[tickets]\nstore = \"redis\"\nkey = \"{}\"\n[tickets.redis]\nurl = \"{url}\"\nkey_prefix = \"cas-bench-{}:\"\n",
        key(),
        key(),
        cas_server::crypto::random_base62(8)
    ))?;
    // bench_config's [tgc] gets the shared keys every Redis node must have.
    let config_text = base.replacen("[tgc]\n", &format!("[tgc]\n{tgc}"), 1);
    let config = dir.join("redis.toml");
    std::fs::write(&config, config_text).map_err(|e| BenchError::Usage(e.to_string()))?;
    let config_arg = config.to_string_lossy().into_owned();
    let server = spawn(
        &opts.server_bin,
        &["--config", &config_arg],
        &[],
        Some(&dir.join("redis-server.log")),
    )?;
    let redis_pid = redis_pid(url).await;
    let mut pairs = Vec::new();
    for reference in memory {
        let options = LoadOptions {
            base: server.base.clone(),
            service: "http://localhost/app".into(),
            username: "casuser".into(),
            password: "Mellon".into(),
            concurrency: reference.concurrency,
            duration: opts.duration,
            max_requests: u64::MAX,
        };
        let before = cpu_seconds(server.child.id());
        let store_before = redis_pid.and_then(cpu_seconds);
        let ours = sso_load(&options).await?;
        let per_cycle = |after: Option<f64>, before: Option<f64>| {
            after
                .zip(before)
                .map(|(after, before)| (after - before) * 1e6 / ours.completed.max(1) as f64)
        };
        let server_cpu_us_per_cycle = per_cycle(cpu_seconds(server.child.id()), before);
        let store_cpu_us_per_cycle = per_cycle(redis_pid.and_then(cpu_seconds), store_before);
        pairs.push(Pair {
            concurrency: reference.concurrency,
            throughput_ratio: ours.per_second / reference.null.per_second.max(f64::MIN_POSITIVE),
            p99_ratio: ours.latency.p99_ms / reference.null.latency.p99_ms.max(f64::MIN_POSITIVE),
            server: ours,
            null: reference.null.clone(),
            server_cpu_us_per_cycle,
            null_cpu_us_per_cycle: reference.null_cpu_us_per_cycle,
            store_cpu_us_per_cycle,
        });
    }
    Ok(pairs)
}

/// A fresh server whose sessions expire after 20 idle seconds and whose reaper first
/// sweeps once all `count` sessions exist and are idle: SSO runs in one-second windows
/// (each with its own fresh session) through that sweep.
async fn reaper_run(
    opts: &CompareOptions,
    dir: &Path,
    count: u64,
    creation_seconds: f64,
) -> Result<ReaperReport, BenchError> {
    // The interval's first tick is at start; the next one is the big sweep.
    let due = (creation_seconds * 1.5).ceil() + 30.0;
    let config = dir.join("reaper.toml");
    let extra = format!("[tickets]\ntgt_idle_ttl = \"20s\"\nreaper_interval = \"{due}s\"\n");
    std::fs::write(&config, bench_config(&extra)?).map_err(|e| BenchError::Usage(e.to_string()))?;
    let config_arg = config.to_string_lossy().into_owned();
    let server = spawn(
        &opts.server_bin,
        &["--config", &config_arg],
        &[],
        Some(&dir.join("reaper.log")),
    )?;
    let pid = server.child.id();
    let load = |concurrency: usize, duration: Duration| LoadOptions {
        base: server.base.clone(),
        service: "http://localhost/app".into(),
        username: "bench".into(),
        password: "bench-password".into(),
        concurrency,
        duration,
        max_requests: u64::MAX,
    };
    let created = sessions(&load(16, opts.duration), count, None).await?;
    if created.sessions < count {
        return Err(BenchError::Transport(format!(
            "only {} of {count} sessions could be created",
            created.sessions
        )));
    }
    let concurrency = opts.concurrency.iter().copied().max().unwrap_or(32);
    let mut windows = Vec::new();
    let (mut rss_before, mut rss_after) = (None, None);
    loop {
        let at = server.started.elapsed().as_secs_f64();
        if at > due + 10.0 {
            break;
        }
        if at < due - 1.0 {
            rss_before = rss_kib(pid);
        } else if at > due + 5.0 && rss_after.is_none() {
            rss_after = rss_kib(pid);
        }
        let window = sso_load(&load(concurrency, Duration::from_secs(1))).await?;
        windows.push((at, window.per_second, window.latency.p99_ms));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let before: Vec<_> = windows.iter().filter(|w| w.0 + 1.0 < due - 1.0).collect();
    let around: Vec<_> = windows.iter().filter(|w| w.0 + 1.0 >= due - 1.0).collect();
    let normal_p99_ms = median(before.iter().map(|w| w.2).collect());
    let sweep_p99_ms = around.iter().map(|w| w.2).fold(0.0, f64::max);
    Ok(ReaperReport {
        sessions: count,
        sweep_due_s: due,
        normal_p99_ms,
        sweep_p99_ms,
        p99_ratio: sweep_p99_ms / normal_p99_ms.max(f64::MIN_POSITIVE),
        sweep_min_per_second: around.iter().map(|w| w.1).fold(f64::MAX, f64::min),
        normal_per_second: median(before.iter().map(|w| w.1).collect()),
        rss_before_sweep_kib: rss_before,
        rss_after_sweep_kib: rss_after,
        windows,
    })
}

/// A fresh folder only this user can enter (it holds configurations with keys and, with
/// `--redis`, the Redis URL), removed when the run ends, whichever way it ends.
struct BenchDir(PathBuf);

impl std::ops::Deref for BenchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<BenchDir, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "cas-bench-{}-{}",
        std::process::id(),
        cas_server::crypto::random_base62(10)
    ));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // `create`, not `create_all`: a folder someone else made first is refused.
    builder
        .create(&dir)
        .map_err(|e| BenchError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    Ok(BenchDir(dir))
}

#[cfg(test)]
mod tests {
    /// Found in review: the folder holding keys and the Redis URL was predictable,
    /// world-readable and left behind on errors.
    #[test]
    fn the_work_folder_is_private_fresh_and_removed() {
        let dir = super::tempfile_dir().unwrap();
        let path = dir.to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let other = super::tempfile_dir().unwrap();
        assert_ne!(other.to_path_buf(), path, "a fresh name each run");
        drop(dir);
        assert!(!path.exists(), "removed when the run ends");
    }
}
