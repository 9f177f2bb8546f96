//! Faults of the Redis store, against the real binary and a real `redis-server`: what
//! each costs, and that none of them is lost without a word or said a thousand times.
#![cfg(unix)]

use std::path::Path;

use crate::support::ClusterKeys;
use crate::support::process::{Server, write};
use crate::support::redis::RedisServer;

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
    let validate = |ticket: String| {
        client
            .get(server.url("/serviceValidate"))
            .query(&[("service", SERVICE), ("ticket", ticket.as_str())])
            .send()
    };
    // While Redis runs, an unknown ticket is simply invalid.
    let body = validate(format!("ST-{}", cas_server::crypto::random_base62(29)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("INVALID_TICKET"), "{body}");

    redis.kill();
    const REQUESTS: usize = 200;
    for _ in 0..REQUESTS {
        let body = validate(format!("ST-{}", cas_server::crypto::random_base62(29)))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
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
