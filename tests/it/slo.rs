//! Single logout: back-channel POSTs to every application of the ended session, the
//! front-channel SAMLRequests on the logout page, and a logout that never waits for them.

use std::io::Read as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cas_server::config::Settings;
use cas_server::services::LogoutType;
use reqwest::StatusCode;

use crate::support::receiver::{Received, Receiver};
use crate::support::*;

/// The phpCAS extraction (`Client.php` `handleLogoutRequests`, SLO-05).
const PHPCAS_SESSION_INDEX: &str = r"<samlp:SessionIndex>(.*)</samlp:SessionIndex>";

fn allow_loopback(settings: &mut Settings) {
    settings.http_client.allow_local_urls = true;
}

/// Checks one LogoutRequest with an XML parser and with the phpCAS regex; returns its
/// SessionIndex.
fn session_index(message: &Received) -> String {
    assert_eq!(message.method, reqwest::Method::POST, "SLO-02");
    assert_eq!(
        message.content_type, "application/x-www-form-urlencoded",
        "SLO-02"
    );
    let xml = message
        .logout_request
        .as_deref()
        .expect("a logoutRequest field");
    assert!(xml.starts_with("<samlp:LogoutRequest "), "SLO-05: {xml}");
    assert!(
        !xml.contains('\n') && !xml.starts_with("<?xml"),
        "SLO-05: one line, no declaration"
    );
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "LogoutRequest");
    assert_eq!(
        root.tag_name().namespace(),
        Some("urn:oasis:names:tc:SAML:2.0:protocol")
    );
    assert_eq!(root.attribute("Version"), Some("2.0"));
    assert!(root.attribute("ID").is_some_and(|id| id.starts_with("LR-")));
    let instant = root.attribute("IssueInstant").unwrap();
    assert!(
        instant.ends_with('Z') && instant.len() == 20,
        "UTC, seconds: {instant}"
    );
    let name_id = root
        .children()
        .find(|n| n.has_tag_name(("urn:oasis:names:tc:SAML:2.0:assertion", "NameID")))
        .expect("a saml:NameID");
    assert_eq!(name_id.text(), Some("alice"), "SLO-03: the principal");
    let index = root
        .children()
        .find(|n| n.has_tag_name(("urn:oasis:names:tc:SAML:2.0:protocol", "SessionIndex")))
        .and_then(|n| n.text())
        .expect("a samlp:SessionIndex")
        .to_owned();
    let by_regex = regex::Regex::new(PHPCAS_SESSION_INDEX)
        .unwrap()
        .captures(xml)
        .expect("phpCAS finds the SessionIndex")[1]
        .to_owned();
    assert_eq!(by_regex, index);
    index
}

/// SLO-01..06, SLO-12, LOGOUT-07: two applications entered in one session each get one
/// well-formed LogoutRequest naming the ticket they received; the quiet one gets nothing.
#[tokio::test]
async fn each_application_of_the_session_receives_one_logout_request_for_its_ticket() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(allow_loopback).await;
    let browser = server.browser();
    let one = app.url("/one/home");
    let two = app.url("/two/home?lang=fr");
    let ticket_one = browser.login_for_ticket(&one).await;
    let ticket_two = browser.sso_ticket(&two).await;
    browser.sso_ticket(&app.url("/quiet/home")).await;

    let response = browser.get("/logout", &[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    let received = app.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received_late = app.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(
        received_late.len(),
        2,
        "nothing more arrives: {received_late:?}"
    );
    let mut by_path: Vec<(String, String)> = received
        .iter()
        .map(|m| (m.path.clone(), session_index(m)))
        .collect();
    by_path.sort();
    assert_eq!(
        by_path,
        vec![
            ("/one/home".to_owned(), ticket_one),
            ("/two/home".to_owned(), ticket_two)
        ]
    );
    assert!(
        received.iter().all(|m| !m.path.starts_with("/quiet")),
        "SLO-07: logout_type none"
    );
}

/// SLO-06 [REC]: two tickets for one service URL (two tabs, two nodes behind it) are two
/// application sessions; each is told.
#[tokio::test]
async fn two_tickets_for_one_service_get_two_logout_requests() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(allow_loopback).await;
    let browser = server.browser();
    let service = app.url("/one/home");
    let first = browser.login_for_ticket(&service).await;
    let second = browser.sso_ticket(&service).await;
    for ticket in [&first, &second] {
        assert_validates_as(&server, &service, ticket, "alice").await;
    }

    browser.get("/logout", &[]).await;

    let received = app.wait_for(2).await;
    let mut indexes: Vec<String> = received.iter().map(session_index).collect();
    indexes.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(indexes, expected);
}

