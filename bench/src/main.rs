//! `cas-bench`: load generator and null server for CAS servers. See the README's
//! "Performance" section.

use std::process::ExitCode;
use std::time::Duration;

use cas_bench::{self as bench, BenchError, CompareOptions, LoadOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark a CAS server: SSO cycles, password logins, sessions"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Target {
    /// The CAS base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/cas")]
    url: String,
    /// A service URL the server accepts.
    #[arg(long, default_value = "http://localhost/app")]
    service: String,
    #[arg(long, default_value = "casuser")]
    user: String,
    #[arg(long, default_value = "Mellon")]
    password: String,
    /// Concurrent workers.
    #[arg(long, short, default_value_t = 32)]
    concurrency: usize,
    /// How long to run ("10s", "1m"); at most 10 minutes.
    #[arg(long, short, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Stop after this many cycles or logins in all (default: only the duration bounds).
    #[arg(long)]
    max_requests: Option<u64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in once, then loop SSO cycles: GET /login with the cookie, validate the ticket.
    Sso(Target),
    /// Full password logins, a fresh cookie jar each.
    Login(Target),
    /// Create N SSO sessions (each with one validated ticket) and report memory; stops
    /// after 10 minutes whatever N is (--duration does not apply).
    Sessions {
        /// How many sessions to create.
        count: u64,
        /// The server's process id, to read its resident memory.
        #[arg(long)]
        pid: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// A stateless server answering the SSO cycle with constant responses.
    NullServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
    },
    /// Start our release server and the null server in turn and compare them.
    Compare {
        /// How long each load runs ("10s", "1m").
        #[arg(long, short, default_value = "10s", value_parser = duration)]
        duration: Duration,
        /// Concurrency levels, comma separated.
        #[arg(long, default_value = "32,8", value_delimiter = ',')]
        concurrency: Vec<usize>,
        /// Also create this many SSO sessions and measure memory and throughput with them.
        #[arg(long, default_value_t = 0)]
        sessions: u64,
        /// With --sessions: on a fresh server, let them all expire at once and measure
        /// SSO while the reaper sweeps them (adds about 1.5x the session creation time).
        #[arg(long, requires = "sessions")]
        reaper: bool,
        /// The cas-server binary (default: next to this one).
        #[arg(long)]
        server_bin: Option<std::path::PathBuf>,
        /// Also measure SSO with the Redis ticket store at this URL (e.g.
        /// redis://127.0.0.1:6379; keys go under a fresh `cas-bench-…:` prefix).
        #[arg(long)]
        redis: Option<String>,
    },
}

fn duration(text: &str) -> Result<Duration, String> {
    cas_server::config::parse_duration(text).map_err(|e| e.to_string())
}

