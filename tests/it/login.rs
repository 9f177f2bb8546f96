//! `/login` as credential requestor and acceptor: the browser flow, SSO, renew and
//! gateway, the login-flow token, and refused services.

use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;

use crate::support::*;

/// LOGIN-01, LOGIN-02, GEN-06: a GET shows the form with username, password, lt, and the
/// service exactly as given, and the page must not be cached.
#[tokio::test]
async fn the_login_form_has_the_protocol_fields_and_echoes_the_service() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let page = browser.get_login(&[("service", SERVICE)]).await;

    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert_eq!(page.headers()["pragma"], "no-cache");
    assert!(page.headers().contains_key("expires"));
    let html = page.text().await.unwrap();
    assert!(html.contains("method=\"post\""));
    assert!(html.contains("name=\"username\"") && html.contains("autocomplete=\"username\""));
    assert!(
        html.contains("name=\"password\"") && html.contains("autocomplete=\"current-password\"")
    );
    assert!(hidden_input(&html, "lt").is_some());
    assert_eq!(hidden_input(&html, "service").as_deref(), Some(SERVICE));
    assert!(
        html.contains("Example App"),
        "the page names the application"
    );
}

/// LOGINP-01, LOGINP-03, LOGIN-16, TKT-01, TKT-05: credentials with a service redirect to it
/// with one ST appended after its own query, set the TGC, and never put the password in
/// the URL.
#[tokio::test]
async fn a_successful_login_redirects_to_the_service_with_a_ticket_and_sets_the_cookie() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let response = browser.login(Some(SERVICE), "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("TGC="), "{cookie}");
    let location = location(&response).unwrap();
    assert!(
        location.starts_with(&format!("{SERVICE}&ticket=ST-")),
        "{location}"
    );
    assert!(!location.contains(PASSWORD) && !location.contains("correct"));
    let ticket = ticket_in(&location);
    assert!(ticket.len() <= 32, "TKT-05: {ticket}");
    let charset = regex::Regex::new(r"^ST-[A-Za-z0-9-]+$").unwrap();
    assert!(charset.is_match(&ticket), "TKT-01: {ticket}");
    assert!(browser.tgc().is_some());
}

/// LOGINP-02, LOGIN-05: a login without a service shows the logged-in page and starts the
/// session; a later GET without a service shows it again instead of the form.
#[tokio::test]
async fn a_login_without_service_shows_the_logged_in_page() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let response = browser.login(None, "alice", PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(SET_COOKIE));
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("signed in as <strong>alice</strong>")
    );
    let again = browser.get_login(&[]).await;
    assert_eq!(again.status(), StatusCode::OK);
    let html = again.text().await.unwrap();
    assert!(html.contains("signed in as") && !html.contains("name=\"password\""));
}

/// LOGINP-04: a wrong password or an unknown user re-renders the form with the same
/// message, sets no cookie and issues no ticket.
#[tokio::test]
async fn failed_logins_show_the_form_again_with_one_message_for_both_causes() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let wrong_password = browser.login(Some(SERVICE), "alice", "wrong").await;
    let unknown_user = browser.login(Some(SERVICE), "mallory", PASSWORD).await;

    for response in [wrong_password, unknown_user] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(!response.headers().contains_key(SET_COOKIE));
        assert!(location(&response).is_none());
        let html = response.text().await.unwrap();
        assert!(html.contains("The username or password is not correct."));
        assert!(html.contains("name=\"password\"") && !holds_a_service_ticket(&html));
        assert_eq!(hidden_input(&html, "service").as_deref(), Some(SERVICE));
    }
    assert!(browser.tgc().is_none());
}

