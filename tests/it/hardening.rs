//! The second security review (issue 13), attacked as an outsider would: service URLs
//! that fool pattern matching, weak setups that must not load, and the responses the
//! server shapes outside its handlers. (Connection slots: `connections.rs`; login
//! throttling: `security.rs`.)

use reqwest::StatusCode;

use crate::support::*;

/// Registered by a sloppy regex (an unescaped `.*` before the domain) and by a prefix
/// with a path, beside the test configuration's own services.
const EXTRA_SERVICES: &str = r#"
[[services]]
id = 100
name = "Sloppy regex"
pattern = 'regex:https://.*\.sloppy\.example\.org/.*'

[[services]]
id = 101
name = "App under a path"
pattern = "prefix:https://host.example.org/app/"
"#;

async fn with_extra_services() -> TestServer {
    TestServer::start_settings(settings_with("", EXTRA_SERVICES)).await
}

/// Asserts that a signed-in browser asking for `service` (plain, and with gateway) gets
/// the 403 page: no redirect, no ticket.
async fn assert_not_a_service(browser: &Browser, service: &str) {
    for query in [
        vec![("service", service)],
        vec![("service", service), ("gateway", "true")],
    ] {
        let response = browser.get_login(&query).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{service}");
        assert!(location(&response).is_none(), "{service}");
    }
}

/// Item 5: `regex:https://.*\.sloppy\.example\.org/.*` matched the raw URL, so
/// `https://evil.com#.sloppy.example.org/` got a ticket, delivered to evil.com. Patterns
/// are matched without the fragment (it never reaches the application's server).
#[tokio::test]
async fn a_sloppy_regex_is_not_fooled_by_a_fragment() {
    let server = with_extra_services().await;
    let browser = server.signed_in_browser().await;

    assert_not_a_service(&browser, "https://evil.com#.sloppy.example.org/").await;
    let ticket = browser
        .sso_ticket("https://app.sloppy.example.org/home#top")
        .await;
    assert_validates_as(
        &server,
        "https://app.sloppy.example.org/home#top",
        &ticket,
        "alice",
    )
    .await;
}

/// Item 6: `prefix:https://host.example.org/app/` confines the path: another case of
/// it, and dot segments in any encoding (Tomcat's `..;`, double encoding), are not the
/// application; only the scheme and host are case-insensitive.
#[tokio::test]
async fn a_prefix_pattern_confines_the_path() {
    let server = with_extra_services().await;
    let browser = server.signed_in_browser().await;

    for outside in [
        "https://host.example.org/APP/",
        "https://host.example.org/App/page",
        "https://host.example.org/app/..;/admin",
        "https://host.example.org/app/%252e%252e/admin",
        "https://host.example.org/app/%2e%2e;x/admin",
        "https://host.example.org/app/..%5cadmin",
    ] {
        assert_not_a_service(&browser, outside).await;
    }
    let inside = "HTTPS://HOST.example.org/app/Page?Next=%2Fhome";
    let ticket = browser.sso_ticket(inside).await;
    assert_validates_as(&server, inside, &ticket, "alice").await;
}