/// Security review (issue 13, item 3): a session keeps 64 tickets for single logout. When
/// it collects more, repeats of one application go first, so the application entered
/// first is still told (before, it was the first to be skipped, silently).
#[tokio::test]
async fn many_tickets_for_one_application_do_not_push_the_first_out_of_single_logout() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(allow_loopback).await;
    let browser = server.browser();
    let first = browser.login_for_ticket(&app.url("/one/first")).await;
    for _ in 0..80 {
        browser.sso_ticket(&app.url("/two/busy")).await;
    }

    browser.get("/logout", &[]).await;

    let received = app.wait_for(64).await;
    let to_first: Vec<String> = received
        .iter()
        .filter(|m| m.path == "/one/first")
        .map(session_index)
        .collect();
    assert_eq!(to_first, vec![first], "the first application is told");
    assert_eq!(received.len(), 64, "one per ticket the history kept");
    let health = server.client().get("/health", &[]).await;
    let health: serde_json::Value = serde_json::from_str(&health.raw).unwrap();
    assert_eq!(health["single_logout"]["forgotten"], 0, "{health}");
}

/// Security review (issue 13, item 3): when all 64 entries are distinct applications, the
/// oldest must go; that is logged and counted on `/health`, never silent.
#[tokio::test]
async fn an_application_a_full_history_forgets_is_logged_and_counted() {
    let (logs, _guard) = Captured::install();
    let app = Receiver::start().await;
    let server = TestServer::start_with(allow_loopback).await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/one/first")).await;
    for n in 0..64 {
        browser.sso_ticket(&app.url(&format!("/two/{n}"))).await;
    }

    let health = server.client().get("/health", &[]).await;
    browser.get("/logout", &[]).await;

    let health: serde_json::Value = serde_json::from_str(&health.raw).unwrap();
    assert_eq!(health["single_logout"]["forgotten"], 1, "{health}");
    assert!(
        logs.text()
            .contains("the oldest will not be told of the logout"),
        "{}",
        logs.text()
    );
    let received = app.wait_for(64).await;
    assert_eq!(received.len(), 64);
    assert!(received.iter().all(|m| m.path != "/one/first"));
}

/// SLO-07: `logout_url` replaces the service URL as the destination.
#[tokio::test]
async fn the_logout_url_is_honoured() {
    let app = Receiver::start().await;
    let custom_logout = app.url("/custom-logout");
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        service_mut(s, 11).logout.url = Some(custom_logout.clone());
    })
    .await;
    let browser = server.browser();
    let ticket = browser.login_for_ticket(&app.url("/custom/page")).await;

    browser.get("/logout", &[]).await;

    let received = app.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/custom-logout");
    assert_eq!(session_index(&received[0]), ticket);
}

/// SLO-12: logging one user out never notifies another user's applications.
#[tokio::test]
async fn another_users_session_is_never_notified() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(allow_loopback).await;
    let alice = server.browser();
    let bob = Browser::new(&server.base, "another browser", None);
    let alices_ticket = alice.login_for_ticket(&app.url("/one/a")).await;
    let bob_response = bob
        .login(Some(&app.url("/one/b")), "bob", BOB_PASSWORD)
        .await;
    let bobs_ticket = ticket_in(&location(&bob_response).unwrap());

    alice.get("/logout", &[]).await;

    let received = app.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.received().len(), 1);
    assert_eq!(session_index(&received[0]), alices_ticket);
    assert!(received.iter().all(|m| {
        !m.logout_request
            .as_deref()
            .unwrap_or_default()
            .contains(&bobs_ticket)
    }));
    assert_eq!(
        bob.sso_ticket(&app.url("/one/b")).await.len(),
        32,
        "bob is still signed in"
    );
}

/// SLO-04: an application that hangs does not delay the logout: the response comes back
/// after the server's own work, long before the message's timeout.
#[tokio::test]
async fn a_hanging_application_does_not_delay_the_logout() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.timeout = Duration::from_secs(2);
    })
    .await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/slow/page")).await;
    browser.sso_ticket(&app.url("/one/page")).await;

    let started = Instant::now();
    let response = browser.get("/logout", &[]).await;
    let elapsed = started.elapsed();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        // Well under the 2 s a wait for the hanging application would take, with room
        // for a loaded CI machine.
        elapsed < Duration::from_secs(1),
        "logout took {elapsed:?}"
    );
    let received = app.wait_for(2).await;
    assert_eq!(received.len(), 2, "both were still sent: {received:?}");
}

