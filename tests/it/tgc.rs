//! The ticket-granting cookie (TGC-01..08): when it is set, its attributes, its opaque
//! signed-and-encrypted value, its pinning to the client's IP and User-Agent, and the
//! idle and hard lifetimes of the SSO session behind it.

use std::time::Duration;

use cas_server::crypto::b64url_decode;
use cas_server::tgc::CryptoMode;
use reqwest::StatusCode;

use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);
/// The default sliding idle window of an SSO session.
const IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// The default hard lifetime of an SSO session.
const HARD: Duration = Duration::from_secs(8 * 60 * 60);

/// The attributes of a `Set-Cookie` value (everything after `name=value`), trimmed.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

/// Every readable text hidden in a compact JOSE value: each dot-separated part, decoded,
/// and recursively the parts of any nested compact token.
fn decoded_parts(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in value.split('.') {
        let Some(bytes) = b64url_decode(part) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if text.contains('.') && !text.contains('{') {
            out.extend(decoded_parts(&text));
        }
        out.push(text);
    }
    out
}

/// TGC-01, TGC-06, TKT-08: a successful login sets the `TGC` cookie; its value references
/// the session but shows neither the TGT id nor the pinned User-Agent in clear, even
/// after base64url-decoding every part.
#[tokio::test]
async fn a_login_sets_a_tgc_whose_value_hides_the_tgt_id() {
    let server = TestServer::start().await;
    let browser = server.browser();
    assert!(browser.tgc().is_none());

    let response = browser.login(Some(SERVICE), "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    let set_cookie = tgc_set_cookie(&response);
    let value = browser.tgc().expect("the jar holds the TGC");
    assert!(
        set_cookie.starts_with(&format!("TGC={value};")),
        "{set_cookie}"
    );
    assert!(!value.contains("TGT-"), "{value}");
    for part in decoded_parts(&value) {
        assert!(!part.contains("TGT-"), "TGT id in clear: {part}");
        assert!(!part.contains(USER_AGENT), "User-Agent in clear: {part}");
        assert!(!part.contains("alice"), "username in clear: {part}");
    }
    assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
}

/// TGC-02, TGC-03, TGC-04: the cookie is a host-only browser-session cookie (no Domain,
/// Max-Age or Expires) on Path=/cas, HttpOnly and SameSite=Lax; the test configuration
/// turns Secure off, so it is absent.
#[tokio::test]
async fn the_tgc_is_a_host_only_session_cookie_restricted_to_the_cas_path() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let response = browser.login(None, "alice", PASSWORD).await;

    let attrs = attributes(&tgc_set_cookie(&response));
    assert!(attrs.iter().any(|a| a == "Path=/cas"), "{attrs:?}");
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{attrs:?}");
    assert!(attrs.iter().any(|a| a == "SameSite=Lax"), "{attrs:?}");
    for forbidden in ["max-age", "expires", "domain", "secure"] {
        assert!(
            !attrs
                .iter()
                .any(|a| a.to_ascii_lowercase().starts_with(forbidden)),
            "{forbidden} must not be set: {attrs:?}"
        );
    }
}

/// TGC-04: with `tgc.secure` on (the production default), the cookie carries `Secure`
/// alongside its other attributes.
#[tokio::test]
async fn the_tgc_is_secure_when_secure_cookies_are_enabled() {
    let server = TestServer::start_with(|s| s.tgc.secure = true).await;
    let browser = server.browser();

    let response = browser.login(None, "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    let attrs = attributes(&tgc_set_cookie(&response));
    assert!(attrs.iter().any(|a| a == "Secure"), "{attrs:?}");
    assert!(attrs.iter().any(|a| a == "HttpOnly"), "{attrs:?}");
    assert!(attrs.iter().any(|a| a == "Path=/cas"), "{attrs:?}");
    assert!(
        !attrs
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("max-age")),
        "{attrs:?}"
    );
}

