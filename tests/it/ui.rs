//! The browser experience over HTTP: remember-me, warn, response types, per-service SSO
//! policy, languages, themes, template overrides and the page checks a linter would do.

use std::time::Duration;

use cas_server::services::{ResponseType, Theme};
use reqwest::StatusCode;

use crate::support::*;

fn cookie_named<'a>(cookies: &'a [String], name: &str) -> Option<&'a String> {
    cookies.iter().find(|c| c.starts_with(&format!("{name}=")))
}

fn remember_me(s: &mut cas_server::config::Settings) {
    s.sso.remember_me = Some(Duration::from_secs(14 * 86_400));
}

/// The value of the first `name="…"` attribute in `html`.
fn first_attribute<'a>(html: &'a str, name: &str) -> &'a str {
    html.split(&format!("{name}=\""))
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
}

/// The login page of `server` for a browser sending `Accept-Language: accept_language`.
async fn login_page_in(server: &TestServer, accept_language: &str) -> String {
    server
        .browser()
        .http
        .get(server.url("/login"))
        .header("accept-language", accept_language)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// LOGINP-07, TGC-05: the remember-me box exists only when enabled, and is unchecked.
#[tokio::test]
async fn the_remember_me_box_is_offered_only_when_enabled_and_unchecked() {
    let off = TestServer::start().await;
    let on = TestServer::start_with(remember_me).await;

    let without = off.browser().get_text("/login", &[]).await;
    let with = on.browser().get_text("/login", &[]).await;

    assert!(!without.contains("rememberMe"));
    assert!(with.contains("name=\"rememberMe\" type=\"checkbox\""));
    assert!(!with.contains("checked"), "unchecked by default (§4.1.1)");
}

/// LOGINP-07, TGC-05, P3-03: a remembered login gets a persistent cookie, a 14-day
/// session beyond the 8-hour limit, and `longTermAuthenticationRequestTokenUsed=true`; a
/// plain one does not.
#[tokio::test]
async fn a_remembered_session_is_long_lived_and_says_so() {
    let server = TestServer::start_with(remember_me).await;
    let remembered = server.browser();
    let response = remembered
        .login_with(Some(SERVICE), "alice", PASSWORD, &[("rememberMe", "true")])
        .await;
    let tgc = cookie_named(&set_cookies(&response), "TGC")
        .unwrap()
        .clone();
    let ticket = ticket_in(&location(&response).unwrap());
    let plain = server.browser();
    let plain_response = plain.login(Some(SERVICE), "alice", PASSWORD).await;
    let plain_tgc = cookie_named(&set_cookies(&plain_response), "TGC")
        .unwrap()
        .clone();

    assert!(tgc.contains("Max-Age=1209600"), "{tgc}");
    assert!(!plain_tgc.contains("Max-Age"), "{plain_tgc}");
    let v = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;
    assert_eq!(
        v.attribute("longTermAuthenticationRequestTokenUsed"),
        vec!["true"]
    );
    let plain_ticket = ticket_in(&location(&plain_response).unwrap());
    let v = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &plain_ticket)
        .await;
    assert_eq!(
        v.attribute("longTermAuthenticationRequestTokenUsed"),
        vec!["false"]
    );

    server.clock.advance(Duration::from_secs(9 * 3600));
    assert_eq!(
        remembered.sso_ticket(SERVICE).await.len(),
        32,
        "past 8 h, still signed in"
    );
    assert_eq!(
        plain.get_login(&[("service", SERVICE)]).await.status(),
        StatusCode::OK,
        "the plain session ended"
    );
    // Forced authentication still wins (LOGIN-06).
    let forced = remembered
        .get_login(&[("service", SERVICE), ("renew", "true")])
        .await;
    assert_shows_the_form(forced, "renew over remember-me").await;
}

