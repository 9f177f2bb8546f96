//! Redis Cluster: three primaries on loopback (real `redis-server --cluster-enabled`
//! processes joined by `redis-cli --cluster create`). Every key of a session shares one
//! hash slot; sessions spread over the primaries; two CAS nodes share sessions over the
//! cluster; a session follows its slot when it moves to another primary; the protocol
//! suite passes on it.

use std::time::Duration;

use cas_server::config::Settings;
use reqwest::StatusCode;

use crate::redis::run_protocol_suite;
use crate::support::redis_cluster::RedisCluster;
use crate::support::*;

/// Every request in these tests must answer within this, resharding or not.
const BOUND: Duration = Duration::from_secs(5);

struct Setup {
    cluster: RedisCluster,
    keys: ClusterKeys,
    prefix: String,
}

impl Setup {
    async fn new() -> Self {
        Self {
            cluster: RedisCluster::start().await,
            keys: ClusterKeys::generate(),
            prefix: format!("cas-test-{}:", cas_server::crypto::random_base62(8)),
        }
    }

    async fn node(&self) -> TestServer {
        self.node_with(|_| {}).await
    }

    async fn node_with(&self, configure: impl FnOnce(&mut Settings)) -> TestServer {
        let mut settings = self.keys.redis_settings_with(
            &self.cluster.urls()[0],
            &self.prefix,
            &self.cluster.nodes_line(),
        );
        configure(&mut settings);
        TestServer::start_settings(settings).await
    }

    /// This test's keys of sessions and what they hold (`t:`, `h:`, `p:` under a hash
    /// tag), by node.
    async fn session_keys(&self) -> Vec<(usize, String)> {
        let mut keys = Vec::new();
        for kind in ["t", "h", "p"] {
            keys.extend(
                self.cluster
                    .keys(&format!("{}{{?}}{kind}:*", self.prefix))
                    .await,
            );
        }
        keys
    }
}

