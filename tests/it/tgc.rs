//! The ticket-granting cookie (TGC-01..08): when it is set, its attributes, its opaque
//! signed-and-encrypted value, its pinning to the client's IP and User-Agent, and the
//! idle and hard lifetimes of the SSO session behind it.

use std::time::Duration;

use cas_server::config::TgcKeySource;
use cas_server::crypto::{b64url_encode, sha256};
use cas_server::tgc::{CryptoMode, TgcCodec, TgcKeys, base62};
use josekit::jwe::{self, Dir, JweHeader};
use josekit::jws::{self, HS512, JwsHeader};
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

/// TKT-01: whether `value` has the shape of every cookie value the server issues: only
/// `A-Z a-z 0-9 -`, as the `TGC-` prefix, a layout letter and a base62 body.
fn has_the_value_shape(value: &str) -> bool {
    regex::Regex::new("^TGC-[ES]-[A-Za-z0-9]+$")
        .unwrap()
        .is_match(value)
}

/// The bytes a cookie value carries: its body, decoded from base62 (the one encoding in
/// it). There is no nested token left to decode: the body is IV, tag, signature and
/// ciphertext.
fn carried_bytes(value: &str) -> Vec<u8> {
    assert!(has_the_value_shape(value), "{value}");
    base62::decode(&value[6..]).expect("the body is base62")
}

/// Whether `needle` appears in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The keys and crypto mode of a server whose cookies a test also makes or opens.
struct KnownKeys {
    keys: TgcKeys,
    mode: CryptoMode,
}

impl KnownKeys {
    fn new(mode: CryptoMode) -> Self {
        Self {
            keys: TgcKeys::generate(),
            mode,
        }
    }

    async fn server(&self) -> TestServer {
        TestServer::start_with(|s| {
            s.tgc.keys = TgcKeySource::Configured(vec![self.keys.clone()]);
            s.tgc.crypto = self.mode;
        })
        .await
    }

    /// The TGT id in `value` (issued to the harness's browser on 127.0.0.1).
    fn tgt_id(&self, value: &str) -> String {
        TgcCodec::new(std::slice::from_ref(&self.keys), self.mode, true)
            .unwrap()
            .decode(value, "127.0.0.1", USER_AGENT)
            .unwrap()
    }

    /// The value the server issued for `tgt_id` before TKT-01 was honoured: compact
    /// JOSE (JWE `dir` A256GCM and JWS HS512, nested as compact text), made as it made it.
    fn legacy_value(&self, tgt_id: &str) -> String {
        let pin = b64url_encode(&sha256(USER_AGENT.as_bytes())[..16]);
        let payload = format!("{tgt_id}@127.0.0.1@{pin}");
        let encrypt = |plain: &[u8]| {
            let mut header = JweHeader::new();
            header.set_content_encryption("A256GCM");
            let encrypter = Dir.encrypter_from_bytes(self.keys.encryption).unwrap();
            jwe::serialize_compact(plain, &header, &encrypter).unwrap()
        };
        let sign = |plain: &[u8]| {
            let signer = HS512.signer_from_bytes(self.keys.signing).unwrap();
            jws::serialize_compact(plain, &JwsHeader::new(), &signer).unwrap()
        };
        match self.mode {
            CryptoMode::EncryptAndSign => sign(encrypt(payload.as_bytes()).as_bytes()),
            CryptoMode::SignAndEncrypt => encrypt(sign(payload.as_bytes()).as_bytes()),
        }
    }
}

/// TGC-01, TGC-06, TKT-08: a successful login sets the `TGC` cookie; its value references
/// the session but shows neither the TGT id, nor the user, nor the pinned IP or
/// User-Agent in clear, even once its body is decoded.
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
    let bytes = carried_bytes(&value);
    for clear in ["TGT-", USER_AGENT, "alice", "127.0.0.1"] {
        assert!(
            !contains(&bytes, clear.as_bytes()),
            "{clear} in clear: {value}"
        );
    }
    // Nor anything else readable, such as a base64 form of the above: random bytes hold
    // a run of 16 printable characters in about one cookie in 50 000.
    let longest_text = bytes
        .split(|b| !(b.is_ascii_graphic() || *b == b' '))
        .map(<[u8]>::len)
        .max();
    assert!(longest_text < Some(16), "{longest_text:?}: {value}");
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