/// LOGINP-05, LOGIN-18: "warn me" sets CASPRIVACY; SSO then shows an interstitial whose
/// Continue delivers the ticket; logging in without it clears the cookie.
#[tokio::test]
async fn warn_shows_an_interstitial_before_sso() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let response = browser
        .login_with(None, "alice", PASSWORD, &[("warn", "true")])
        .await;
    let privacy = cookie_named(&set_cookies(&response), "CASPRIVACY")
        .unwrap()
        .clone();
    assert!(
        privacy.starts_with("CASPRIVACY=true") && privacy.contains("HttpOnly"),
        "{privacy}"
    );

    let page = browser.get_login(&[("service", SERVICE)]).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(location(&page).is_none(), "LOGIN-18: not transparent");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Example App") && !holds_a_service_ticket(&html),
        "{html}"
    );
    let lt = hidden_input(&html, "lt").unwrap();
    let continued = browser
        .post_login(&[("lt", &lt), ("service", SERVICE), ("continue", "true")])
        .await;
    assert_eq!(continued.status(), StatusCode::FOUND);
    let ticket = ticket_in(&location(&continued).unwrap());
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;

    let again = browser.login(None, "alice", PASSWORD).await;
    let cleared = cookie_named(&set_cookies(&again), "CASPRIVACY")
        .unwrap()
        .clone();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

/// LOGIN-11: method=POST answers a page that posts the ticket to the service, with its
/// one script allowed by nonce.
#[tokio::test]
async fn method_post_delivers_the_ticket_in_a_self_submitting_form() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let response = browser
        .get_login(&[("service", SERVICE), ("method", "POST")])
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(location(&response).is_none());
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = response.text().await.unwrap();
    assert!(html.contains("method=\"post\""));
    assert_eq!(html_unescape(first_attribute(&html, "action")), SERVICE);
    let ticket = hidden_input(&html, "ticket").unwrap();
    let nonce = first_attribute(&html, "nonce");
    assert!(
        csp.contains(&format!("script-src 'nonce-{nonce}'")),
        "{csp}"
    );
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}

/// LOGIN-12, LOGIN-13: method=HEADER answers the ticket in headers; an unknown method
/// falls back to a redirect.
#[tokio::test]
async fn method_header_and_unknown_methods() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    let header = browser
        .get_login(&[("service", SERVICE), ("method", "HEADER")])
        .await;
    let unknown = browser
        .get_login(&[("service", SERVICE), ("method", "CARRIER-PIGEON")])
        .await;

    assert_eq!(header.status(), StatusCode::OK);
    assert!(location(&header).is_none());
    assert_eq!(header.headers()["service"], SERVICE);
    let ticket = header.headers()["ticket"].to_str().unwrap().to_owned();
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
    assert_eq!(unknown.status(), StatusCode::FOUND);
}

/// LOGIN-14, SVC-09: a service's response_type applies to logins and SSO alike.
#[tokio::test]
async fn a_services_response_type_applies_without_a_method() {
    let server = TestServer::start_with(|s| {
        service_mut(s, 2).response_type = ResponseType::Header;
    })
    .await;
    let browser = server.browser();

    let login = browser.login(Some(EXACT_SERVICE), "alice", PASSWORD).await;
    let sso = browser.get_login(&[("service", EXACT_SERVICE)]).await;

    for response in [login, sso] {
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["ticket"]
                .to_str()
                .unwrap()
                .starts_with("ST-")
        );
    }
}

/// LOGIN-17: a service with `sso = false` always asks for credentials.
#[tokio::test]
async fn a_service_without_sso_always_asks() {
    let server = TestServer::start_with(|s| {
        service_mut(s, 2).sso_enabled = false;
    })
    .await;
    let browser = server.signed_in_browser().await;

    let response = browser.get_login(&[("service", EXACT_SERVICE)]).await;

    assert_shows_the_form(response, "sso = false").await;
    assert_eq!(
        browser.sso_ticket(SERVICE).await.len(),
        32,
        "other services keep SSO"
    );
    // LOGIN-07: gateway never shows the form; it goes back without a ticket.
    let gateway = browser
        .get_login(&[("service", EXACT_SERVICE), ("gateway", "true")])
        .await;
    assert_eq!(gateway.status(), StatusCode::FOUND);
    assert_eq!(location(&gateway).as_deref(), Some(EXACT_SERVICE));
}

