//! `/logout` (§2.3): ending the SSO session, clearing the cookie, and the narrow rules for
//! redirecting afterwards.

use reqwest::StatusCode;

use crate::support::*;

/// Asserts that `response` is the "signed out" page, without any redirect.
async fn assert_signed_out_page(response: reqwest::Response, why: &str) -> String {
    assert_eq!(response.status(), StatusCode::OK, "{why}");
    assert!(location(&response).is_none(), "{why}: no Location");
    tgc_set_cookie(&response);
    let html = response.text().await.unwrap();
    assert!(html.contains("You have been signed out"), "{why}: {html}");
    html
}

/// Asserts that the TGC value `old` no longer gives SSO: a browser carrying it sees the form.
async fn assert_no_sso_with(server: &TestServer, old: &str) {
    let browser = server.browser();
    browser.set_tgc(old);
    assert_no_sso(&browser, "the old cookie gives no SSO").await;
}

/// LOGOUT-01: logout deletes the cookie with `Max-Age=0` on the same Path it was set
/// with, the jar drops it, and the old value replayed afterwards gets the form, not a
/// ticket.
#[tokio::test]
async fn logout_clears_the_cookie_and_the_old_value_no_longer_gives_a_ticket() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let old = browser.tgc().unwrap();

    let response = browser.get("/logout", &[]).await;

    let clearing = tgc_set_cookie(&response);
    assert!(clearing.starts_with("TGC=;"), "{clearing}");
    let attrs: Vec<&str> = clearing.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"Max-Age=0"), "{clearing}");
    assert!(
        attrs.contains(&"Path=/cas"),
        "same Path as when set: {clearing}"
    );
    assert!(
        !attrs
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "host-only, as when set: {clearing}"
    );
    assert_eq!(response.status(), StatusCode::OK);
    assert!(browser.tgc().is_none(), "the browser dropped the cookie");
    browser.set_tgc(&old);
    assert_no_sso(&browser, "no ticket for the old cookie").await;
}

/// LOGOUT-03: without a service, logout answers 200 with a "signed out" HTML page.
#[tokio::test]
async fn logout_without_service_shows_the_signed_out_page() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let response = browser.get("/logout", &[]).await;

    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
    );
    assert_signed_out_page(response, "logout without service").await;
}

/// LOGOUT-04: redirects are off by default: a registered service gets the page, and the
/// session still ends.
#[tokio::test]
async fn logout_does_not_follow_the_service_by_default() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let old = browser.tgc().unwrap();

    let response = browser.get("/logout", &[("service", SERVICE)]).await;

    assert_signed_out_page(response, "redirects disabled").await;
    assert_no_sso_with(&server, &old).await;
}

/// LOGOUT-04, LOGOUT-01: with `follow_service_redirects` on, logout ends the session,
/// clears the cookie and answers 302 to exactly the registered service given.
#[tokio::test]
async fn logout_redirects_to_a_registered_service_when_enabled() {
    let server = TestServer::start_with(|s| s.logout.follow_service_redirects = true).await;
    let browser = server.signed_in_browser().await;
    let old = browser.tgc().unwrap();

    let response = browser.get("/logout", &[("service", SERVICE)]).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_deref(), Some(SERVICE));
    assert!(tgc_set_cookie(&response).contains("Max-Age=0"));
    assert!(browser.tgc().is_none());
    assert_no_sso_with(&server, &old).await;
}

/// LOGOUT-05: even with redirects on, an unregistered, disabled or lookalike service gets
/// the page, with no Location and no link to it; the session ends all the same.
#[tokio::test]
async fn logout_never_redirects_to_an_unregistered_service() {
    let server = TestServer::start_with(|s| s.logout.follow_service_redirects = true).await;
    let browser = server.signed_in_browser().await;
    let old = browser.tgc().unwrap();

    for (service, host) in [
        (FOREIGN_SERVICE, "evil.example.net"),
        (DISABLED_SERVICE, "disabled.example.org"),
        (
            "https://app.example.org.evil.example/",
            "app.example.org.evil.example",
        ),
    ] {
        let response = browser.get("/logout", &[("service", service)]).await;

        let html = assert_signed_out_page(response, service).await;
        assert!(!html.contains(host), "no link to {service}: {html}");
    }
    assert_no_sso_with(&server, &old).await;
}