/// TGC-07, TKT-01: by default (encrypt, then sign) the value is `TGC-E-` and, in base62,
/// the parts of a JWS (HS512) over a JWE (`dir`, A256GCM) without their constant headers:
/// a 12-byte IV, a 16-byte tag, a 64-byte signature and the ciphertext of the payload
/// (`TGT id@IP@User-Agent digest`).
#[tokio::test]
async fn the_default_tgc_value_is_a_signed_jwe() {
    let known = KnownKeys::new(CryptoMode::EncryptAndSign);
    let server = known.server().await;
    let browser = server.browser();

    browser.login(None, "alice", PASSWORD).await;

    let value = browser.tgc().unwrap();
    assert!(value.starts_with("TGC-E-"), "{value}");
    let tgt_id = known.tgt_id(&value);
    assert!(tgt_id.starts_with("TGT-"), "{tgt_id}");
    let payload_len = format!("{tgt_id}@127.0.0.1@").len() + 22;
    assert_eq!(
        carried_bytes(&value).len(),
        12 + 16 + 64 + payload_len,
        "{value}"
    );
}

/// TGC-07, TKT-01: both nesting orders work end to end (login, SSO, validation); in both,
/// the value holds only `A-Z a-z 0-9 -` and is under 70% of the length of the compact
/// JOSE value the server issued for the same session before.
#[tokio::test]
async fn both_crypto_modes_give_working_single_sign_on() {
    for (mode, layout) in [
        (CryptoMode::EncryptAndSign, "TGC-E-"),
        (CryptoMode::SignAndEncrypt, "TGC-S-"),
    ] {
        let known = KnownKeys::new(mode);
        let server = known.server().await;
        let browser = server.browser();

        let first = browser.login_for_ticket(SERVICE).await;

        let value = browser.tgc().unwrap();
        assert!(has_the_value_shape(&value), "{mode:?}: {value}");
        assert!(value.starts_with(layout), "{mode:?}: {value}");
        let before = known.legacy_value(&known.tgt_id(&value));
        assert!(
            value.len() * 10 < before.len() * 7,
            "{mode:?}: {} characters, against {} before",
            value.len(),
            before.len()
        );
        assert!(!value.contains("TGT-"), "{mode:?}: {value}");
        assert_validates_as(&server, SERVICE, &first, "alice").await;
        assert_sso_as(&server, &browser, OTHER_SERVICE, "alice").await;
    }
}

/// A session started before the value's format changed (compact JOSE, with `.` and `_`)
/// survives the upgrade: its cookie still gives SSO, in either crypto mode, and is
/// still pinned to its User-Agent.
#[tokio::test]
async fn a_cookie_of_the_earlier_format_still_gives_single_sign_on() {
    for mode in [CryptoMode::EncryptAndSign, CryptoMode::SignAndEncrypt] {
        let known = KnownKeys::new(mode);
        let server = known.server().await;
        let owner = server.signed_in_browser().await;
        let legacy = known.legacy_value(&known.tgt_id(&owner.tgc().unwrap()));
        assert!(legacy.contains('.'), "{legacy}");
        let upgraded = server.browser();

        upgraded.set_tgc(&legacy);

        assert_sso_as(&server, &upgraded, SERVICE, "alice").await;
        let other_agent = Browser::new(&server.base, "Mozilla/5.0 (Thief)", None);
        other_agent.set_tgc(&legacy);
        assert_no_sso(&other_agent, &format!("{mode:?}: old cookie, other agent")).await;
    }
}

/// TKT-01, TGC-08: a value with a character outside the alphabet, or cut short, is no
/// session: the form is shown; the genuine value, put back, still works.
#[tokio::test]
async fn a_cookie_outside_the_alphabet_or_cut_short_shows_the_form() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let genuine = browser.tgc().unwrap();
    let middle = genuine.len() / 2;

    for (how, bad) in [
        (
            "an underscore",
            format!("{}_{}", &genuine[..middle], &genuine[middle + 1..]),
        ),
        (
            "a dot",
            format!("{}.{}", &genuine[..middle], &genuine[middle + 1..]),
        ),
        ("cut by one", genuine[..genuine.len() - 1].to_owned()),
        ("cut by half", genuine[..middle].to_owned()),
        ("without its prefix", genuine[6..].to_owned()),
    ] {
        browser.set_tgc(&bad);
        assert_no_sso(&browser, how).await;
    }
    browser.set_tgc(&genuine);
    assert_sso_as(&server, &browser, SERVICE, "alice").await;
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