/// SLO-04: with a tiny queue and one sender stuck on a hanging application, further
/// messages are dropped with a logged warning and counted; logout and the rest of the
/// server stay fast.
#[tokio::test]
async fn a_full_queue_drops_messages_with_a_warning_and_the_server_stays_responsive() {
    let (logs, _guard) = Captured::install();
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.workers = 1;
        s.slo.queue_capacity = 1;
        s.slo.timeout = Duration::from_secs(5);
    })
    .await;
    let browser = server.browser();
    let mut tickets = vec![browser.login_for_ticket(&app.url("/slow/0")).await];
    for i in 1..20 {
        tickets.push(browser.sso_ticket(&app.url(&format!("/slow/{i}"))).await);
    }

    let started = Instant::now();
    let response = browser.get("/logout", &[]).await;
    let logout_time = started.elapsed();
    let started = Instant::now();
    let health = server.client().get("/health", &[]).await;
    let health_time = started.elapsed();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        // The stuck sender would hold it for 5 s.
        logout_time < Duration::from_secs(2),
        "logout took {logout_time:?}"
    );
    assert!(
        health_time < Duration::from_secs(2),
        "health took {health_time:?}"
    );
    let health: serde_json::Value = serde_json::from_str(&health.raw).unwrap();
    let dropped = health["single_logout"]["dropped"].as_u64().unwrap();
    assert!(
        dropped >= 17,
        "20 messages, 1 sending, 1 queued, 1 waiting: {health}"
    );
    let text = logs.text();
    assert!(
        text.contains("single-logout queue full; message dropped"),
        "{text}"
    );
    for ticket in &tickets {
        assert!(
            !text.contains(ticket.as_str()),
            "a ticket leaked into the logs"
        );
    }
}

/// SLO-09, SLO-11: a front-channel application is not POSTed to; the logout page has the
/// browser load its logout URL with a zlib-deflated, base64 SAMLRequest and a RelayState.
#[tokio::test]
async fn the_logout_page_carries_a_deflated_saml_request_for_front_channel_applications() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let ticket = browser
        .login_for_ticket("https://front.example.org/app")
        .await;

    let response = browser.get("/logout", &[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    let marker = "<iframe class=\"slo\" src=\"";
    let start = html.find(marker).expect("a front-channel frame") + marker.len();
    let src = html_unescape(&html[start..start + html[start..].find('"').unwrap()]);
    let url = reqwest::Url::parse(&src).unwrap();
    assert_eq!(url.host_str(), Some("front.example.org"));
    assert_eq!(url.path(), "/logout");
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("from").as_deref(),
        Some("cas"),
        "the logout_url's own query is kept"
    );
    assert!(param("RelayState").is_some_and(|r| !r.is_empty()));
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(param("SAMLRequest").unwrap())
        .unwrap();
    let mut xml = String::new();
    flate2::read::ZlibDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let message = Received {
        method: reqwest::Method::POST,
        path: String::new(),
        content_type: "application/x-www-form-urlencoded".into(),
        logout_request: Some(xml),
        form: vec![],
        query: String::new(),
    };
    assert_eq!(session_index(&message), ticket);
    assert!(html.contains("You have been signed out"));
}

/// LOGOUT-04 with a front channel: the page is shown (so the frames load) and then
/// continues to the registered service, instead of a bare redirect.
#[tokio::test]
async fn a_followed_service_redirect_waits_for_the_front_channel() {
    let server = TestServer::start_with(|s| s.logout.follow_service_redirects = true).await;
    let browser = server.browser();
    browser
        .login_for_ticket("https://front.example.org/app")
        .await;

    let response = browser.get("/logout", &[("service", SERVICE)]).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(location(&response).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("<iframe class=\"slo\""));
    let escaped_service = SERVICE.replace('&', "&#38;");
    assert!(
        html.contains(&format!(
            "http-equiv=\"refresh\" content=\"3;url={escaped_service}\""
        )),
        "{html}"
    );
}