/// A session with tickets issued on two nodes, a validated one and a PGT's worth of
/// history: all its keys (the session, its history, its tickets, its expiry index) are
/// in one slot, and logout on either node tells every application it had a ticket for.
#[tokio::test]
async fn two_nodes_share_a_session_over_a_cluster_and_single_logout_finds_every_ticket() {
    let setup = Setup::new().await;
    let app = crate::support::receiver::Receiver::start().await;
    let loopback = |s: &mut Settings| s.http_client.allow_local_urls = true;
    let a = setup.node_with(loopback).await;
    let b = setup.node_with(loopback).await;
    let on_a = a.browser();
    let on_b = on_a.on(&b);

    let one = on_a.login_for_ticket(&app.url("/one/home")).await;
    let two = on_b.sso_ticket(&app.url("/two/home")).await;
    let three = on_a.sso_ticket(&app.url("/one/other")).await;
    assert_validates_as(&b, &app.url("/one/home"), &one, "alice").await;

    let keys = setup.session_keys().await;
    assert!(keys.len() >= 4, "session, history, two tickets: {keys:?}");
    let mut slots = std::collections::BTreeSet::new();
    for (_, key) in &keys {
        slots.insert(setup.cluster.slot(key).await);
    }
    assert_eq!(slots.len(), 1, "one slot for the whole session: {keys:?}");
    let tag = keys[0].1.split('}').next().unwrap().to_owned() + "}";
    let expiry = format!("{tag}expiry");
    assert_eq!(
        setup.cluster.slot(&expiry).await,
        *slots.first().unwrap(),
        "the session's expiry index is in its slot too"
    );

    let logout = on_b.get("/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::OK);
    let received = app.wait_for(3).await;
    let mut told: Vec<(String, String)> = received
        .iter()
        .map(|m| {
            let xml = m.logout_request.as_deref().unwrap();
            let index = xml
                .split("<samlp:SessionIndex>")
                .nth(1)
                .and_then(|rest| rest.split("</samlp:SessionIndex>").next())
                .unwrap()
                .to_owned();
            (m.path.clone(), index)
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        vec![
            ("/one/home".to_owned(), one),
            ("/one/other".to_owned(), three),
            ("/two/home".to_owned(), two),
        ]
    );
    let left = setup.session_keys().await;
    assert!(left.is_empty(), "logout left {left:?}");
}

/// Sessions are spread over every primary, not piled on one: thirty logins land on all
/// three (the odds of missing one by chance are below 1 in 10^5).
#[tokio::test]
async fn sessions_spread_over_the_primaries() {
    let setup = Setup::new().await;
    let server = setup.node().await;
    for _ in 0..30 {
        server.browser().login_for_ticket(SERVICE).await;
    }
    let nodes: std::collections::BTreeSet<usize> = setup
        .session_keys()
        .await
        .into_iter()
        .map(|(node, _)| node)
        .collect();
    assert_eq!(nodes.len(), 3, "sessions on nodes {nodes:?}");
}

/// A resharding: the slot of a live session moves to another primary, key by key. A
/// request meanwhile answers at once (with a ticket, or 503 while the session's keys are
/// split between the two nodes); once the slot has moved the same browser's SSO works
/// on the new primary, and a ticket issued before the move validates.
#[tokio::test]
async fn a_session_follows_its_slot_to_another_primary() {
    let setup = Setup::new().await;
    let server = setup.node().await;
    let browser = server.browser();
    browser.login_for_ticket(SERVICE).await;
    let before = browser.sso_ticket(OTHER_SERVICE).await;

    let keys = setup.session_keys().await;
    let (from, key) = keys.first().cloned().expect("a session stored");
    let slot = setup.cluster.slot(&key).await;
    assert_eq!(setup.cluster.owner(slot).await, from);
    let to = (from + 1) % 3;
    let during = || async {
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(BOUND, browser.get_login(&[("service", SERVICE)]))
            .await
            .expect("a request during the resharding answers");
        assert!(
            matches!(
                response.status(),
                StatusCode::FOUND | StatusCode::SERVICE_UNAVAILABLE
            ),
            "during the move: {}",
            response.status()
        );
        assert!(started.elapsed() < BOUND);
    };
    setup.cluster.move_slot(slot, from, to, Some(during)).await;

    assert_eq!(setup.cluster.owner(slot).await, to);
    let moved: Vec<usize> = setup
        .session_keys()
        .await
        .into_iter()
        .filter(|(_, k)| k.starts_with(key.split('}').next().unwrap()))
        .map(|(node, _)| node)
        .collect();
    assert!(
        !moved.is_empty() && moved.iter().all(|n| *n == to),
        "the session's keys are on the new primary: {moved:?}"
    );
    assert_validates_as(&server, OTHER_SERVICE, &before, "alice").await;
    assert_sso_as(&server, &browser, SERVICE, "alice").await;
}

/// One primary down costs the sessions in its slots, not the others: a session on a
/// surviving primary keeps its SSO and its tickets, one on the dead primary is answered
/// 503 at once, and no request waits past the bound.
#[tokio::test]
async fn a_dead_primary_costs_only_its_own_sessions() {
    let mut setup = Setup::new().await;
    let server = setup.node().await;
    let mut by_node: std::collections::BTreeMap<usize, Browser> = Default::default();
    for _ in 0..30 {
        let browser = server.browser();
        browser.login_for_ticket(SERVICE).await;
        if by_node.len() == 3 {
            break;
        }
        let node = owner_of_session(&setup, &browser, &server).await;
        by_node.entry(node).or_insert(browser);
    }
    let (dead, doomed) = by_node.pop_first().expect("sessions on some primary");
    let (_, survivor) = by_node.pop_first().expect("sessions on two primaries");
    setup.cluster.nodes[dead].kill();

    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert_sso_as(&server, &survivor, SERVICE, "alice").await;
        assert!(started.elapsed() < BOUND);
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(BOUND, doomed.get_login(&[("service", SERVICE)]))
            .await
            .expect("answered within the bound");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < BOUND);
    }
    // Past the cluster's node timeout too: still served.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_sso_as(&server, &survivor, SERVICE, "alice").await;
}

/// The primary holding the session of `browser`: the node where its ticket's slot lives.
async fn owner_of_session(setup: &Setup, browser: &Browser, server: &TestServer) -> usize {
    let ticket = browser.sso_ticket(SERVICE).await;
    assert_validates_as(server, SERVICE, &ticket, "alice").await;
    let shard = ticket.chars().nth(3).unwrap();
    let slot = setup
        .cluster
        .slot(&format!("{}{{{shard}}}t:x", setup.prefix))
        .await;
    setup.cluster.owner(slot).await
}

/// The protocol suite once more, every server on a three-primary Redis Cluster.
#[tokio::test]
async fn the_protocol_suite_passes_on_a_redis_cluster() {
    if std::env::var_os("CAS_TEST_REDIS_CLUSTER").is_some() {
        return;
    }
    let cluster = RedisCluster::start().await;
    run_protocol_suite("CAS_TEST_REDIS_CLUSTER", &cluster.urls().join(" ")).await;
    let keys = cluster.keys("cas-suite-*").await;
    let servers: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter_map(|(_, k)| k.split(':').next())
        .collect();
    assert!(
        servers.len() >= 50,
        "servers that stored tickets: {}",
        servers.len()
    );
    let nodes: std::collections::BTreeSet<usize> = keys.iter().map(|(n, _)| *n).collect();
    assert_eq!(nodes.len(), 3, "keys on every primary");
}
