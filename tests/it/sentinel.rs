//! Redis Sentinel: a primary, a replica and three sentinels on loopback, all real
//! `redis-server` processes (the sentinels in `--sentinel` mode). The server finds the
//! primary through the sentinels and follows a failover without a restart.
#![cfg(unix)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cas_server::config::{SentinelOptions, TicketStore};
use reqwest::StatusCode;

use crate::support::redis::RedisServer;
use crate::support::{ClusterKeys, SERVICE, TestServer, assert_validates_as};

const MASTER: &str = "cas";

/// A sentinel watching the primary on `primary_port`; killed when dropped.
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    async fn start(primary_port: u16) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        // The sentinel rewrites its file as it learns the topology.
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/bin/redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel starts");
        let sentinel = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if sentinel.primary_port().await.is_some() {
                return sentinel;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the sentinel on port {port} did not answer");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The primary's port, as this sentinel sees it now.
    async fn primary_port(&self) -> Option<u16> {
        let mut c = redis::Client::open(self.url())
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut c)
            .await
            .ok()?;
        named.map(|(_, port)| port)
    }

    async fn knows_replicas(&self) -> usize {
        let Ok(mut c) = redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        else {
            return 0;
        };
        redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(MASTER)
            .query_async::<Vec<redis::Value>>(&mut c)
            .await
            .map_or(0, |r| r.len())
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most `limit`) for `check` to hold.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within {limit:?}");
}

/// Log in, kill the primary, let the sentinels promote the replica: the same browser's
/// session goes on without a restart of CAS, a ticket issued before the failover still
/// validates, and requests during the switch fail fast instead of hanging.
#[tokio::test]
async fn a_failover_keeps_the_sessions_and_tickets_without_a_restart() {
    let (logs, _guard) = crate::support::Captured::install();
    // Diskless replication at once, not after the default 5 s of waiting for others.
    let mut primary = RedisServer::start_with(false, &["--repl-diskless-sync-delay", "0"]).await;
    let replica_of = primary.port.to_string();
    let replica = RedisServer::start_with(false, &["--replicaof", "127.0.0.1", &replica_of]).await;
    let mut sentinels = Vec::new();
    for _ in 0..3 {
        sentinels.push(Sentinel::start(primary.port).await);
    }
    until(
        "the sentinels see the replica",
        Duration::from_secs(20),
        || async { sentinels[0].knows_replicas().await > 0 },
    )
    .await;

    let keys = ClusterKeys::generate();
    let prefix = format!("cas-test-{}:", cas_server::crypto::random_base62(8));
    // The host in `url` is ignored with sentinels: point it nowhere to prove it.
    let mut settings = keys.redis_settings("redis://127.0.0.1:1", &prefix);
    settings.tickets.st_ttl = Duration::from_secs(120);
    if let TicketStore::Redis(options) = &mut settings.tickets.store {
        options.sentinel = Some(Box::new(SentinelOptions {
            addresses: sentinels.iter().map(Sentinel::url).collect(),
            master: MASTER.to_owned(),
            username: None,
            password: None,
        }));
    }
    let server = TestServer::start_settings(settings).await;
    let browser = server.signed_in_browser().await;
    let before = browser.sso_ticket(SERVICE).await;
    // Acknowledged by the replica before the primary goes: a write of ours after the
    // server's, then WAIT for it (the replication stream keeps their order).
    let mut direct = primary.connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}sync"))
        .arg(1)
        .query_async(&mut direct)
        .await
        .unwrap();
    let mut acked = 0;
    for _ in 0..20 {
        acked = redis::cmd("WAIT")
            .arg(1)
            .arg(200)
            .query_async::<i64>(&mut direct)
            .await
            .unwrap();
        if acked == 1 {
            break;
        }
    }
    assert_eq!(acked, 1, "the replica has the session and the ticket");

    primary.kill();
    let started = Instant::now();
    let during = browser.get_login(&[("service", SERVICE)]).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a request during the switch is answered at once ({:?}, {})",
        started.elapsed(),
        during.status()
    );
    until(
        "the sentinels promote the replica",
        Duration::from_secs(30),
        || async { sentinels[0].primary_port().await == Some(replica.port) },
    )
    .await;

    // Bounded: the pool reconnects through the sentinels once the old primary is gone.
    let mut location = None;
    for _ in 0..150 {
        let response = browser.get_login(&[("service", SERVICE)]).await;
        if response.status() == StatusCode::FOUND {
            location = Some(response.headers()["location"].to_str().unwrap().to_owned());
            break;
        }
        assert_ne!(
            response.status(),
            StatusCode::OK,
            "the session is on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let location = location
        .unwrap_or_else(|| panic!("SSO works on the new primary within 15 s:\n{}", logs.text()));
    assert!(location.contains("ticket=ST-"), "{location}");
    assert_validates_as(&server, SERVICE, &before, "alice").await;
    let (status, body) = {
        let response = server.raw_get("/health", &[]).await;
        let status = response.status();
        (status, response.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK, "{body}");
}