/// LOGINP-06, TKT-07: the login-flow token is single-use, bound to its service, and
/// tamper-proof; any violation re-renders the form without authenticating.
#[tokio::test]
async fn the_login_flow_token_cannot_be_replayed_tampered_or_moved() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let lt = browser.form_token(Some(SERVICE)).await;
    let form = |lt: &str| {
        vec![
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), PASSWORD.to_owned()),
            ("lt".to_owned(), lt.to_owned()),
        ]
    };
    let post = |fields: Vec<(String, String)>, service: &'static str| {
        let browser = &browser;
        async move {
            let mut fields = fields;
            fields.push(("service".to_owned(), service.to_owned()));
            let borrowed: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            browser.post_login(&borrowed).await
        }
    };

    // Moved to another service: refused.
    let moved = post(form(&lt), OTHER_SERVICE).await;
    assert_eq!(moved.status(), StatusCode::BAD_REQUEST);
    // Tampered: refused.
    let mut tampered = lt.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = post(form(&String::from_utf8(tampered).unwrap()), SERVICE).await;
    assert_eq!(tampered.status(), StatusCode::BAD_REQUEST);
    // Missing: refused.
    let missing = browser
        .post_login(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("service", SERVICE),
        ])
        .await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    // The genuine token still works once (the failures above did not consume it)...
    let first = post(form(&lt), SERVICE).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    // ...and never again.
    let replay = post(form(&lt), SERVICE).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    let html = replay.text().await.unwrap();
    assert!(html.contains("already used"), "{html}");
    assert!(
        hidden_input(&html, "lt").is_some_and(|fresh| fresh != lt),
        "a fresh token is issued"
    );
}

/// LOGINP-06: a form left open longer than `login.form_ttl` must be filled in again.
#[tokio::test]
async fn an_expired_login_form_is_refused() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let lt = browser.form_token(None).await;

    server
        .clock
        .advance(std::time::Duration::from_secs(15 * 60));
    let response = browser
        .submit_login(None, "alice", PASSWORD, &lt, &[])
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!response.headers().contains_key(SET_COOKIE));
    assert!(response.text().await.unwrap().contains("expired"));
}

/// LOGIN-03, LOGINP-08, GEN-07: unknown, disabled and lookalike services get an error page,
/// never a redirect or a ticket, on GET and on POST, with or without a session.
#[tokio::test]
async fn unregistered_or_disabled_services_are_refused_without_redirect() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    for service in [
        FOREIGN_SERVICE,
        DISABLED_SERVICE,
        "https://app.example.org.evil.example/",
        "https://exact.example.org/?extra=1",
    ] {
        for query in [
            vec![("service", service)],
            vec![("service", service), ("gateway", "true")],
        ] {
            let response = browser.get_login(&query).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{service}");
            assert!(location(&response).is_none());
            let html = response.text().await.unwrap();
            assert!(
                !holds_a_service_ticket(&html) && html.contains("not authorized"),
                "{html}"
            );
        }
        let lt = browser.form_token(None).await;
        let post = browser
            .submit_login(Some(service), "alice", PASSWORD, &lt, &[])
            .await;
        assert_eq!(post.status(), StatusCode::FORBIDDEN);
        assert!(location(&post).is_none());
    }
}

/// LOGIN-04, LOGIN-16: with a session, a new service gets a fresh ticket at once; the
/// service's query is kept in order and the ticket goes before the fragment.
#[tokio::test]
async fn sso_redirects_at_once_with_a_new_ticket() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let first = browser.login_for_ticket(SERVICE).await;

    let with_fragment = "https://app.example.org/page?z=1&a=2#section?x=y";
    let response = browser.get_login(&[("service", with_fragment)]).await;

    assert_eq!(response.status(), StatusCode::FOUND);
    let location = location(&response).unwrap();
    let ticket = ticket_in(&location);
    assert_eq!(
        location,
        format!("https://app.example.org/page?z=1&a=2&ticket={ticket}#section?x=y")
    );
    assert_ne!(ticket, first);
    assert_validates_as(&server, with_fragment, &ticket, "alice").await;
}