/// TGC-07: by default (encrypt, then sign) the value is a compact JWS: three base64url
/// parts, the header naming HS512, the payload a five-part compact JWE (`dir`, A256GCM).
#[tokio::test]
async fn the_default_tgc_value_is_a_signed_jwe() {
    let server = TestServer::start().await;
    let browser = server.browser();

    browser.login(None, "alice", PASSWORD).await;

    let value = browser.tgc().unwrap();
    let parts: Vec<&str> = value.split('.').collect();
    assert_eq!(parts.len(), 3, "JWS compact shape: {value}");
    assert!(parts.iter().all(|p| !p.is_empty()), "{value}");
    let header = String::from_utf8(b64url_decode(parts[0]).unwrap()).unwrap();
    assert!(header.contains("\"HS512\""), "{header}");
    let payload = String::from_utf8(b64url_decode(parts[1]).unwrap()).unwrap();
    let jwe: Vec<&str> = payload.split('.').collect();
    assert_eq!(jwe.len(), 5, "the signed payload is a JWE: {payload}");
    let jwe_header = String::from_utf8(b64url_decode(jwe[0]).unwrap()).unwrap();
    assert!(
        jwe_header.contains("\"dir\"") && jwe_header.contains("\"A256GCM\""),
        "{jwe_header}"
    );
}

/// TGC-07: both nesting orders work end to end (login, SSO, validation); with
/// sign-then-encrypt the outer token is a five-part JWE instead of a JWS.
#[tokio::test]
async fn both_crypto_modes_give_working_single_sign_on() {
    for (mode, outer_parts) in [
        (CryptoMode::EncryptAndSign, 3),
        (CryptoMode::SignAndEncrypt, 5),
    ] {
        let server = TestServer::start_with(|s| s.tgc.crypto = mode).await;
        let browser = server.browser();

        let first = browser.login_for_ticket(SERVICE).await;

        let value = browser.tgc().unwrap();
        assert_eq!(value.split('.').count(), outer_parts, "{mode:?}: {value}");
        assert!(!value.contains("TGT-"), "{mode:?}: {value}");
        assert_validates_as(&server, SERVICE, &first, "alice").await;
        assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
    }
}

/// TGC-08: a cookie with one character changed is not a session, in either crypto mode:
/// the form is shown; the genuine value, put back, still works.
#[tokio::test]
async fn a_tampered_cookie_shows_the_form() {
    for mode in [CryptoMode::EncryptAndSign, CryptoMode::SignAndEncrypt] {
        let server = TestServer::start_with(|s| s.tgc.crypto = mode).await;
        let browser = server.signed_in_browser().await;
        let genuine = browser.tgc().unwrap();
        let mut bytes = genuine.clone().into_bytes();
        let mut at = bytes.len() / 2;
        while bytes[at] == b'.' {
            at += 1;
        }
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();

        browser.set_tgc(&tampered);

        assert_no_sso(&browser, &format!("{mode:?}: tampered cookie")).await;
        browser.set_tgc(&genuine);
        assert_sso_as(&server, &browser, SERVICE, "alice").await;
    }
}

/// TGC-08: a cookie carried to a browser with another User-Agent (same IP) is ignored;
/// the same value in a browser with the original User-Agent is honoured.
#[tokio::test]
async fn a_cookie_moved_to_another_user_agent_shows_the_form() {
    let server = TestServer::start().await;
    let owner = server.signed_in_browser().await;
    let value = owner.tgc().unwrap();
    let other_agent = Browser::new(&server.base, "Mozilla/5.0 (Thief)", None);
    let same_agent = Browser::new(&server.base, USER_AGENT, None);

    other_agent.set_tgc(&value);

    assert_no_sso(&other_agent, "cookie under another User-Agent").await;
    same_agent.set_tgc(&value);
    assert_sso_as(&server, &same_agent, SERVICE, "alice").await;
}

/// TGC-08: a cookie replayed from another client IP (seen through X-Forwarded-For from the
/// trusted proxy) is ignored, and the attempt does not end the owner's session.
#[tokio::test]
async fn a_cookie_replayed_from_another_ip_shows_the_form() {
    let server = TestServer::start().await;
    let owner = Browser::new(&server.base, USER_AGENT, Some("203.0.113.7"));
    owner.login(None, "alice", PASSWORD).await;
    let value = owner.tgc().unwrap();
    let thief = Browser::new(&server.base, USER_AGENT, Some("198.51.100.9"));

    thief.set_tgc(&value);

    assert_no_sso(&thief, "cookie from another IP").await;
    assert_sso_as(&server, &owner, SERVICE, "alice").await;
}