/// SVC-05: `max_auth_age` asks again once the login is older than allowed.
#[tokio::test]
async fn max_auth_age_forces_a_fresh_login() {
    let server = TestServer::start_with(|s| {
        service_mut(s, 2).max_auth_age = Some(Duration::from_secs(600));
    })
    .await;
    let browser = server.signed_in_browser().await;

    server.clock.advance(Duration::from_secs(599));
    assert_eq!(
        browser
            .get_login(&[("service", EXACT_SERVICE)])
            .await
            .status(),
        StatusCode::FOUND
    );
    server.clock.advance(Duration::from_secs(2));
    let gateway = browser
        .get_login(&[("service", EXACT_SERVICE), ("gateway", "true")])
        .await;
    let late = browser.get_login(&[("service", EXACT_SERVICE)]).await;

    assert_shows_the_form(late, "authentication too old").await;
    // LOGIN-07: gateway never shows the form; it goes back without a ticket.
    assert_eq!(gateway.status(), StatusCode::FOUND);
    assert_eq!(location(&gateway).as_deref(), Some(EXACT_SERVICE));
}

/// TGC-09: with `create_cookie_on_renew = false`, a forced login sets no SSO cookie and
/// leaves the existing session alone.
#[tokio::test]
async fn a_renewed_login_can_stay_out_of_the_sso_session() {
    let server = TestServer::start_with(|s| s.sso.create_cookie_on_renew = false).await;
    let browser = server.signed_in_browser().await;
    let session = browser.tgc().unwrap();

    let renewed = browser
        .login_with(Some(SERVICE), "bob", BOB_PASSWORD, &[("renew", "true")])
        .await;

    assert_eq!(renewed.status(), StatusCode::FOUND);
    assert!(cookie_named(&set_cookies(&renewed), "TGC").is_none());
    assert_eq!(browser.tgc().unwrap(), session);
    assert_sso_as(&server, &browser, SERVICE, "alice").await;
}

/// `sso.allow_missing_service = false` and `sso.required_service_pattern`.
#[tokio::test]
async fn logins_can_be_limited_to_named_services() {
    let server = TestServer::start_with(|s| {
        s.sso.allow_missing_service = false;
        s.sso.required_service_pattern =
            Some(regex::Regex::new("^https://app\\.example\\.org/.*$").unwrap());
    })
    .await;
    let browser = server.browser();

    let bare = browser.get_login(&[]).await;
    let outside = browser.get_login(&[("service", EXACT_SERVICE)]).await;
    let inside = browser.get_login(&[("service", SERVICE)]).await;

    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    assert!(bare.text().await.unwrap().contains("Choose an application"));
    assert_eq!(outside.status(), StatusCode::FORBIDDEN);
    assert_eq!(inside.status(), StatusCode::OK);
}

/// i18n: French from Accept-Language, or as the default locale.
#[tokio::test]
async fn pages_speak_the_users_language() {
    let server = TestServer::start().await;
    let french_default = TestServer::start_with(|s| s.ui.default_locale = "fr".into()).await;

    let fr = login_page_in(&server, "fr-CA,fr;q=0.9,en;q=0.5").await;
    let en = login_page_in(&server, "en-GB").await;
    let de = login_page_in(&french_default, "de").await;

    assert!(
        fr.contains("<html lang=\"fr\">")
            && fr.contains("Se connecter")
            && fr.contains("Mot de passe")
    );
    assert!(en.contains("<html lang=\"en\">") && en.contains("Sign in"));
    assert!(de.contains("<html lang=\"fr\">"), "the default locale");
}