fn load(t: Target) -> LoadOptions {
    LoadOptions {
        base: t.url,
        service: t.service,
        username: t.user,
        password: t.password,
        concurrency: t.concurrency,
        duration: t.duration,
        max_requests: t.max_requests.unwrap_or(u64::MAX),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("cas-bench: cannot start the async runtime");
        return ExitCode::from(1);
    };
    match runtime.block_on(run(cli.command, cli.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cas-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        text(value);
    }
}

async fn run(command: Cmd, json: bool) -> Result<(), BenchError> {
    match command {
        Cmd::Sso(t) => {
            let report = bench::sso_load(&load(t)).await?;
            emit(json, &report, bench::Report::print);
            if report.failures.total() > 0 {
                return Err(BenchError::Transport(format!(
                    "{} cycles failed",
                    report.failures.total()
                )));
            }
        }
        Cmd::Login(t) => {
            let report = bench::login_load(&load(t)).await?;
            emit(json, &report, bench::Report::print);
            if report.failures.total() > 0 {
                return Err(BenchError::Transport(format!(
                    "{} logins failed",
                    report.failures.total()
                )));
            }
        }
        Cmd::Sessions { count, pid, target } => {
            let report = bench::sessions(&load(target), count, pid).await?;
            emit(json, &report, |r| {
                println!(
                    "{} of {} sessions created in {:.1}s, {} failed",
                    r.sessions, r.requested, r.seconds, r.failures
                );
                if let (Some(b), Some(a), Some(per)) =
                    (r.rss_before_kib, r.rss_after_kib, r.bytes_per_session)
                {
                    println!("  resident memory {b} KiB -> {a} KiB: {per:.0} bytes per session");
                }
            });
            if report.sessions < report.requested {
                return Err(BenchError::Transport(format!(
                    "only {} of {} sessions were created",
                    report.sessions, report.requested
                )));
            }
        }
        Cmd::NullServer { bind } => {
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| BenchError::Usage(format!("cannot listen on {bind}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| BenchError::Usage(e.to_string()))?;
            println!("null CAS server listening on http://{addr}/cas");
            bench::serve_null(listener)
                .await
                .map_err(|e| BenchError::Transport(e.to_string()))?;
        }
        Cmd::Compare {
            duration,
            concurrency,
            sessions,
            reaper,
            server_bin,
            redis,
        } => {
            let here = std::env::current_exe().map_err(|e| BenchError::Usage(e.to_string()))?;
            let server_bin = server_bin.unwrap_or_else(|| here.with_file_name("cas-server"));
            let opts = CompareOptions {
                server_bin,
                bench_bin: here,
                duration,
                concurrency,
                sessions,
                reaper,
                redis,
            };
            let comparison = bench::compare(&opts).await?;
            emit(json, &comparison, print_comparison);
        }
    }
    Ok(())
}

fn print_comparison(c: &bench::Comparison) {
    println!(
        "startup (demo config, process start to first /login): {:.1} ms",
        c.startup_ms
    );
    if let (Some(ours), Some(null)) = (c.idle_rss_kib, c.null_idle_rss_kib) {
        println!(
            "idle resident memory: {:.1} MiB (null server {:.1} MiB)",
            ours as f64 / 1024.0,
            null as f64 / 1024.0
        );
    }
    for pair in &c.pairs {
        println!(
            "\nSSO cycles at concurrency {}: cas-server {:.0}/s vs null {:.0}/s = {:.0} %; cycle p99 {:.3} ms vs {:.3} ms = {:.2}x",
            pair.concurrency,
            pair.server.per_second,
            pair.null.per_second,
            pair.throughput_ratio * 100.0,
            pair.server.latency.p99_ms,
            pair.null.latency.p99_ms,
            pair.p99_ratio
        );
        if let (Some(ours), Some(null)) = (pair.server_cpu_us_per_cycle, pair.null_cpu_us_per_cycle)
        {
            println!("  server CPU per cycle: {ours:.1} µs vs {null:.1} µs");
        }
        pair.server.print();
        pair.null.print();
    }
    for pair in &c.redis_pairs {
        println!(
            "\nSSO cycles at concurrency {} with the Redis store: {:.0}/s = {:.0} % of null; cycle p99 {:.3} ms = {:.2}x null",
            pair.concurrency,
            pair.server.per_second,
            pair.throughput_ratio * 100.0,
            pair.server.latency.p99_ms,
            pair.p99_ratio
        );
        if let Some(ours) = pair.server_cpu_us_per_cycle {
            match pair.store_cpu_us_per_cycle {
                Some(redis) => {
                    println!("  CPU per cycle: server {ours:.1} µs, redis-server {redis:.1} µs")
                }
                None => println!(
                    "  server CPU per cycle: {ours:.1} µs (redis-server not on this machine)"
                ),
            }
        }
        pair.server.print();
    }
    if let Some(logins) = &c.logins {
        println!();
        logins.print();
        if let Some(cpu) = c.cpu_ms_per_login {
            println!("  server CPU per login: {cpu:.1} ms");
        }
    }
    if let Some(during) = &c.sso_during_login_flood {
        match c.flood_slowdown {
            Some(slowdown) => println!(
                "\nSSO while a login flood runs: {:.0} % fewer cycles than without it",
                slowdown * 100.0
            ),
            None => println!("\nSSO while a login flood runs:"),
        }
        during.print();
        if let Some(flood) = &c.login_flood {
            flood.print();
        }
    }
    if let (Some(s), Some(after)) = (&c.sessions, &c.sso_with_sessions) {
        println!(
            "\n{} sessions created in {:.1}s ({} failed)",
            s.sessions, s.seconds, s.failures
        );
        if let Some(per) = s.bytes_per_session {
            println!("  resident memory per session: {per:.0} bytes");
        }
        println!("SSO with those sessions live:");
        after.print();
    }
    if let Some(r) = &c.reaper {
        println!(
            "\nreaper expiring {} sessions at once (due {:.0}s after start): cycle p99 {:.3} ms vs {:.3} ms normally = {:.2}x; lowest {:.0}/s vs {:.0}/s",
            r.sessions,
            r.sweep_due_s,
            r.sweep_p99_ms,
            r.normal_p99_ms,
            r.p99_ratio,
            r.sweep_min_per_second,
            r.normal_per_second
        );
        if let (Some(b), Some(a)) = (r.rss_before_sweep_kib, r.rss_after_sweep_kib) {
            println!(
                "  resident memory {:.1} MiB before the sweep, {:.1} MiB after",
                b as f64 / 1024.0,
                a as f64 / 1024.0
            );
        }
    }
}
