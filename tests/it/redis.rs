//! The Redis ticket registry against a real `redis-server` (started by the harness on its
//! own port): the key flows on one node, two nodes sharing one Redis, faults and recovery,
//! persistence across a Redis restart, and what a dump of Redis reveals. Also the
//! in-memory store's snapshot across a graceful restart.

use std::time::Duration;

use cas_server::config::Settings;
use reqwest::StatusCode;

use crate::support::callback::{CallbackSink, TestPki};
use crate::support::redis::RedisServer;
use crate::support::*;

/// Every request in these tests must answer within this, Redis up or down.
const BOUND: Duration = Duration::from_secs(5);

/// A Redis and the keys its nodes share; each test uses its own key prefix.
struct Cluster {
    redis: RedisServer,
    keys: ClusterKeys,
    prefix: String,
}

impl Cluster {
    async fn new(aof: bool) -> Self {
        Self {
            redis: RedisServer::start(aof).await,
            keys: ClusterKeys::generate(),
            prefix: format!("cas-test-{}:", cas_server::crypto::random_base62(8)),
        }
    }

    fn settings(&self) -> Settings {
        self.keys.redis_settings(&self.redis.url(), &self.prefix)
    }

    /// A node of this cluster in all but its registry key: a misconfigured node.
    fn settings_with_another_registry_key(&self) -> Settings {
        let other = ClusterKeys {
            registry: ClusterKeys::generate().registry,
            tgc: self.keys.tgc.clone(),
            flow: self.keys.flow.clone(),
        };
        other.redis_settings(&self.redis.url(), &self.prefix)
    }

    async fn node(&self) -> TestServer {
        self.node_with(|_| {}).await
    }

    async fn node_with(&self, configure: impl FnOnce(&mut Settings)) -> TestServer {
        let mut settings = self.settings();
        configure(&mut settings);
        TestServer::start_settings(settings).await
    }

    /// The stored session (`t:` key whose kind is `tgt`); panics unless exactly one.
    async fn session_key(&self) -> String {
        let mut c = self.redis.connection().await.unwrap();
        let mut sessions = Vec::new();
        for key in self.redis.keys(&format!("{}t:*", self.prefix)).await {
            let kind: Option<String> = ::redis::cmd("HGET")
                .arg(&key)
                .arg("k")
                .query_async(&mut c)
                .await
                .unwrap();
            if kind.as_deref() == Some("tgt") {
                sessions.push(key);
            }
        }
        assert_eq!(sessions.len(), 1, "one session stored: {sessions:?}");
        sessions.remove(0)
    }
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {BOUND:?}"))
}

/// `ticket` for `service` is refused at `/serviceValidate` with INVALID_TICKET.
async fn assert_refused(server: &TestServer, service: &str, ticket: &str, why: &str) {
    let validation = server
        .client()
        .validate("/serviceValidate", service, ticket)
        .await;
    assert_eq!(validation.code(), "INVALID_TICKET", "{why}");
}

