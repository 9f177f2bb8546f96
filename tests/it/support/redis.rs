//! A real `redis-server` for the tests: its own port, folder and (optionally) append-only
//! file, started, killed and restarted by the test (never the system service). Needs the
//! Debian package `redis-server` (.ci/run installs it).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    aof: bool,
    /// More arguments for redis-server (ACL users, TLS).
    extra: Vec<String>,
    /// Serving TLS only: readiness is a TCP connect, not a PING.
    tls: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh instance on a free loopback port; with `aof`, every write is appended to a
    /// file (fsync always) and replayed by [`restart`](Self::restart).
    pub async fn start(aof: bool) -> Self {
        Self::start_with(aof, &[]).await
    }

    /// With more redis-server arguments, e.g. an ACL user.
    pub async fn start_with(aof: bool, extra: &[&str]) -> Self {
        Self::launch(aof, extra.iter().map(|a| (*a).to_owned()).collect(), false).await
    }

    /// TLS only (no plain port), with a certificate for localhost and 127.0.0.1 from
    /// `pki`; clients need not present one.
    pub async fn start_tls(pki: &super::callback::TestPki) -> Self {
        let files = tempfile::tempdir().unwrap();
        let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
        let path = |name: &str| files.path().join(name).to_string_lossy().into_owned();
        std::fs::write(path("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(path("key.pem"), &leaf.key_pem).unwrap();
        std::fs::write(path("ca.pem"), pki.ca_pem()).unwrap();
        let extra = vec![
            "--tls-cert-file".into(),
            path("cert.pem"),
            "--tls-key-file".into(),
            path("key.pem"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let server = Self::launch(false, extra, true).await;
        // The files are read at startup; the folder may go.
        drop(files);
        server
    }

    async fn launch(aof: bool, extra: Vec<String>, tls: bool) -> Self {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} not found: install the Debian package redis-server (.ci/run does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            dir: tempfile::tempdir().unwrap(),
            port,
            aof,
            extra,
            tls,
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let ports: [&str; 4] = if self.tls {
            ["--port", "0", "--tls-port", &port]
        } else {
            ["--port", &port, "--tls-port", "0"]
        };
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..200 {
            if self.tls && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(mut c) = self.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Kills the server at once (SIGKILL: no chance to save anything but its AOF).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process must be thawed to die of anything but SIGKILL; be sure.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`true`, SIGSTOP) or thaws (SIGCONT) the server: connections stay open but
    /// nothing is answered, as with an overloaded Redis.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts it again on the same port and folder (replaying the AOF, if on).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A direct connection, to look at what the CAS server stored.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// Every key and its values as text (hash fields and list items included).
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        for key in self.keys("*").await {
            let kind: String = self.query(redis::cmd("TYPE").arg(&key)).await;
            let values: Vec<String> = match kind.as_str() {
                "hash" => self.query(redis::cmd("HGETALL").arg(&key)).await,
                "list" => {
                    self.query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
                        .await
                }
                "zset" => {
                    self.query(redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1))
                        .await
                }
                "string" => vec![self.query(redis::cmd("GET").arg(&key)).await],
                other => vec![format!("<{other}>")],
            };
            out.push_str(&format!("{key} = {values:?}\n"));
        }
        out
    }

    /// Runs `cmd` on a fresh connection; panics on any error.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = self.connection().await.unwrap();
        cmd.query_async(&mut c).await.unwrap()
    }

    /// The remaining time to live of `key`, in milliseconds (negative: none or absent).
    pub async fn pttl(&self, key: &str) -> i64 {
        let mut c = self.connection().await.unwrap();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// Keys matching `pattern`.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut c = self.connection().await.unwrap();
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut c)
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