/// LOGOUT-06: the obsolete `url` parameter is ignored, whether redirects are on or off
/// and even when it names a registered service: no redirect, no link to it.
#[tokio::test]
async fn logout_ignores_the_url_parameter() {
    for follow in [false, true] {
        let server = TestServer::start_with(|s| s.logout.follow_service_redirects = follow).await;
        let browser = server.signed_in_browser().await;

        for (url, host) in [
            (FOREIGN_SERVICE, "evil.example.net"),
            (SERVICE, "app.example.org"),
        ] {
            let response = browser.get("/logout", &[("url", url)]).await;

            let html =
                assert_signed_out_page(response, &format!("follow={follow}, url={url}")).await;
            assert!(!html.contains(host), "no link to {url}: {html}");
        }
    }
}

/// LOGOUT-08, LOGOUT-03: logout without any cookie is idempotent: the page, with the
/// cookie deletion, every time.
#[tokio::test]
async fn logout_without_a_cookie_still_shows_the_page() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let first = browser.get("/logout", &[]).await;
    let second = browser.get("/logout", &[]).await;

    assert_signed_out_page(first, "first logout without cookie").await;
    assert_signed_out_page(second, "second logout without cookie").await;
}

/// LOGOUT-08, LOGOUT-04: logout without any cookie still honours a registered service
/// when redirects are enabled.
#[tokio::test]
async fn logout_without_a_cookie_still_redirects_to_a_registered_service() {
    let server = TestServer::start_with(|s| s.logout.follow_service_redirects = true).await;
    let browser = server.browser();

    let response = browser.get("/logout", &[("service", EXACT_SERVICE)]).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_deref(), Some(EXACT_SERVICE));
    assert!(tgc_set_cookie(&response).contains("Max-Age=0"));
}

/// TKT-08, LOGOUT-01: logout destroys what the session issued: service tickets not yet
/// validated (from the password login and from SSO) fail afterwards with INVALID_TICKET.
#[tokio::test]
async fn tickets_issued_before_logout_fail_validation_after_it() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let client = server.client();
    let from_login = browser.login_for_ticket(SERVICE).await;
    let from_sso = browser.sso_ticket(OTHER_SERVICE).await;

    let response = browser.get("/logout", &[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    let login_result = client
        .validate("/serviceValidate", SERVICE, &from_login)
        .await;
    assert_eq!(login_result.code(), "INVALID_TICKET");
    let sso_result = client
        .validate("/p3/serviceValidate", OTHER_SERVICE, &from_sso)
        .await;
    assert_eq!(sso_result.code(), "INVALID_TICKET");
}

/// LOGOUT-01, TGC-08: logging out one browser ends only that browser's session: another
/// user's session (in another browser) keeps working.
#[tokio::test]
async fn logging_out_one_browser_does_not_end_another_users_session() {
    let server = TestServer::start().await;
    let alice = server.browser();
    let bob = Browser::new(&server.base, USER_AGENT, Some("203.0.113.7"));
    alice.login(None, "alice", PASSWORD).await;
    bob.login(None, "bob", BOB_PASSWORD).await;
    let alice_cookie = alice.tgc().unwrap();

    let response = alice.get("/logout", &[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_sso_as(&server, &bob, SERVICE, "bob").await;
    assert_no_sso_with(&server, &alice_cookie).await;
}

/// TGC-08, LOGOUT-01: a stolen cookie presented to /logout from another IP is "no
/// session": the thief gets the page, but the owner's session survives.
#[tokio::test]
async fn a_stolen_cookie_cannot_log_the_owner_out_from_another_ip() {
    let server = TestServer::start().await;
    let owner = Browser::new(&server.base, USER_AGENT, Some("203.0.113.7"));
    owner.login(None, "alice", PASSWORD).await;
    let thief = Browser::new(&server.base, USER_AGENT, Some("198.51.100.9"));
    thief.set_tgc(&owner.tgc().unwrap());

    let response = thief.get("/logout", &[]).await;

    assert_signed_out_page(response, "thief's logout").await;
    assert_sso_as(&server, &owner, SERVICE, "alice").await;
}
