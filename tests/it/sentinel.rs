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

/// Whether a replica holds every write made on `primary` so far (at most 4 s): a write
/// of ours after them, then WAIT for it (the replication stream keeps their order).
async fn replicated(primary: &RedisServer) -> bool {
    let mut direct = primary.connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("cas-test-sync")
        .arg(1)
        .query_async(&mut direct)
        .await
        .unwrap();
    for _ in 0..20 {
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(200)
            .query_async(&mut direct)
            .await
            .unwrap();
        if acked == 1 {
            return true;
        }
    }
    false
}

/// A primary with diskless replication at once (not after the default 5 s of waiting
/// for more replicas), and its replica.
async fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start_with(false, &["--repl-diskless-sync-delay", "0"]).await;
    let of = primary.port.to_string();
    let replica = RedisServer::start_with(false, &["--replicaof", "127.0.0.1", &of]).await;
    (primary, replica)
}

/// Log in, kill the primary, let the sentinels promote the replica: the same browser's
/// session goes on without a restart of CAS, a ticket issued before the failover still
/// validates, and requests during the switch fail fast instead of hanging.
#[tokio::test]
async fn a_failover_keeps_the_sessions_and_tickets_without_a_restart() {
    let (logs, _guard) = crate::support::Captured::install();
    let (mut primary, replica) = primary_and_replica().await;
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
    // Acknowledged by the replica before the primary goes.
    assert!(
        replicated(&primary).await,
        "the replica has the session and the ticket"
    );

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

/// With `min_replicas_acks = 1` a login is answered only once the replica holds the new
/// session; a replica that does not acknowledge in time fails the login (503) rather
/// than the server acknowledging a session a failover could lose.
#[tokio::test]
async fn with_min_replicas_acks_a_login_waits_for_the_replica() {
    let (primary, replica) = primary_and_replica().await;
    assert!(replicated(&primary).await, "the replica is in sync");
    let keys = ClusterKeys::generate();
    let prefix = format!("cas-test-{}:", cas_server::crypto::random_base62(8));
    let mut settings = keys.redis_settings(&primary.url(), &prefix);
    if let TicketStore::Redis(options) = &mut settings.tickets.store {
        options.min_replicas_acks = 1;
        options.replica_ack_timeout = Duration::from_millis(200);
    }
    let server = TestServer::start_settings(settings).await;
    server.browser().login_for_ticket(SERVICE).await;

    replica.freeze(true);
    let browser = server.browser();
    let form = browser.get_login(&[("service", SERVICE)]).await;
    let lt = crate::support::hidden_input(&form.text().await.unwrap(), "lt").unwrap();
    let started = Instant::now();
    let refused = browser
        .submit_login(Some(SERVICE), "alice", crate::support::PASSWORD, &lt, &[])
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    replica.freeze(false);

    server.browser().login_for_ticket(SERVICE).await;
}
