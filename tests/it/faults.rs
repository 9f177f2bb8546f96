//! Faults of the Redis store, against the real binary and a real `redis-server`: what
//! each costs, and that none of them is lost without a word or said a thousand times.
#![cfg(unix)]

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::process::{Server, write};
use crate::support::receiver::Receiver;
use crate::support::redis::RedisServer;
use crate::support::{ClusterKeys, SERVICE as SERVICE_URL, TestServer};

const SERVICE: &str = "https://app.example.org/";

/// A configuration for the binary on the Redis at `url`.
fn redis_config(dir: &Path, keys: &ClusterKeys, url: &str) -> std::path::PathBuf {
    write(
        dir,
        "cas.toml",
        &format!(
            r#"[server]
bind = "127.0.0.1:0"

[tgc]
{tgc}
[login]
flow_key = "{flow}"

[tickets]
store = "redis"
key = "{registry}"

[tickets.redis]
url = "{url}"
connect_timeout = "200ms"
command_timeout = "200ms"

[[services]]
id = 1
name = "App"
pattern = "{SERVICE}"
"#,
            tgc = keys.tgc,
            flow = keys.flow,
            registry = keys.registry,
        ),
    )
}

/// An outage fails every request that needs the store; the log says so once, then once
/// per interval with the number of repeats, instead of once per request.
#[tokio::test]
async fn an_outage_is_logged_once_not_once_per_request() {
    let mut redis = RedisServer::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &ClusterKeys::generate(), &redis.url());
    let server = Server::start(dir.path(), Some(&config), &[]).await;
    let client = reqwest::Client::new();
    // A ticket never issued, validated: the answer's text.
    let validate = || async {
        let ticket = format!("ST-{}", cas_server::crypto::random_base62(29));
        client
            .get(server.url("/serviceValidate"))
            .query(&[("service", SERVICE), ("ticket", ticket.as_str())])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // While Redis runs, an unknown ticket is simply invalid.
    let body = validate().await;
    assert!(body.contains("INVALID_TICKET"), "{body}");
    assert!(
        redis.keys("cas:r:*").await.is_empty(),
        "a made-up ticket leaves no receipt behind"
    );

    redis.kill();
    const REQUESTS: usize = 200;
    for _ in 0..REQUESTS {
        let body = validate().await;
        assert!(body.contains("INTERNAL_ERROR"), "{body}");
    }
    let stopped = server.stop().await;
    let faults = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("validation failed on a registry fault"))
        .count();
    assert_eq!(
        faults, 1,
        "{REQUESTS} failed validations within one interval log one line:\n{}",
        stopped.stderr
    );
    let loud = stopped
        .stderr
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    assert!(
        loud < 10,
        "{loud} warning and error lines for one outage:\n{}",
        stopped.stderr
    );
}