/// TGC-08: with `pin_to_session = false` the cookie is a plain bearer token: moved to
/// another IP and User-Agent, it still gives SSO.
#[tokio::test]
async fn an_unpinned_cookie_works_from_another_ip_and_user_agent() {
    let server = TestServer::start_with(|s| s.tgc.pin_to_session = false).await;
    let owner = Browser::new(&server.base, USER_AGENT, Some("203.0.113.7"));
    owner.login(None, "alice", PASSWORD).await;
    let elsewhere = Browser::new(
        &server.base,
        "Mozilla/5.0 (Elsewhere)",
        Some("198.51.100.9"),
    );

    elsewhere.set_tgc(&owner.tgc().unwrap());

    assert_sso_as(&server, &elsewhere, SERVICE, "alice").await;
}

/// TKT-08, TGC-01: the session idles out 2 h after its last use; issuing a ticket by SSO
/// slides that window, so a session in use outlives the first 2 h.
#[tokio::test]
async fn the_session_expires_after_two_idle_hours_and_each_sso_ticket_slides_the_window() {
    let server = TestServer::start().await;
    let browser = server.browser();
    browser.login_for_ticket(SERVICE).await;

    server.clock.advance(IDLE - Duration::from_secs(1));
    browser.sso_ticket(SERVICE).await;
    // Past the first idle deadline, but within 2 h of the SSO ticket above.
    server.clock.advance(IDLE - Duration::from_secs(1));
    assert_sso_as(&server, &browser, SERVICE, "alice").await;
    server.clock.advance(IDLE + Duration::from_secs(1));

    assert_no_sso(&browser, "idle session").await;
}

/// TKT-08: the hard lifetime of 8 h ends the session even if it was used all along.
#[tokio::test]
async fn the_session_ends_after_eight_hours_despite_activity() {
    let server = TestServer::start().await;
    let browser = server.browser();
    browser.login_for_ticket(SERVICE).await;

    // Used every 90 minutes, up to 7 h 30 min: never idle for 2 h.
    for _ in 0..5 {
        server.clock.advance(90 * MINUTE);
        browser.sso_ticket(SERVICE).await;
    }
    // 8 h 1 min after the login, 31 min after the last use.
    server.clock.advance(HARD - 5 * 90 * MINUTE + MINUTE);

    assert_no_sso(&browser, "session past its hard lifetime").await;
}

/// TKT-08: configured lifetimes replace the defaults: a 10 min idle window expires a
/// session unused for 10 min, and a 30 min hard lifetime ends one in constant use.
#[tokio::test]
async fn configured_session_lifetimes_are_honoured() {
    let server = TestServer::start_with(|s| {
        s.tickets.tgt_idle_ttl = 10 * MINUTE;
        s.tickets.tgt_hard_ttl = 30 * MINUTE;
    })
    .await;
    let idle = server.browser();
    let busy = Browser::new(&server.base, USER_AGENT, Some("203.0.113.7"));
    idle.login(None, "alice", PASSWORD).await;
    busy.login(None, "bob", BOB_PASSWORD).await;

    for _ in 0..3 {
        server.clock.advance(9 * MINUTE);
        busy.sso_ticket(SERVICE).await;
    }
    // 27 min: the unused session is long idle; the busy one is still alive.
    assert_no_sso(&idle, "idle beyond the configured window").await;
    server.clock.advance(4 * MINUTE);

    assert_no_sso(&busy, "past the configured hard lifetime").await;
}

/// TGC-08, TKT-08: an expired session's cookie is simply "no session": the form (not an
/// error) with or without a service, gateway returns to the service without a ticket,
/// and a new login replaces the dead cookie with a working one.
#[tokio::test]
async fn an_expired_sessions_cookie_yields_the_form_not_an_error() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let dead = browser.tgc().unwrap();

    server.clock.advance(HARD + MINUTE);

    assert_no_sso(&browser, "expired, with service").await;
    assert_shows_the_form(browser.get_login(&[]).await, "expired, without service").await;
    let gateway = browser
        .get_login(&[("service", SERVICE), ("gateway", "true")])
        .await;
    assert_eq!(gateway.status(), StatusCode::FOUND);
    assert_eq!(location(&gateway).as_deref(), Some(SERVICE));
    let ticket = browser.login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
    assert_ne!(
        browser.tgc().unwrap(),
        dead,
        "a new cookie replaces the dead one"
    );
    assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
}

