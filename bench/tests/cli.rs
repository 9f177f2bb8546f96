//! `cas-bench` as an operator runs it: short smoke runs against the real test server and
//! the null server, counted, never timed, and its error paths (wrong password, nothing
//! listening, bad arguments) checked through exit codes and messages.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic loudly

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

use support::{PASSWORD, SERVICE, TestServer};

const BENCH: &str = env!("CARGO_BIN_EXE_cas-bench");
const LIMIT: Duration = Duration::from_secs(120);

async fn bench(args: &[&str]) -> Output {
    let child = Command::new(BENCH)
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    timeout(LIMIT, child)
        .await
        .expect("cas-bench finishes within its bounds")
        .expect("cas-bench runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "cas-bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON document")
}

/// `command` against `server` as alice with `password`, then `more`.
fn against<'a>(
    command: &[&'a str],
    server: &'a TestServer,
    password: &'a str,
    more: &[&'a str],
) -> Vec<&'a str> {
    let mut args = command.to_vec();
    args.extend([
        "--url",
        server.base.as_str(),
        "--service",
        SERVICE,
        "--user",
        "alice",
        "--password",
        password,
    ]);
    args.extend(more);
    args
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_smoke_run_completes_every_cycle_against_the_real_server() {
    let server = TestServer::start().await;
    let out = bench(&against(
        &["--json", "sso"],
        &server,
        PASSWORD,
        &[
            "--concurrency",
            "4",
            "--duration",
            "60s",
            "--max-requests",
            "300",
        ],
    ))
    .await;
    let report = json(&out);
    assert_eq!(report["kind"], "sso");
    assert_eq!(report["completed"], 300, "{report}");
    assert_eq!(report["failures"]["transport"], 0, "{report}");
    assert_eq!(report["failures"]["no_ticket"], 0, "{report}");
    assert_eq!(report["failures"]["validation"], 0, "{report}");
    assert!(report["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["validate_request"]["max_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_sessions_runs_log_in_through_the_form() {
    let server = TestServer::start().await;
    let args = against(
        &["--json", "login"],
        &server,
        PASSWORD,
        &["--concurrency", "2", "--max-requests", "6"],
    );
    let report = json(&bench(&args).await);
    assert_eq!(report["kind"], "login");
    assert_eq!(report["completed"], 6, "{report}");
    assert_eq!(report["failures"]["login"], 0, "{report}");

    let args = against(
        &["--json", "sessions", "5"],
        &server,
        PASSWORD,
        &["--concurrency", "2"],
    );
    let report = json(&bench(&args).await);
    assert_eq!(report["sessions"], 5, "{report}");
    assert_eq!(report["requested"], 5, "{report}");
    assert_eq!(report["failures"], 0, "{report}");
    // Without --pid there is no memory figure to invent.
    assert!(report["bytes_per_session"].is_null(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_run_with_a_clear_error() {
    let server = TestServer::start().await;
    let out = bench(&against(
        &["sso"],
        &server,
        "not the password",
        &["--max-requests", "10"],
    ))
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("login failed"), "{err}");
    assert!(err.contains("wrong username or password"), "{err}");
    assert!(
        !err.contains("not the password"),
        "the password is not echoed: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_server_refuses_stops_the_run() {
    let server = TestServer::start().await;
    let out = bench(&[
        "sso",
        "--url",
        &server.base,
        "--service",
        support::FOREIGN_SERVICE,
        "--user",
        "alice",
        "--password",
        PASSWORD,
    ])
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("login failed") && err.contains("403"), "{err}");
}

#[tokio::test]
async fn an_unreachable_or_unsupported_server_is_an_error_not_a_hang() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/cas");
    let out = bench(&["sso", "--url", &url, "--max-requests", "10"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&out)
    );

    let out = bench(&["sso", "--url", "https://cas.example.org/cas"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("plain HTTP"), "{}", stderr(&out));

    let out = bench(&["sso", "--concurrency", "0"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("concurrency"), "{}", stderr(&out));

    let out = bench(&["sso", "--duration", "soon"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--duration"), "{}", stderr(&out));

    let out = bench(&["compare", "--reaper"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--sessions"), "{}", stderr(&out));
}

#[tokio::test]
async fn the_null_server_answers_the_sso_cycle_the_bench_expects() {
    let mut null = Command::new(BENCH)
        .args(["null-server", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cas-bench null-server starts");
    let mut lines = BufReader::new(null.stdout.take().unwrap()).lines();
    let line = timeout(LIMIT, lines.next_line())
        .await
        .expect("the null server announces its address")
        .unwrap()
        .expect("a line");
    let url = line
        .rsplit_once(' ')
        .map(|(_, url)| url.to_owned())
        .expect("listening on URL");
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let report = json(
        &bench(&[
            "--json",
            "sso",
            "--url",
            &url,
            "--concurrency",
            "2",
            "--max-requests",
            "200",
        ])
        .await,
    );
    assert_eq!(report["completed"], 200, "{report}");
    assert_eq!(report["failures"]["validation"], 0, "{report}");
    null.kill().await.unwrap();
}