/// LOGIN-06, VAL-08, VAL-09, P3-04: renew shows the form despite a session; the ticket from
/// that fresh login passes renew validation and reports isFromNewLogin=true, while an SSO
/// ticket fails renew validation.
#[tokio::test]
async fn renew_forces_credentials_and_only_fresh_tickets_pass_renew_validation() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let client = server.client();
    browser.login(None, "alice", PASSWORD).await;

    let forced = browser
        .get_login(&[("service", SERVICE), ("renew", "true")])
        .await;
    assert_shows_the_form(forced, "renew bypasses SSO").await;

    let sso = browser.sso_ticket(SERVICE).await;
    let refused = client
        .validate_with(
            "/p3/serviceValidate",
            &[("service", SERVICE), ("ticket", &sso), ("renew", "true")],
        )
        .await;
    assert_eq!(refused.code(), "INVALID_TICKET");

    let fresh = browser.login_for_ticket(SERVICE).await;
    let accepted = client
        .validate_with(
            "/p3/serviceValidate",
            &[("service", SERVICE), ("ticket", &fresh), ("renew", "true")],
        )
        .await;
    assert_eq!(accepted.user(), "alice");
    assert_eq!(accepted.attribute("isFromNewLogin"), vec!["true"]);
}

/// LOGIN-07, CC-12: gateway without a session returns to the service exactly, without a
/// ticket and without a form.
#[tokio::test]
async fn gateway_without_session_returns_to_the_service_without_ticket() {
    let server = TestServer::start().await;
    let browser = server.browser();

    let response = browser
        .get_login(&[("service", SERVICE), ("gateway", "true")])
        .await;

    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response).as_deref(), Some(SERVICE));
}

/// LOGIN-08: gateway with a session behaves as SSO.
#[tokio::test]
async fn gateway_with_session_redirects_with_a_ticket() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let response = browser
        .get_login(&[("service", SERVICE), ("gateway", "true")])
        .await;

    assert_eq!(response.status(), StatusCode::FOUND);
    let ticket = ticket_in(&location(&response).unwrap());
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}

/// LOGIN-09: gateway without a service acts as a plain GET: the form.
#[tokio::test]
async fn gateway_without_service_shows_the_form() {
    let server = TestServer::start().await;

    let response = server.browser().get_login(&[("gateway", "true")]).await;

    assert_shows_the_form(response, "gateway without service").await;
}

/// LOGIN-10: renew and gateway together: renew wins, with or without a session.
#[tokio::test]
async fn renew_wins_over_gateway() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let query = [("service", SERVICE), ("renew", "true"), ("gateway", "true")];

    let without_session = browser.get_login(&query).await;
    browser.login(None, "alice", PASSWORD).await;
    let with_session = browser.get_login(&query).await;

    assert_shows_the_form(without_session, "renew and gateway, no session").await;
    assert_shows_the_form(with_session, "renew and gateway, with a session").await;
}

/// GEN-01: parameter names are case-sensitive: `Service` is not `service`.
#[tokio::test]
async fn parameter_names_are_case_sensitive() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let response = browser.get_login(&[("Service", SERVICE)]).await;

    assert_eq!(
        response.status(),
        StatusCode::OK,
        "no redirect: `Service` is not a parameter"
    );
    assert!(location(&response).is_none());
}

/// A login parameter given twice is refused before any session or ticket is touched.
#[tokio::test]
async fn repeated_login_parameters_are_refused() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let response = browser
        .get_login(&[("service", SERVICE), ("service", FOREIGN_SERVICE)])
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(location(&response).is_none());
}

/// A second password login replaces the session: the old cookie stops working.
#[tokio::test]
async fn logging_in_again_replaces_the_previous_session() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let old = browser.tgc().unwrap();

    browser.login(None, "bob", BOB_PASSWORD).await;
    let thief = server.browser();
    thief.set_tgc(&old);
    let response = thief.get_login(&[("service", SERVICE)]).await;

    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the replaced session no longer grants tickets"
    );
    assert_sso_as(&server, &browser, SERVICE, "bob").await;
}