/// `slo.enabled = false` turns single logout off entirely.
#[tokio::test]
async fn single_logout_can_be_turned_off() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.enabled = false;
    })
    .await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/one/x")).await;
    browser.sso_ticket("https://front.example.org/app").await;

    let response = browser.get("/logout", &[]).await;

    assert!(!response.text().await.unwrap().contains("<iframe"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.received().is_empty());
}

/// SLO-01 (optional part): with `slo.on_expiry`, a session that ends by idle timeout is
/// logged out of its applications when the reaper sweeps it.
#[tokio::test]
async fn an_expired_session_is_logged_out_when_on_expiry_is_set() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.on_expiry = true;
        s.tickets.reaper_interval = Duration::from_millis(50);
    })
    .await;
    let browser = server.browser();
    let ticket = browser.login_for_ticket(&app.url("/one/x")).await;

    server.clock.advance(Duration::from_secs(2 * 3600));
    let received = app.wait_for(1).await;

    assert_eq!(received.len(), 1);
    assert_eq!(session_index(&received[0]), ticket);
}

/// Without `slo.on_expiry` (the default), expiry is silent.
#[tokio::test]
async fn expiry_is_silent_by_default() {
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.tickets.reaper_interval = Duration::from_millis(50);
    })
    .await;
    // The control: the same, with on_expiry. Once it has told its application, the
    // default server's reaper has had the same time to sweep.
    let control = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.on_expiry = true;
        s.tickets.reaper_interval = Duration::from_millis(50);
    })
    .await;
    server.browser().login_for_ticket(&app.url("/one/x")).await;
    control.browser().login_for_ticket(&app.url("/two/x")).await;

    server.clock.advance(Duration::from_secs(2 * 3600));
    control.clock.advance(Duration::from_secs(2 * 3600));
    let received = app.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    assert_eq!(received[0].path, "/two/x", "the control's reaper ran");
    let paths: Vec<String> = app.received().into_iter().map(|m| m.path).collect();
    assert_eq!(
        paths,
        vec!["/two/x".to_owned()],
        "nothing from the default server"
    );
}

/// Front-channel applications are configured per service; a back-channel one is the
/// default (SVC-08).
#[test]
fn logout_types_come_from_the_service_registry() {
    let settings = settings();
    let kind = |id: u32| {
        settings
            .services
            .iter()
            .find(|s| s.id == id)
            .unwrap()
            .logout
            .kind
    };
    assert_eq!(kind(7), LogoutType::BackChannel);
    assert_eq!(kind(9), LogoutType::None);
    assert_eq!(kind(10), LogoutType::FrontChannel);
}

/// A graceful shutdown (SIGTERM) sends the messages still queued before the process
/// ends, within `slo.shutdown_grace`: a logout just before a restart reaches its
/// applications.
#[tokio::test]
async fn a_graceful_shutdown_sends_the_queued_messages_first() {
    let (logs, _guard) = Captured::install();
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.workers = 1;
        s.slo.shutdown_grace = Duration::from_secs(10);
    })
    .await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/one/lag/0")).await;
    for i in 1..10 {
        browser.sso_ticket(&app.url(&format!("/one/lag/{i}"))).await;
    }
    // One sender, 100 ms per message: a second of work queued by this logout.
    assert_eq!(browser.get("/logout", &[]).await.status(), StatusCode::OK);
    server.stop().await;

    assert_eq!(
        app.received().len(),
        10,
        "every message was sent before the server stopped"
    );
    assert!(
        logs.text().contains("queued single-logout messages sent"),
        "{}",
        logs.text()
    );
}

/// What cannot go out within `slo.shutdown_grace` is logged and counted, never lost
/// without a word, and the shutdown does not wait for it longer.
#[tokio::test]
async fn messages_left_at_shutdown_are_logged_as_dropped() {
    let (logs, _guard) = Captured::install();
    let app = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        allow_loopback(s);
        s.slo.workers = 1;
        s.slo.timeout = Duration::from_secs(20);
        s.slo.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let browser = server.browser();
    browser.login_for_ticket(&app.url("/slow/0")).await;
    for i in 1..3 {
        browser.sso_ticket(&app.url(&format!("/slow/{i}"))).await;
    }
    assert_eq!(browser.get("/logout", &[]).await.status(), StatusCode::OK);
    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();

    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("not sent within slo.shutdown_grace"))
        .unwrap_or_else(|| panic!("no line for the messages left: {text}"));
    assert!(
        line.contains("messages=3"),
        "one sending, two queued: {line}"
    );
}
