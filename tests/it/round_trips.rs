//! Round trips to Redis, counted as Redis sees them: `redis-cli monitor` prints every
//! command a client sends; a `MULTI…EXEC` block counts once (one write, one answer) and
//! what scripts run inside Redis not at all. Markers (`ECHO`) sent on a connection of
//! the test's own cut the stream into the steps of a login.
#![cfg(unix)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::support::redis::RedisServer;
use crate::support::{
    ClusterKeys, PASSWORD, SERVICE, TestServer, assert_validates_as, hidden_input,
};

/// The commands of one step, one entry per round trip.
fn round_trips(lines: &[String]) -> Vec<String> {
    let mut trips: Vec<String> = Vec::new();
    let mut in_multi = false;
    for line in lines {
        if line.contains(" lua]") {
            continue;
        }
        let Some(command) = line
            .split("] \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_uppercase)
        else {
            continue;
        };
        match command.as_str() {
            "MULTI" => {
                in_multi = true;
                trips.push("MULTI".into());
            }
            "EXEC" => in_multi = false,
            _ if in_multi => {}
            _ => trips.push(command),
        }
    }
    trips
}

#[tokio::test]
async fn a_login_and_an_sso_cycle_cost_few_round_trips() {
    let redis = RedisServer::start(false).await;
    let keys = ClusterKeys::generate();
    let prefix = format!("cas-test-{}:", cas_server::crypto::random_base62(8));
    let mut settings = keys.redis_settings(&redis.url(), &prefix);
    // No sweep inside the counted steps.
    settings.tickets.reaper_interval = Duration::from_secs(3600);
    let server = TestServer::start_settings(settings).await;
    // The scripts are loaded once per Redis (SCRIPT LOAD after NOSCRIPT): not counted.
    let warm = server.browser();
    warm.login_for_ticket(SERVICE).await;
    let ticket = warm.sso_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;

    let mut monitor = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli monitor starts");
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    // Monitoring from here on.
    let ok = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("redis-cli answers")
        .unwrap();
    assert_eq!(ok.as_deref(), Some("OK"));
    let mut marks = redis.connection().await.unwrap();
    let mut mark = async |name: &str| {
        let _: String = redis::cmd("ECHO")
            .arg(name)
            .query_async(&mut marks)
            .await
            .unwrap();
    };
    let mut until = async |name: &str| {
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
                .await
                .expect("the monitor keeps talking")
                .unwrap()
                .expect("the monitor is running");
            if line.contains(&format!("\"ECHO\" \"{name}\"")) {
                return seen;
            }
            seen.push(line);
        }
    };

    mark("start").await;
    let browser = server.browser();
    let form = browser.get_login(&[("service", SERVICE)]).await;
    let lt = hidden_input(&form.text().await.unwrap(), "lt").unwrap();
    let posted = browser
        .submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[])
        .await;
    assert_eq!(posted.status(), reqwest::StatusCode::FOUND);
    mark("logged-in").await;
    let ticket = browser.sso_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
    mark("cycled").await;

    until("start").await;
    let login = round_trips(&until("logged-in").await);
    let cycle = round_trips(&until("cycled").await);
    // An SSO cycle: issue (the script sends the session back, checked by the node after
    // it, and the ticket taken back if the check fails), redeem (reading the session).
    // A login: the form's key claimed, the throttle asked and told, and the session
    // stored with its first ticket (one more than the aim).
    assert!(cycle.len() <= 2, "an SSO cycle: {cycle:?}");
    assert!(login.len() <= 4, "a password login: {login:?}");
}