/// Found in review: the login-CSRF binding cookie took the TGC's SameSite; with
/// `same_site = "none"` (framed logins) it would ride along on a cross-site POST.
#[tokio::test]
async fn the_form_binding_cookie_stays_same_site_whatever_the_tgc_needs() {
    let server = TestServer::start_with(|s| {
        s.tgc.same_site = cas_server::config::SameSite::None;
    })
    .await;
    let page = server.browser().get_login(&[("service", SERVICE)]).await;

    let flow = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("CASFLOW="))
        .expect("the form sets its binding cookie");
    assert!(flow.contains("SameSite=Lax"), "{flow}");
}

/// Found in review: the cookie carried the raw User-Agent, so a long one made a cookie
/// over the 4 KB browsers store, and SSO silently never worked for that browser.
#[tokio::test]
async fn a_long_user_agent_still_gets_a_small_working_cookie() {
    let server = TestServer::start().await;
    let long_agent = format!("Mozilla/5.0 {}", "x".repeat(3000));
    let browser = Browser::new(&server.base, &long_agent, None);
    browser.login(None, "alice", PASSWORD).await;

    let cookie = browser.tgc().expect("a session cookie");
    assert!(cookie.len() < 1024, "{} bytes", cookie.len());
    assert_sso_as(&server, &browser, SERVICE, "alice").await;
}

/// Found in review: a binding cookie planted for a longer path (or a parent domain) comes
/// first in the browser's Cookie header; the form must still be redeemed with the
/// browser's own value, not fail (and count as a failed attempt) on the planted one.
#[tokio::test]
async fn a_planted_binding_cookie_does_not_shadow_the_browsers_own() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let lt = browser.form_token(Some(SERVICE)).await;
    let url = format!("{}/login", server.base).parse().unwrap();
    browser
        .jar
        .add_cookie_str("CASFLOW=PlantedPlantedPlanted0; Path=/cas/login", &url);

    let response = browser
        .submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[])
        .await;

    assert_eq!(response.status(), StatusCode::FOUND);
}

/// The login page for `SERVICE` with exactly this `Cookie` header, from a client with
/// the harness's User-Agent (no cookie jar: the header is sent as written).
async fn login_page_with_cookie_header(server: &TestServer, cookie: &str) -> reqwest::Response {
    server
        .http()
        .user_agent(USER_AGENT)
        .build()
        .unwrap()
        .get(server.url("/login"))
        .query(&[("service", SERVICE)])
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Security review (issue 13, item 7): a cookie tossed from a sibling subdomain arrives
/// beside the browser's own. When two valid values name different sessions, neither is
/// used (otherwise the planted one could sign the victim into the attacker's account):
/// the form is shown and the conflict logged. One value sent twice is no conflict.
#[tokio::test]
async fn two_valid_cookies_for_different_sessions_give_no_sso() {
    let (logs, _guard) = Captured::install();
    let server = TestServer::start().await;
    let victim = server.signed_in_browser().await;
    let attacker = server.browser();
    attacker.login(None, "bob", BOB_PASSWORD).await;
    let (own, planted) = (victim.tgc().unwrap(), attacker.tgc().unwrap());

    for header in [
        format!("TGC={planted}; TGC={own}"),
        format!("TGC={own}; TGC={planted}"),
    ] {
        let response = login_page_with_cookie_header(&server, &header).await;
        assert_shows_the_form(response, "two sessions in one request").await;
    }

    assert!(
        logs.text()
            .contains("two valid SSO cookies name different sessions"),
        "{}",
        logs.text()
    );
    let same_twice = login_page_with_cookie_header(&server, &format!("TGC={own}; TGC={own}")).await;
    assert_eq!(
        same_twice.status(),
        StatusCode::FOUND,
        "one session, sent twice"
    );
    let with_garbage =
        login_page_with_cookie_header(&server, &format!("TGC=garbage; TGC={own}")).await;
    assert_eq!(
        with_garbage.status(),
        StatusCode::FOUND,
        "an invalid value is ignored"
    );
}