/// Polls `/health` (for up to 5 s) until it answers 200: the reconnection backoff is short.
async fn wait_until_healthy(server: &TestServer, why: &str) {
    for _ in 0..50 {
        if health(server).await.0 == StatusCode::OK {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{why}: /health stayed DOWN");
}

async fn health(server: &TestServer) -> (StatusCode, serde_json::Value) {
    let response = server.raw_get("/health", &[]).await;
    let status = response.status();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

/// TKT-03, VAL-01, LOGIN-04, LOGOUT-01 with the Redis store: a ticket validates once,
/// SSO works, and logout ends the session and its unused tickets.
#[tokio::test]
async fn the_key_flows_work_with_the_redis_store() {
    let cluster = Cluster::new(false).await;
    let server = cluster.node().await;
    let browser = server.browser();

    let ticket = browser.login_for_ticket(SERVICE).await;
    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;
    assert_eq!(validation.user(), "alice");
    assert!(validation.attribute_names().contains(&"mail".to_owned()));
    assert_refused(&server, SERVICE, &ticket, "TKT-03: one use only").await;

    let sso = browser.sso_ticket(OTHER_SERVICE).await;
    assert_ne!(sso, ticket);
    let unused = browser.sso_ticket(SERVICE).await;
    assert_validates_as(&server, OTHER_SERVICE, &sso, "alice").await;
    let wrong_service = server
        .client()
        .validate(
            "/serviceValidate",
            EXACT_SERVICE,
            &browser.sso_ticket(SERVICE).await,
        )
        .await;
    assert_eq!(wrong_service.code(), "INVALID_SERVICE");

    let response = browser.get("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_no_sso(&browser, "logged out").await;
    assert_refused(
        &server,
        SERVICE,
        &unused,
        "its tickets went with the session",
    )
    .await;
    let left = cluster.redis.keys(&format!("{}*", cluster.prefix)).await;
    assert!(
        left.iter().all(|k| {
            // Receipts of one-shot scripts (r:) expire after 30 s.
            ["c:", "a:", "r:", "keycheck", "health"]
                .iter()
                .any(|kind| k.starts_with(&format!("{}{kind}", cluster.prefix)))
        }),
        "only used login forms, login-attempt counters, receipts and the checks are left: {left:?}"
    );
    for receipt in left
        .iter()
        .filter(|k| k.starts_with(&format!("{}r:", cluster.prefix)))
    {
        let ttl = cluster.redis.pttl(receipt).await;
        assert!(
            0 < ttl && ttl <= 30_000,
            "a receipt expires: {receipt} {ttl}"
        );
    }
    let (status, body) = health(&server).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tickets"]["store"], "redis");
    assert_eq!(body["tickets"]["reachable"], true);
}

/// Two nodes, one Redis, the same keys: a user moves between nodes as a load balancer
/// sends them, and every ticket works on either node.
#[tokio::test]
async fn two_nodes_share_sessions_tickets_and_logout() {
    let cluster = Cluster::new(false).await;
    let a = cluster.node().await;
    let b = cluster.node().await;
    let on_a = a.browser();
    let on_b = on_a.on(&b);

    let from_a = on_a.login_for_ticket(SERVICE).await;
    let from_b = on_b.sso_ticket(OTHER_SERVICE).await;
    assert_validates_as(&b, SERVICE, &from_a, "alice").await;
    assert_validates_as(&a, OTHER_SERVICE, &from_b, "alice").await;
    assert_refused(&a, SERVICE, &from_a, "used on B, so gone on A too").await;

    // A form shown by B is posted to A: the form key is shared too.
    let other = b.browser();
    let lt = other.form_token(Some(SERVICE)).await;
    let posted = other
        .on(&a)
        .submit_login(Some(SERVICE), "bob", BOB_PASSWORD, &lt, &[])
        .await;
    assert_eq!(posted.status(), StatusCode::FOUND, "B's form accepted by A");

    let unused = on_a.sso_ticket(SERVICE).await;
    let cookie = on_a.tgc().unwrap();
    let response = on_b.get("/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Logout cleared the jar; put the cookie back, as a copy of it would be presented.
    on_a.set_tgc(&cookie);
    assert_no_sso(&on_a, "logout on B ends the session on A").await;
    assert_refused(&a, SERVICE, &unused, "its tickets went with the session").await;
}

/// A stolen cookie replayed on the other node after logout is worthless there too.
#[tokio::test]
async fn a_cookie_from_before_logout_opens_no_session_on_any_node() {
    let cluster = Cluster::new(false).await;
    let a = cluster.node().await;
    let b = cluster.node().await;
    let on_a = a.signed_in_browser().await;
    let stolen = on_a.tgc().unwrap();
    on_a.get("/logout", &[]).await;

    let thief = on_a.on(&b);
    thief.set_tgc(&stolen);
    assert_no_sso(&thief, "replayed on B after logout on A").await;
}

/// TKT-03 across nodes: the same ticket validated on both nodes at once succeeds once.
#[tokio::test]
async fn concurrent_validation_on_two_nodes_succeeds_exactly_once() {
    let cluster = Cluster::new(false).await;
    let a = cluster.node().await;
    let b = cluster.node().await;
    let browser = a.signed_in_browser().await;
    for round in 0..10 {
        let ticket = browser.sso_ticket(SERVICE).await;
        let (ca, cb) = (a.client(), b.client());
        let (on_a, on_b) = tokio::join!(
            ca.validate("/serviceValidate", SERVICE, &ticket),
            cb.validate("/serviceValidate", SERVICE, &ticket),
        );
        let successes = [&on_a, &on_b]
            .iter()
            .filter(|v| matches!(v, Validation::Success { .. }))
            .count();
        assert_eq!(successes, 1, "round {round}: {on_a:?} / {on_b:?}");
        let failure = if matches!(on_a, Validation::Success { .. }) {
            &on_b
        } else {
            &on_a
        };
        assert_eq!(failure.code(), "INVALID_TICKET");
    }
}

/// PROXY-01, PVAL-01 across nodes: the PGT is granted on A, a PT obtained with it on B,
/// and the back-end validates the PT on A.
#[tokio::test]
async fn proxying_works_across_nodes() {
    let cluster = Cluster::new(false).await;
    let pki = TestPki::new();
    let sink = CallbackSink::start(&pki.leaf(&["localhost"])).await;
    let trust = |s: &mut Settings| {
        s.http_client.extra_roots = vec![pki.ca_der()];
        s.http_client.allow_local_urls = true;
    };
    let a = cluster.node_with(trust).await;
    let b = cluster.node_with(trust).await;
    let browser = a.browser();

    let ticket = browser.login_for_ticket(PORTAL).await;
    let validation = a
        .client()
        .validate_with(
            "/serviceValidate",
            &[
                ("service", PORTAL),
                ("ticket", &ticket),
                ("pgtUrl", &sink.url("/cb/x")),
            ],
        )
        .await;
    assert!(
        matches!(
            validation,
            Validation::Success {
                pgt_iou: Some(_),
                ..
            }
        ),
        "{validation:?}"
    );
    let (_, pgt) = sink.pgt_delivered_to("/cb/x");

    let response = b
        .client()
        .get("/proxy", &[("pgt", &pgt), ("targetService", BACKEND)])
        .await;
    let doc = roxmltree::Document::parse(&response.raw).unwrap();
    let pt = doc
        .descendants()
        .find(|n| n.has_tag_name((CAS_NS, "proxyTicket")))
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("a proxy ticket from B: {}", response.raw))
        .to_owned();
    let backend = a.client().validate("/proxyValidate", BACKEND, &pt).await;
    let Validation::Success { user, proxies, .. } = backend else {
        panic!("{backend:?}");
    };
    assert_eq!(user, "alice");
    assert_eq!(proxies, Some(vec![sink.url("/cb/x")]));

    // Logout on B ends the PGT granted on A.
    browser.on(&b).get("/logout", &[]).await;
    let response = a
        .client()
        .get("/proxy", &[("pgt", &pgt), ("targetService", BACKEND)])
        .await;
    assert!(response.raw.contains("INVALID_TICKET"), "{}", response.raw);
}

/// Redis goes away: logins get the "temporarily unavailable" page, validation answers
/// INTERNAL_ERROR, `/health` says so, nothing hangs; when Redis is back, so is the service,
/// without restarting CAS.
#[tokio::test]
async fn redis_down_means_unavailable_and_its_return_means_service() {
    let mut cluster = Cluster::new(false).await;
    let server = cluster.node().await;
    let browser = server.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;

    cluster.redis.kill();

    let sso = bounded("SSO", browser.get_login(&[("service", SERVICE)])).await;
    assert_eq!(sso.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = sso.text().await.unwrap();
    assert!(page.contains("unavailable"), "{page}");
    assert!(
        !page.contains("redis") && !page.contains("127.0.0.1"),
        "no detail: {page}"
    );
    let fresh = server.browser();
    let form = bounded("login form", fresh.get_login(&[("service", SERVICE)])).await;
    if form.status() == StatusCode::OK {
        let lt = hidden_input(&form.text().await.unwrap(), "lt").unwrap();
        let posted = bounded(
            "login",
            fresh.submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[]),
        )
        .await;
        assert_eq!(posted.status(), StatusCode::SERVICE_UNAVAILABLE);
    } else {
        assert_eq!(form.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let validation = bounded(
        "validation",
        server
            .client()
            .validate("/serviceValidate", SERVICE, &ticket),
    )
    .await;
    assert_eq!(validation.code(), "INTERNAL_ERROR");
    let (status, body) = bounded("health", health(&server)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "DOWN");
    assert_eq!(body["tickets"]["reachable"], false);

    cluster.redis.restart().await;

    wait_until_healthy(&server, "/health recovers with Redis").await;
    let again = server.browser();
    let ticket = again.login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}

/// Redis restarted with its append-only file: sessions and unused tickets survive.
#[tokio::test]
async fn a_redis_restart_with_aof_loses_no_session() {
    let mut cluster = Cluster::new(true).await;
    let server = cluster.node().await;
    let browser = server.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;

    cluster.redis.restart().await;

    let mut validated = None;
    for _ in 0..50 {
        let v = server
            .client()
            .validate("/serviceValidate", SERVICE, &ticket)
            .await;
        if !matches!(&v, Validation::Failure { code, .. } if code == "INTERNAL_ERROR") {
            validated = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(validated.expect("Redis answers again").user(), "alice");
    assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
}

/// Nothing in Redis can be read or replayed: no ticket id, user name, attribute or
/// service URL appears in any key or value.
#[tokio::test]
async fn redis_holds_no_ticket_id_user_or_service_in_clear() {
    let cluster = Cluster::new(false).await;
    let server = cluster.node().await;
    let browser = server.browser();
    let ticket = browser.login_for_ticket(SERVICE).await;
    let tgc = browser.tgc().unwrap();
    let form = server.browser();
    let _lt = form.form_token(Some(SERVICE)).await;

    let dump = cluster.redis.dump().await;

    assert!(
        dump.contains(&cluster.prefix),
        "something was stored: {dump}"
    );
    for secret in [
        ticket.as_str(),
        &tgc,
        "alice",
        "example.org",
        "TGT-",
        "ST-",
        "staff",
    ] {
        assert!(!dump.contains(secret), "`{secret}` in Redis:\n{dump}");
    }
    // Nor merely encoded: every base64url run in the dump decoded, none of it is readable.
    let decoded: Vec<u8> = dump
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|run| run.len() >= 16)
        .filter_map(cas_server::crypto::b64url_decode)
        .flatten()
        .collect();
    let decoded = String::from_utf8_lossy(&decoded);
    for secret in ["alice", "TGT-", "ST-", "example.org"] {
        assert!(!decoded.contains(secret), "`{secret}` in a decoded value");
    }
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}

/// A CAS node restarted (gracefully or not) on the Redis store loses no session: it
/// keeps nothing of its own.
#[tokio::test]
async fn a_restarted_node_finds_its_sessions_in_redis() {
    let cluster = Cluster::new(false).await;
    let first = cluster.node().await;
    let browser = first.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;
    first.stop().await;

    let second = cluster.node().await;
    assert_validates_as(&second, SERVICE, &ticket, "alice").await;
    assert_sso_as(&second, &browser.on(&second), OTHER_SERVICE, "alice").await;
}

/// A node configured with another registry key sees none of the others' tickets (and
/// disturbs none): foreign entries are treated as absent.
#[tokio::test]
async fn a_node_with_another_registry_key_sees_no_ticket() {
    let cluster = Cluster::new(false).await;
    let a = cluster.node().await;
    // The first node to check records its key; A is first, so C is the odd one out.
    assert_eq!(health(&a).await.0, StatusCode::OK);
    let c = TestServer::start_settings(cluster.settings_with_another_registry_key()).await;
    let browser = a.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;

    assert_no_sso(&browser.on(&c), "the session is not C's to open").await;
    assert_refused(&c, SERVICE, &ticket, "not C's to redeem").await;
    let (status, body) = health(&c).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "C says it is misconfigured"
    );
    assert_eq!(body["tickets"]["reachable"], false);
    assert_eq!(health(&a).await.0, StatusCode::OK);
    assert_validates_as(&a, SERVICE, &ticket, "alice").await;
}

/// C's reaper, with another key and a clock far ahead, must not sweep the others'
/// sessions (it cannot read them, so it cannot tell they are expired).
#[tokio::test]
async fn a_node_with_another_key_sweeps_nothing() {
    let cluster = Cluster::new(false).await;
    let a = cluster.node().await;
    assert_eq!(health(&a).await.0, StatusCode::OK);
    let browser = a.signed_in_browser().await;
    let mut settings = cluster.settings_with_another_registry_key();
    settings.tickets.reaper_interval = Duration::from_millis(20);
    let c = TestServer::start_settings(settings).await;
    c.clock.advance(Duration::from_secs(24 * 3600));
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_sso_as(&a, &browser, SERVICE, "alice").await;
    drop(c);
}

/// A session's last use is stored in clear (scripts slide it); one edited in Redis
/// without this node's key carries no valid tag and cannot stretch the session.
#[tokio::test]
async fn an_edited_last_use_cannot_keep_a_session_alive() {
    let cluster = Cluster::new(false).await;
    let server = cluster.node().await;
    let browser = server.signed_in_browser().await;
    let key = cluster.session_key().await;
    let mut c = cluster.redis.connection().await.unwrap();
    let used: i64 = ::redis::cmd("HGET")
        .arg(&key)
        .arg("u")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = ::redis::cmd("HSET")
        .arg(&key)
        .arg("u")
        .arg(used + 3 * 3600 * 1000)
        .query_async(&mut c)
        .await
        .unwrap();

    server.clock.advance(Duration::from_secs(2 * 3600 + 60));

    assert_no_sso(&browser, "idle for longer than tgt_idle_ttl").await;

    // Edited to just before now: a script that slid and re-tagged it before anyone
    // checked the old tag would make the edit genuine.
    let _: () = ::redis::cmd("HSET")
        .arg(&key)
        .arg("u")
        .arg(used + 2 * 3600 * 1000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_no_sso(
        &browser,
        "an edited last use is never slid into a valid one",
    )
    .await;
    assert_no_sso(&browser, "nor on a second try").await;
    // The tickets issued before the session was found dead are taken back.
    for key in cluster.redis.keys(&format!("{}t:*", cluster.prefix)).await {
        let kind: Option<String> = ::redis::cmd("HGET")
            .arg(&key)
            .arg("k")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_ne!(kind.as_deref(), Some("st"), "a ticket was left: {key}");
    }
    let history: i64 = ::redis::cmd("LLEN")
        .arg(key.replacen(":t:", ":h:", 1))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(history, 0, "no entry left in the history");
}

/// The session key's TTL follows the policy: the idle time, refreshed by use, never past
/// the hard limit; and the reaper removes what an expired session leaves.
#[tokio::test]
async fn session_ttls_slide_with_use_up_to_the_hard_limit() {
    let cluster = Cluster::new(false).await;
    let server = cluster
        .node_with(|s| {
            s.tickets.tgt_idle_ttl = Duration::from_secs(60);
            s.tickets.tgt_hard_ttl = Duration::from_secs(150);
            s.tickets.reaper_interval = Duration::from_millis(50);
        })
        .await;
    let browser = server.signed_in_browser().await;
    let key = cluster.session_key().await;
    let ttl = cluster.redis.pttl(&key).await;
    assert!(
        (55_000..=60_000).contains(&ttl),
        "idle time at login: {ttl}"
    );

    server.clock.advance(Duration::from_secs(50));
    browser.sso_ticket(SERVICE).await;
    let ttl = cluster.redis.pttl(&key).await;
    assert!((55_000..=60_000).contains(&ttl), "slid by use: {ttl}");

    server.clock.advance(Duration::from_secs(50));
    browser.sso_ticket(SERVICE).await;
    let ttl = cluster.redis.pttl(&key).await;
    assert!(
        (45_000..=50_000).contains(&ttl),
        "capped by the hard limit: {ttl}"
    );

    server.clock.advance(Duration::from_secs(50));
    assert_no_sso(&browser, "past the hard limit").await;
    let mut swept = false;
    for _ in 0..100 {
        if cluster
            .redis
            .keys(&format!("{}*", cluster.prefix))
            .await
            .iter()
            .all(|k| !k.contains(":t:") && !k.contains(":h:"))
        {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        swept,
        "the reaper removed the session and its tickets: {}",
        cluster.redis.dump().await
    );
}

/// The in-memory store's snapshot: a graceful restart keeps the session and an unused
/// ticket; the file is private and deleted once read; a corrupt one is ignored.
#[tokio::test]
async fn a_memory_snapshot_carries_sessions_across_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.snapshot");
    let keys = ClusterKeys::generate();
    let settings = || {
        settings_with(
            &keys.tgc,
            &format!(
                "[login]\nflow_key = \"{}\"\n[tickets]\nkey = \"{}\"\n[tickets.memory]\nsnapshot_file = \"{}\"\n",
                keys.flow,
                keys.registry,
                path.display()
            ),
        )
    };
    let first = TestServer::start_settings(settings()).await;
    let browser = first.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;
    first.stop().await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("alice") && !raw.contains(&ticket));

    let second = TestServer::start_settings(settings()).await;
    assert!(!path.exists(), "deleted once restored");
    let browser = browser.on(&second);
    assert_validates_as(&second, SERVICE, &ticket, "alice").await;
    assert_sso_as(&second, &browser, OTHER_SERVICE, "alice").await;
    second.stop().await;

    std::fs::write(&path, "not a snapshot").unwrap();
    let (logs, guard) = Captured::install();
    let third = TestServer::start_settings(settings()).await;
    drop(guard);
    assert!(
        logs.text().contains("ticket snapshot not restored"),
        "the corrupt snapshot is reported: {}",
        logs.text()
    );
    assert_no_sso(&browser.on(&third), "a corrupt snapshot restores nothing").await;
    let ticket = third.browser().login_for_ticket(SERVICE).await;
    assert_validates_as(&third, SERVICE, &ticket, "alice").await;
}

/// SLO-02, SLO-06: the ticket history lives with the session in Redis, so a logout on B
/// tells the applications that received tickets from A, each about its own ticket.
#[tokio::test]
async fn single_logout_on_one_node_covers_tickets_issued_by_the_other() {
    let cluster = Cluster::new(false).await;
    let app = crate::support::receiver::Receiver::start().await;
    let loopback = |s: &mut Settings| s.http_client.allow_local_urls = true;
    let a = cluster.node_with(loopback).await;
    let b = cluster.node_with(loopback).await;
    let on_a = a.browser();
    let one = on_a.login_for_ticket(&app.url("/one/home")).await;
    let two = on_a.on(&b).sso_ticket(&app.url("/two/home")).await;

    on_a.on(&b).get("/logout", &[]).await;

    let received = app.wait_for(2).await;
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
            assert!(xml.contains(">alice</saml:NameID>"), "{xml}");
            (m.path.clone(), index)
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        vec![("/one/home".to_owned(), one), ("/two/home".to_owned(), two)]
    );
}

/// SLO-01 with Redis: a session that expires is logged out of its applications by the
/// reaper of one node, exactly once though both nodes sweep.
#[tokio::test]
async fn an_expired_session_in_redis_is_logged_out_once() {
    let cluster = Cluster::new(false).await;
    let app = crate::support::receiver::Receiver::start().await;
    let configure = |s: &mut Settings| {
        s.http_client.allow_local_urls = true;
        s.slo.on_expiry = true;
        s.tickets.reaper_interval = Duration::from_millis(50);
    };
    let a = cluster.node_with(configure).await;
    let b = cluster.node_with(configure).await;
    let ticket = a.browser().login_for_ticket(&app.url("/one/x")).await;

    a.clock.advance(Duration::from_secs(3 * 3600));
    b.clock.advance(Duration::from_secs(3 * 3600));
    let received = app.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(app.received().len(), 1, "told once: {:?}", app.received());
    assert!(
        received[0]
            .logout_request
            .as_deref()
            .unwrap()
            .contains(&format!(
                "<samlp:SessionIndex>{ticket}</samlp:SessionIndex>"
            ))
    );
}

/// With Redis, a node refuses to start on TGC keys it would generate itself: another node
/// could never open its cookies. The message says what to do.
#[tokio::test]
async fn a_redis_node_refuses_a_key_file_it_would_generate() {
    let cluster = Cluster::new(false).await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("tgc-keys.toml");
    let mut settings = cluster.settings();
    settings.tgc.keys = cas_server::config::TgcKeySource::KeyFile(missing.clone());

    let clock = std::sync::Arc::new(cas_server::clock::ManualClock::new());
    let error = cas_server::App::build(settings, clock)
        .await
        .unwrap_err()
        .to_string();

    assert!(
        error.contains("does not exist") && error.contains("keygen"),
        "{error}"
    );
    assert!(!missing.exists(), "no key file was generated");
}

/// The same scenario, step by step, on the in-memory store and on Redis: the two must
/// answer alike (the protocol layer cannot tell them apart).
async fn registry_scenario(registry: &dyn cas_server::tickets::TicketRegistry) {
    use cas_server::clock::Clock as _;
    use cas_server::tickets::*;
    let t0 = cas_server::clock::SystemClock.now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let tgt = TicketGrantingTicket::new(
        Principal {
            id: "alice".into(),
            attributes: Default::default(),
        },
        t0,
        ExpirationPolicy::sliding(Duration::from_secs(60), Duration::from_secs(150)),
        false,
    );
    registry.add_tgt(tgt.clone()).await.unwrap();
    let st = |now| {
        ServiceTicket::new(
            &tgt.id,
            "https://app.example.org/",
            now,
            ExpirationPolicy::fixed(Duration::from_secs(10)),
            false,
        )
    };

    // A TGT id is not a one-use ticket, and survives the attempt.
    assert!(matches!(
        registry.redeem(&tgt.id, t0).await.unwrap(),
        Redeemed::WrongKind
    ));
    assert!(registry.get_tgt(&tgt.id, t0).await.unwrap().is_some());
    // Issued at 50 s: slides the session to 110 s.
    let first = st(at(50));
    assert!(
        registry
            .add_service_ticket(first.clone(), LogoutTarget::None, at(50))
            .await
            .unwrap()
            .stored()
    );
    assert!(
        registry.get_tgt(&tgt.id, at(100)).await.unwrap().is_some(),
        "slid"
    );
    assert!(matches!(
        registry.redeem(&first.id, at(55)).await.unwrap(),
        Redeemed::Valid(_)
    ));
    assert!(matches!(
        registry.redeem(&first.id, at(55)).await.unwrap(),
        Redeemed::Missing
    ));
    let late = st(at(60));
    registry
        .add_service_ticket(late.clone(), LogoutTarget::None, at(60))
        .await
        .unwrap();
    assert!(matches!(
        registry.redeem(&late.id, at(75)).await.unwrap(),
        Redeemed::Expired(_)
    ));
    // Past the idle limit, checked where the ticket is added: refused.
    assert!(
        !registry
            .add_service_ticket(st(at(125)), LogoutTarget::None, at(125))
            .await
            .unwrap()
            .stored()
    );
    let pgt = ProxyGrantingTicket::new(&tgt.id, "https://p/", vec!["https://p/cb".into()], at(61));
    assert!(
        !registry.add_pgt(pgt.clone(), at(125)).await.unwrap(),
        "idle session"
    );
    assert!(registry.add_pgt(pgt.clone(), at(61)).await.unwrap());
    assert!(registry.get_pgt(&pgt.id, at(62)).await.unwrap().is_some());
    assert!(
        registry.get_pgt(&pgt.id, at(125)).await.unwrap().is_none(),
        "dies with it"
    );
    assert!(matches!(
        registry.redeem(&pgt.id, at(62)).await.unwrap(),
        Redeemed::WrongKind
    ));
    registry.remove_pgt(&tgt.id).await.unwrap();
    assert!(
        registry.get_tgt(&tgt.id, at(62)).await.unwrap().is_some(),
        "a session's id given as a PGT removes nothing"
    );
    // Single-use keys.
    assert!(registry.claim_once("LT-1", at(300)).await.unwrap());
    assert!(!registry.claim_once("LT-1", at(300)).await.unwrap());
    // Removal hands back the history for single logout and takes the rest with it,
    // proxy tickets included.
    let unused = st(at(70));
    registry
        .add_service_ticket(unused.clone(), LogoutTarget::None, at(70))
        .await
        .unwrap();
    let pt = ServiceTicket::proxy(
        &pgt,
        "https://backend/",
        at(70),
        ExpirationPolicy::fixed(Duration::from_secs(10)),
    );
    assert!(
        registry
            .add_service_ticket(pt.clone(), LogoutTarget::None, at(70))
            .await
            .unwrap()
            .stored()
    );
    let removed = registry
        .remove_tgt(&tgt.id)
        .await
        .unwrap()
        .expect("it was there");
    assert_eq!(removed.principal.id, "alice");
    let issued: Vec<&str> = removed
        .issued
        .iter()
        .map(|i| i.ticket_id.as_str())
        .collect();
    assert_eq!(
        issued,
        vec![
            first.id.as_str(),
            late.id.as_str(),
            unused.id.as_str(),
            pt.id.as_str()
        ]
    );
    assert!(registry.remove_tgt(&tgt.id).await.unwrap().is_none());
    assert!(matches!(
        registry.redeem(&unused.id, at(71)).await.unwrap(),
        Redeemed::Missing
    ));
    assert!(registry.get_pgt(&pgt.id, at(71)).await.unwrap().is_none());
    assert!(matches!(
        registry.redeem(&pt.id, at(71)).await.unwrap(),
        Redeemed::Missing
    ));
}

#[tokio::test]
async fn the_redis_and_memory_stores_answer_alike() {
    registry_scenario(&cas_server::tickets::MemoryRegistry::new()).await;

    let cluster = Cluster::new(false).await;
    let cas_server::config::TicketStore::Redis(options) = cluster.settings().tickets.store else {
        panic!("redis settings");
    };
    let redis = cas_server::tickets::RedisRegistry::new(
        &options,
        &[7; 32],
        Duration::ZERO,
        std::sync::Arc::new(cas_server::clock::SystemClock),
    )
    .unwrap();
    registry_scenario(&redis).await;
    let left = cluster.redis.keys(&format!("{}t:*", cluster.prefix)).await;
    assert!(left.is_empty(), "removal left {left:?}");
}

/// An ACL user's credentials from `[tickets.redis]` are used; a wrong password is an
/// outage the node reports (503, `/health` DOWN), not a crash.
#[tokio::test]
async fn redis_credentials_are_used_and_a_wrong_password_is_reported() {
    let redis = RedisServer::start_with(
        false,
        &[
            "--user",
            "cas",
            "on",
            ">s3cret-redis-pw",
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let keys = ClusterKeys::generate();
    let good = keys.redis_settings_with(
        &redis.url(),
        "cas:",
        "username = \"cas\"\npassword = \"s3cret-redis-pw\"\n",
    );
    let bad = keys.redis_settings_with(
        &redis.url(),
        "cas:",
        "username = \"cas\"\npassword = \"wrong-pw\"\n",
    );
    let server = TestServer::start_settings(good).await;
    let ticket = server.browser().login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;

    let denied = TestServer::start_settings(bad).await;
    let (status, body) = bounded("health", health(&denied)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.to_string().contains("wrong-pw"), "{body}");
    let browser = denied.browser();
    let lt = browser.form_token(Some(SERVICE)).await;
    let posted = bounded(
        "login",
        browser.submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[]),
    )
    .await;
    assert_eq!(posted.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// `rediss://` with the CA from `ca_file`: tickets travel encrypted to Redis, and a
/// server whose certificate the CA did not sign is refused.
#[tokio::test]
async fn rediss_verifies_the_server_with_the_configured_ca() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let keys = ClusterKeys::generate();
    let url = format!("rediss://localhost:{}", redis.port);
    let trusted =
        keys.redis_settings_with(&url, "cas:", &format!("ca_file = \"{}\"\n", ca.display()));
    let server = TestServer::start_settings(trusted).await;
    let ticket = server.browser().login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;

    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, TestPki::new().ca_pem()).unwrap();
    let untrusted = keys.redis_settings_with(
        &url,
        "cas:",
        &format!("ca_file = \"{}\"\n", other.display()),
    );
    let refused = TestServer::start_settings(untrusted).await;
    assert_eq!(
        bounded("health", health(&refused)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// A Redis that stops answering (frozen, connections open): requests fail within the
/// configured timeouts (500 ms + 500 ms here) instead of hanging, and service resumes
/// when it answers again.
#[tokio::test]
async fn a_redis_that_stops_answering_costs_a_bounded_wait_not_a_hang() {
    let cluster = Cluster::new(false).await;
    let server = cluster.node().await;
    let browser = server.signed_in_browser().await;
    let ticket = browser.sso_ticket(SERVICE).await;

    cluster.redis.freeze(true);
    // Each request gives up after connect_timeout + command_timeout (1 s here); 2.5 s
    // leaves room for a loaded machine and still tells a bounded wait from a hang.
    let limit = Duration::from_millis(2_500);
    let started = std::time::Instant::now();
    let sso = bounded("SSO", browser.get_login(&[("service", SERVICE)])).await;
    let sso_took = started.elapsed();
    let started = std::time::Instant::now();
    let validation = bounded(
        "validation",
        server
            .client()
            .validate("/serviceValidate", SERVICE, &ticket),
    )
    .await;
    let validation_took = started.elapsed();
    let started = std::time::Instant::now();
    let (status, _) = bounded("health", health(&server)).await;
    let health_took = started.elapsed();
    cluster.redis.freeze(false);

    assert_eq!(sso.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(validation.code(), "INTERNAL_ERROR");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    for (what, took) in [
        ("SSO", sso_took),
        ("validation", validation_took),
        ("health", health_took),
    ] {
        assert!(took < limit, "{what} waited {took:?}");
    }
    wait_until_healthy(&server, "answers again once Redis does").await;
    assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
}

/// The protocol suite (login, validation, proxy, logout, single logout, cookies, the
/// attacker's tests and the pages) once more with every server on the Redis store: this
/// test binary run again, told by `CAS_TEST_REDIS_URL` to put its servers on a Redis of
/// this test's own (see `support::on_shared_redis`).
#[tokio::test]
async fn the_protocol_suite_passes_on_the_redis_store() {
    if std::env::var_os("CAS_TEST_REDIS_URL").is_some() {
        return; // this is the inner run
    }
    let redis = RedisServer::start(false).await;
    run_protocol_suite("CAS_TEST_REDIS_URL", &redis.url()).await;
    let servers: std::collections::BTreeSet<String> = redis
        .keys("cas-suite-*")
        .await
        .into_iter()
        .filter_map(|k| k.split(':').next().map(str::to_owned))
        .collect();
    assert!(
        servers.len() >= 50,
        "servers that stored tickets in Redis: {}",
        servers.len()
    );
}

/// Runs the protocol suite's modules again in this test binary, with `variable` set to
/// `value` (which puts every server on a shared store), and checks that it passed.
pub(crate) async fn run_protocol_suite(variable: &str, value: &str) {
    let modules = [
        "login::",
        "validate::",
        "proxy::",
        "logout::",
        "slo::",
        "tgc::",
        "security::",
        "ui::",
    ];
    let run = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(modules)
        .args(["--test-threads", "1"])
        .env(variable, value)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the inner run finishes within 15 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the suite fails with {variable}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 100, "only {passed} tests ran:\n{stdout}");
}

/// The same throttle steps on the local counters and on the shared ones in Redis: the two
/// must answer alike (THR-01..05).
async fn throttle_scenario(make: impl Fn() -> cas_server::protocol::throttle::LoginThrottle) {
    use cas_server::clock::Clock as _;
    use cas_server::protocol::throttle::Wait;
    let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let t0 = cas_server::clock::SystemClock.now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let t = make();
    for _ in 0..3 {
        assert_eq!(t.blocked(ip, "alice", t0).await.unwrap(), None);
        t.record_failure(ip, "Alice ", t0).await;
    }
    assert_eq!(
        t.blocked(ip, "alice", t0).await.unwrap(),
        Some(Wait::Blocked(Duration::from_secs(60)))
    );
    assert_eq!(t.blocked(ip, "bob", t0).await.unwrap(), None, "per user");
    assert_eq!(
        t.blocked(ip, "alice", at(60)).await.unwrap(),
        None,
        "window over"
    );

    // A success clears the user's count; a released attempt is given back whole.
    let t = make();
    t.record_failure(ip, "carol", t0).await;
    t.record_failure(ip, "carol", t0).await;
    t.begin(ip, "carol", t0).await.unwrap().unwrap();
    t.succeeded(ip, "carol", t0).await;
    t.record_failure(ip, "carol", t0).await;
    assert_eq!(t.blocked(ip, "carol", t0).await.unwrap(), None);
    for _ in 0..3 {
        t.begin(ip, "dave", t0).await.unwrap().unwrap();
        t.release(ip, "dave", t0).await;
    }
    assert_eq!(
        t.blocked(ip, "dave", t0).await.unwrap(),
        None,
        "unjudged attempts"
    );

    // Failed checks for many users from one address slow it (10 here, then one check
    // per 2 s); refused forms never count against it (issue 13, item 2).
    let other: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    for i in 0..30 {
        t.record_failure(other, &format!("form{i}"), t0).await;
    }
    assert_eq!(t.blocked(other, "someone-new", t0).await.unwrap(), None);
    for i in 0..10 {
        t.begin(other, &format!("user{i}"), t0)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(t.begin(other, "carol", t0).await.unwrap(), Ok(()));
    assert_eq!(
        t.begin(other, "dave", t0).await.unwrap(),
        Err(Wait::Slowed(Duration::from_secs(2)))
    );
    assert_eq!(t.begin(other, "dave", at(2)).await.unwrap(), Ok(()));
}

#[tokio::test]
async fn shared_and_local_throttles_answer_alike() {
    use cas_server::protocol::throttle::{LoginThrottle, Throttle, ThrottlePolicy};
    let policy = ThrottlePolicy {
        threshold: 3,
        ip_threshold: 10,
        window: Duration::from_secs(60),
        ip_delay: Duration::from_secs(2),
        max_entries: 1000,
    };
    throttle_scenario(|| LoginThrottle::Local(Throttle::new(policy))).await;

    let cluster = Cluster::new(false).await;
    let cas_server::config::TicketStore::Redis(options) = cluster.settings().tickets.store else {
        panic!("redis settings");
    };
    // Each throttle the scenario makes starts empty, as a new local one does: a prefix
    // of its own.
    let store = || {
        let mut options = options.clone();
        options.key_prefix = format!(
            "{}{}:",
            cluster.prefix,
            cas_server::crypto::random_base62(6)
        );
        std::sync::Arc::new(
            cas_server::tickets::RedisRegistry::new(
                &options,
                &[7; 32],
                Duration::ZERO,
                std::sync::Arc::new(cas_server::clock::SystemClock),
            )
            .unwrap(),
        )
    };
    throttle_scenario(|| LoginThrottle::Shared {
        policy,
        store: store(),
    })
    .await;
    let stored = cluster.redis.dump().await;
    assert!(
        !stored.contains("192.0.2.1") && !stored.contains("alice"),
        "{stored}"
    );
}

/// THR-01 across nodes: failures on A and on B add up; the blocked user is refused on
/// both, without a password check, and another user from the address is not.
#[tokio::test]
async fn failed_logins_on_two_nodes_count_together() {
    let cluster = Cluster::new(false).await;
    let three = |s: &mut Settings| s.throttle.threshold = 3;
    let a = cluster.node_with(three).await;
    let b = cluster.node_with(three).await;
    let on_a = a.browser();
    let on_b = on_a.on(&b);

    for (browser, status) in [
        (&on_a, StatusCode::UNAUTHORIZED),
        (&on_b, StatusCode::UNAUTHORIZED),
        (&on_a, StatusCode::UNAUTHORIZED),
        (&on_b, StatusCode::LOCKED),
    ] {
        let r = browser.login(Some(SERVICE), "alice", "wrong").await;
        assert_eq!(r.status(), status);
    }
    let right = on_a.login(Some(SERVICE), "alice", PASSWORD).await;
    assert_eq!(right.status(), StatusCode::LOCKED, "blocked on A as well");
    let bob = on_b.login(Some(SERVICE), "bob", BOB_PASSWORD).await;
    assert_eq!(bob.status(), StatusCode::FOUND);
}

/// Found in review: lifetimes were stored in whole seconds, so with `st_ttl = "500ms"`
/// every ticket read back from Redis had already expired.
#[tokio::test]
async fn sub_second_ticket_lifetimes_survive_the_trip_through_redis() {
    let cluster = Cluster::new(false).await;
    let server = cluster
        .node_with(|s| s.tickets.st_ttl = Duration::from_millis(500))
        .await;
    let ticket = server.browser().login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}

/// Security review (issue 13, item 4): node B runs a registry where the portal is
/// withdrawn (disabled, removed, or no longer proxying) while node A still has it: on B,
/// the portal's PGT, the PGT that went through it and its pending proxy ticket are all
/// refused, whichever node issued them.
#[tokio::test]
async fn a_node_whose_registry_withdrew_a_service_refuses_its_proxy_chain() {
    use crate::proxy::{Setup, WITHDRAWALS, trust};
    let cluster = Cluster::new(false).await;
    let pki = TestPki::new();
    for (how, withdraw) in WITHDRAWALS {
        let a = cluster.node_with(|s| trust(s, &pki)).await;
        let on_a = Setup {
            browser: a.browser(),
            server: a,
            sink: CallbackSink::start(&pki.leaf(&["localhost"])).await,
        };
        let chain = on_a.chain().await;
        let b = cluster.node_with(withdraw).await;

        let on_b = on_a.served_by(b);

        eprintln!("portal {how} on node B");
        on_b.assert_chain_refused(&chain).await;
    }
}