async fn health(server: &TestServer) -> (StatusCode, serde_json::Value) {
    let response = server.raw_get("/health", &[]).await;
    let status = response.status();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

fn prefix() -> String {
    format!("cas-test-{}:", cas_server::crypto::random_base62(8))
}

/// Redis out of memory under `noeviction` still reads, and refuses every login and SSO:
/// `/health` says DOWN (reachable, not writable) until Redis writes again.
#[tokio::test]
async fn a_redis_that_refuses_writes_is_down_on_health() {
    let redis = RedisServer::start_with(false, &["--maxmemory-policy", "noeviction"]).await;
    let keys = ClusterKeys::generate();
    let server = TestServer::start_settings(keys.redis_settings(&redis.url(), &prefix())).await;
    let browser = server.signed_in_browser().await;
    let (status, body) = health(&server).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tickets"]["writable"], true);

    // Any use of memory is now over the limit.
    let _: () = redis
        .query(::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("1"))
        .await;
    let sso = browser.get_login(&[("service", SERVICE_URL)]).await;
    assert_eq!(
        sso.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "SSO needs a write"
    );
    // A success is remembered for a second: wait it out, boundedly.
    let mut seen = None;
    for _ in 0..30 {
        let (status, body) = health(&server).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = seen.expect("/health turns DOWN while Redis refuses writes");
    assert_eq!(body["status"], "DOWN");
    assert_eq!(body["tickets"]["reachable"], true, "{body}");
    assert_eq!(body["tickets"]["writable"], false, "{body}");

    let _: () = redis
        .query(::redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0"))
        .await;
    let (status, body) = health(&server).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "UP as soon as Redis writes again: {body}"
    );
    let sso = browser.get_login(&[("service", SERVICE_URL)]).await;
    assert_eq!(
        sso.status(),
        StatusCode::FOUND,
        "and the same session works"
    );
}

/// A Redis that may evict keys under memory pressure would drop live sessions: a node
/// warns at startup, or with `eviction = "refuse"` does not start.
#[tokio::test]
async fn an_evicting_redis_is_reported_at_startup_or_refused() {
    let redis = RedisServer::start_with(false, &["--maxmemory-policy", "allkeys-lru"]).await;
    let keys = ClusterKeys::generate();

    let mut refusing = keys.redis_settings(&redis.url(), &prefix());
    if let cas_server::config::TicketStore::Redis(options) = &mut refusing.tickets.store {
        options.refuse_eviction = true;
    }
    let clock = std::sync::Arc::new(cas_server::clock::ManualClock::new());
    let error = cas_server::App::build(refusing, clock)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("allkeys-lru") && error.contains("noeviction"),
        "{error}"
    );

    // The default warns, in the log of the real binary, and serves.
    let dir = tempfile::tempdir().unwrap();
    let config = redis_config(dir.path(), &keys, &redis.url());
    let server = Server::start(dir.path(), Some(&config), &[]).await;
    let stopped = server.stop().await;
    assert!(
        stopped
            .stderr
            .lines()
            .any(|l| l.contains(" WARN ") && l.contains("allkeys-lru")),
        "{}",
        stopped.stderr
    );
}

/// After Redis restarts, every pooled connection is dead and the first command on each
/// used to fail with a broken pipe (3 of the first 8 validations). The one-shot scripts
/// keep a receipt, so the pool sends them again on a fresh connection: no validation,
/// login or logout fails for a restart that is already over.
#[tokio::test]
async fn the_first_requests_after_a_redis_restart_all_succeed() {
    let mut redis = RedisServer::start(true).await;
    let keys = ClusterKeys::generate();
    let mut settings = keys.redis_settings(&redis.url(), &prefix());
    if let cas_server::config::TicketStore::Redis(options) = &mut settings.tickets.store {
        options.pool_size = 4;
    }
    let server = TestServer::start_settings(settings).await;
    let browser = server.signed_in_browser().await;
    let mut tickets = Vec::new();
    for _ in 0..8 {
        tickets.push(browser.sso_ticket(SERVICE_URL).await);
    }
    // Every pooled connection has been used.
    redis.restart().await;

    for ticket in &tickets {
        crate::support::assert_validates_as(&server, SERVICE_URL, ticket, "alice").await;
    }
    for ticket in &tickets {
        let again = server
            .client()
            .validate("/serviceValidate", SERVICE_URL, ticket)
            .await;
        assert_eq!(again.code(), "INVALID_TICKET", "a ticket validates once");
    }
    redis.restart().await;
    let logout = browser.get("/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::OK, "logout after a restart");
    let sso = browser.get_login(&[("service", SERVICE_URL)]).await;
    assert_eq!(
        sso.status(),
        StatusCode::OK,
        "the session ended: the form again"
    );
}

/// Two nodes: `right` holds the cluster's registry key (and records it first), `wrong`
/// another one.
async fn right_and_wrong(redis: &RedisServer) -> (TestServer, TestServer) {
    let keys = ClusterKeys::generate();
    let prefix = prefix();
    let right = TestServer::start_settings(keys.redis_settings(&redis.url(), &prefix)).await;
    let (status, body) = health(&right).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first node records its key: {body}"
    );
    let other = ClusterKeys {
        registry: ClusterKeys::generate().registry,
        tgc: keys.tgc.clone(),
        flow: keys.flow.clone(),
    };
    let wrong = TestServer::start_settings(other.redis_settings(&redis.url(), &prefix)).await;
    (right, wrong)
}

/// A node with another `tickets.key` is DOWN and refuses logins; after Redis lost its
/// data (and the key check value with it), it cannot win the check by asking first: the
/// nodes that held the key record it again, and it stays DOWN.
#[tokio::test]
async fn a_wrong_node_never_takes_the_key_check_over_after_a_data_loss() {
    let redis = RedisServer::start(false).await;
    let (right, wrong) = right_and_wrong(&redis).await;
    assert_eq!(health(&right).await.0, StatusCode::OK);
    assert_eq!(health(&wrong).await.0, StatusCode::SERVICE_UNAVAILABLE);

    let refused = wrong.browser();
    let form = refused.get_login(&[("service", SERVICE_URL)]).await;
    let lt = crate::support::hidden_input(&form.text().await.unwrap(), "lt").unwrap();
    let posted = refused
        .submit_login(
            Some(SERVICE_URL),
            "alice",
            crate::support::PASSWORD,
            &lt,
            &[],
        )
        .await;
    assert_eq!(
        posted.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a node that cannot read the others' sessions starts none of its own"
    );

    let _: () = redis.query(&::redis::cmd("FLUSHALL")).await;
    // The wrong node asks first, twice.
    for _ in 0..2 {
        assert_eq!(health(&wrong).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, body) = health(&right).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the right node keeps its key: {body}"
    );
    assert_eq!(health(&wrong).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let ticket = right.browser().login_for_ticket(SERVICE_URL).await;
    crate::support::assert_validates_as(&right, SERVICE_URL, &ticket, "alice").await;
}

/// Redis stalls (SIGSTOP) while a user logs out: the request gives up (503) and keeps the
/// cookie, then Redis runs the removal. The single logout that removal owes is not lost
/// with its answer: a sweep finds it in the outbox and sends each message once, and the
/// user's retry simply answers "logged out".
#[tokio::test]
async fn a_logout_during_a_redis_stall_still_reaches_every_application() {
    let (logs, _guard) = crate::support::Captured::install();
    let redis = RedisServer::start(false).await;
    let app = Receiver::start().await;
    let keys = ClusterKeys::generate();
    let mut settings = keys.redis_settings(&redis.url(), &prefix());
    settings.http_client.allow_local_urls = true;
    settings.tickets.reaper_interval = Duration::from_millis(200);
    let server = TestServer::start_settings(settings).await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/one/a")).await;
    browser.sso_ticket(&app.url("/one/b")).await;
    browser.sso_ticket(&app.url("/one/c")).await;
    // Someone else logs out first: Redis knows the removal script (a script it has never
    // seen is refused after the stall, not run).
    let other = server.signed_in_browser().await;
    assert_eq!(other.get("/logout", &[]).await.status(), StatusCode::OK);

    redis.freeze(true);
    let stalled = tokio::time::timeout(Duration::from_secs(5), browser.get("/logout", &[]))
        .await
        .expect("a stalled store costs a bounded wait");
    assert_eq!(stalled.status(), StatusCode::SERVICE_UNAVAILABLE);
    redis.freeze(false);
    // The server's clock is the test's: past the moment the outbox entry falls due.
    server.clock.advance(Duration::from_secs(3));

    let mut received = Vec::new();
    for _ in 0..100 {
        received = app.received();
        if received.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut paths: Vec<String> = received.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/one/a", "/one/b", "/one/c"],
        "every application is told:\n{}\n{}",
        logs.text(),
        redis.dump().await
    );
    assert!(received.iter().all(|r| r.logout_request.is_some()));

    let retry = browser.get("/logout", &[]).await;
    assert_eq!(retry.status(), StatusCode::OK, "the retry: logged out");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.received().len(), 3, "each message is sent once");
}