/// Themes: a service's name, logo and accent colour, and a global theme.
#[tokio::test]
async fn services_and_the_server_can_be_themed() {
    let server = TestServer::start_with(|s| {
        s.services[0].theme = Some(Theme {
            display_name: Some("Example Portal".into()),
            logo_url: Some("https://cdn.example.org/logo.svg".into()),
            accent_colour: Some("#8a1538".into()),
        });
        s.ui.theme = Theme {
            display_name: Some("Example University".into()),
            logo_url: None,
            accent_colour: Some("#005a9c".into()),
        };
    })
    .await;
    let browser = server.browser();

    let themed = browser.get_text("/login", &[("service", SERVICE)]).await;
    let global = browser.get_text("/login", &[]).await;
    let css = browser.get_text("/static/theme/1.css", &[]).await;
    let global_css = browser.get_text("/static/theme/default.css", &[]).await;
    let missing = browser.get("/static/theme/99.css", &[]).await;
    let undecodable = browser.get("/static/theme/%FF.css", &[]).await;

    assert!(
        themed.contains("Example Portal")
            && themed.contains("src=\"https://cdn.example.org/logo.svg\"")
    );
    assert!(themed.contains("/cas/static/theme/1.css"));
    assert!(css.contains("--accent: #8a1538"));
    assert!(
        global.contains("Example University") && global.contains("/cas/static/theme/default.css")
    );
    assert!(global_css.contains("--accent: #005a9c"));
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Not axum's plain-text rejection: the site's own 404 page.
    assert_eq!(undecodable.status(), StatusCode::NOT_FOUND);
    assert!(
        undecodable
            .text()
            .await
            .unwrap()
            .contains("<!DOCTYPE html>"),
        "the 404 page"
    );
}

/// `ui.templates_dir`: a same-named file replaces a built-in page; the others stay.
#[tokio::test]
async fn an_operator_can_replace_a_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("login.html"),
        "<!DOCTYPE html><html lang=\"{{ c.t.lang }}\"><title>Custom</title><form method=\"post\" action=\"{{ c.assets }}login\"><input type=\"hidden\" name=\"lt\" value=\"{{ lt }}\">CUSTOM LOGIN {{ service_name }}</form></html>",
    )
    .unwrap();
    let templates = dir.path().to_owned();
    let server = TestServer::start_with(|s| {
        s.ui.templates_dir = Some(templates);
    })
    .await;
    let browser = server.browser();

    let login = browser.get_text("/login", &[("service", SERVICE)]).await;
    let logout = browser.get_text("/logout", &[]).await;

    assert!(login.contains("CUSTOM LOGIN Example App"), "{login}");
    assert!(hidden_input(&login, "lt").is_some());
    assert!(
        logout.contains("You have been signed out"),
        "the built-in page stays"
    );
}

/// Relative luminance contrast of two `#rrggbb` colours (WCAG 2).
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |hex: &str| {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    };
    let (l1, l2) = (luminance(a), luminance(b));
    (l1.max(l2) + 0.05) / (l1.min(l2) + 0.05)
}

/// What an accessibility linter checks: a language, a label for every visible field,
/// autocomplete hints, an aria-live region, readable contrast; and the page is light.
#[tokio::test]
async fn the_login_page_passes_the_accessibility_checks_and_is_light() {
    let server = TestServer::start_with(remember_me).await;
    let browser = server.browser();

    let html = browser.get_text("/login", &[("service", SERVICE)]).await;
    let css = browser.get_text("/static/cas.css", &[]).await;

    assert!(html.contains("<html lang=\"en\">"));
    for input in html.split("<input ").skip(1) {
        let tag = input.split('>').next().unwrap();
        if tag.contains("type=\"hidden\"") {
            continue;
        }
        let id = first_attribute(tag, "id");
        assert!(
            html.contains(&format!("<label for=\"{id}\">")),
            "input {id} has a label"
        );
    }
    assert!(
        html.contains("autocomplete=\"username\"")
            && html.contains("autocomplete=\"current-password\"")
    );
    assert!(html.contains("aria-live=\"assertive\""));
    let var = |name: &str| css.split(&format!("{name}: ")).nth(1).unwrap()[..7].to_owned();
    for (fg, bg) in [
        (var("--fg"), "#ffffff".to_owned()),
        (var("--accent"), "#ffffff".to_owned()),
        (var("--error"), "#ffffff".to_owned()),
        ("#ffffff".to_owned(), var("--accent")),
    ] {
        assert!(
            contrast(&fg, &bg) >= 4.5,
            "{fg} on {bg}: {:.2}",
            contrast(&fg, &bg)
        );
    }
    assert!(
        html.len() + css.len() < 30 * 1024,
        "login page and CSS weigh {} bytes",
        html.len() + css.len()
    );
}
