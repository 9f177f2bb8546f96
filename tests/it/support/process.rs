//! The `cas-server` binary as a process: started with a clean environment from a
//! directory of its own, found by its `cas-server listening on …` line, stopped with
//! SIGTERM, its output kept for the test to read. Every wait is bounded.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::hidden_input;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cas-server");
/// How long any child may take to start, answer or stop.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);
pub(crate) const LISTENING: &str = "cas-server listening on ";

/// The binary with a clean environment: no inherited `CAS__*` overrides or `RUST_LOG`,
/// run from `dir` so nothing lands in the checkout.
pub(crate) fn command(
    dir: &Path,
    config: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CAS__") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env_remove("CAS_CONFIG_KEY")
        .current_dir(dir)
        .kill_on_drop(true);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(args).envs(env.iter().copied());
    cmd
}

/// What a finished (non-server) run printed.
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs the binary to completion with `stdin` piped in; a run that outlives [`LIMIT`] is
/// killed (dropping the future drops the `kill_on_drop` child) and fails the test.
pub(crate) async fn run(
    dir: &Path,
    config: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Output {
    let mut child = command(dir, config, args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut pipe = child.stdin.take().unwrap();
    // A command that fails before reading its input (a missing key, say) may close the
    // pipe first: that is its answer, not the harness's failure.
    if let Err(e) = pipe.write_all(stdin.as_bytes()).await {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    drop(pipe);
    let out = timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`cas-server {}` did not finish within {LIMIT:?}",
                args.join(" ")
            )
        })
        .unwrap();
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cas-server hash-password` with `password` on stdin.
pub(crate) async fn hash_password(dir: &Path, password: &str) -> String {
    let out = run(dir, None, &["hash-password"], &[], &format!("{password}\n")).await;
    assert!(out.status.success(), "hash-password fails:\n{out}");
    out.stdout.trim().to_owned()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Reads a pipe to its end in the background (so the child never blocks on a full pipe).
pub(crate) fn drain(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A running `cas-server serve`; dropping it kills the process.
pub(crate) struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT/cas`, from the listening line.
    pub base: String,
    /// Stdout up to and including the listening line.
    pub head: String,
    pub rest: Option<JoinHandle<String>>,
    pub stderr: Option<JoinHandle<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// What a server printed once it stopped.
pub(crate) struct Stopped {
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    /// Starts the binary and waits (bounded) for its listening line.
    pub async fn start(dir: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let mut child = command(dir, config, &[], env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = drain(child.stderr.take().unwrap());
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut server = Self {
            child,
            base: String::new(),
            head: String::new(),
            rest: None,
            stderr: Some(stderr),
        };
        let found = timeout(LIMIT, read_until_listening(&mut stdout, &mut server.head)).await;
        match found {
            Ok(Some(base)) => server.base = base,
            Ok(None) => {
                let status = timeout(LIMIT, server.child.wait()).await;
                let stderr = server.take_stderr().await;
                panic!(
                    "the server exited before listening ({status:?})\n--- stdout ---\n{}--- stderr ---\n{stderr}",
                    server.head
                );
            }
            Err(_) => panic!(
                "no listening line within {LIMIT:?}\n--- stdout ---\n{}",
                server.head
            ),
        }
        server.rest = Some(drain(stdout));
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn take_stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => timeout(LIMIT, task).await.expect("stderr closes").unwrap(),
            None => String::new(),
        }
    }

    /// SIGTERM, then a bounded wait: the server must exit successfully and say so.
    pub async fn stop(mut self) -> Stopped {
        let pid = self.child.id().expect("the server is still running");
        let kill = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("`kill` runs");
        assert!(kill.success(), "kill -TERM {pid} failed");
        let status = timeout(LIMIT, self.child.wait())
            .await
            .expect("the server stops within the limit after SIGTERM")
            .unwrap();
        let rest = match self.rest.take() {
            Some(task) => timeout(LIMIT, task).await.expect("stdout closes").unwrap(),
            None => String::new(),
        };
        let stdout = format!("{}{rest}", self.head);
        let stderr = self.take_stderr().await;
        assert!(
            status.success(),
            "SIGTERM is a clean shutdown, got {status}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
        );
        assert!(
            stdout.lines().any(|l| l == "cas-server stopped"),
            "the server reports that it stopped:\n{stdout}"
        );
        Stopped { stdout, stderr }
    }
}

/// Reads stdout lines into `head` until the listening line; returns its URL, or `None` at EOF.
async fn read_until_listening(
    stdout: &mut BufReader<ChildStdout>,
    head: &mut String,
) -> Option<String> {
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if let Some(url) = line.trim_end().strip_prefix(LISTENING) {
            return Some(url.to_owned());
        }
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens the login form for `service`, submits the credentials, and returns the response.
pub(crate) async fn log_in(
    client: &reqwest::Client,
    server: &Server,
    service: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = client
        .get(server.url("/login"))
        .query(&[("service", service)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the login form is shown");
    let html = page.text().await.unwrap();
    let lt = hidden_input(&html, "lt").expect("the form carries an lt token");
    client
        .post(server.url("/login"))
        .form(&[
            ("username", username),
            ("password", password),
            ("lt", lt.as_str()),
            ("service", service),
        ])
        .send()
        .await
        .unwrap()
}

pub(crate) fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn ticket_in(location: &str) -> String {
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .expect("a ticket parameter")
}
