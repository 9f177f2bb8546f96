//! The second security review (issue 13), attacked as an outsider would: service URLs
//! that fool pattern matching, weak setups that must not load, and the responses the
//! server shapes outside its handlers. (Connection slots: `connections.rs`; login
//! throttling: `security.rs`.)

use std::collections::HashMap;

use cas_server::config::{self, Source};
use cas_server::crypto::{b64url_encode, random_bytes};
use reqwest::StatusCode;

use crate::cli::{operator_config, run, write};
use crate::support::*;

/// The configuration `text`, loaded as an operator's file named `cas.toml` would be.
fn load(text: &str) -> Result<config::Settings, config::ConfigError> {
    config::load_with_env(
        Source::Text {
            name: "cas.toml",
            text,
        },
        &HashMap::new(),
    )
}

/// The keys of a configuration error's problems, in order.
fn problem_keys(e: &config::ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

fn mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

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

/// Item 5: `check-config` names a regex whose host part can leave the host.
#[tokio::test]
async fn check_config_warns_about_a_regex_with_a_loose_host_part() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "cas.toml",
        "[[services]]\nid = 1\nname = \"Sloppy\"\npattern = 'regex:https://.*\\.sloppy\\.example\\.org/.*'\n",
    );

    let out = run(dir.path(), Some(&config), &["check-config"], &[], "").await;

    assert_eq!(
        out.code(),
        Some(0),
        "a warning, not an error:\n{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("warning: services[0].pattern (`Sloppy`): the host part of this regex"),
        "{}",
        out.stdout
    );
}

/// Item 8: keys no random generator would make are refused, each named with the fix;
/// the same keys from `keygen`'s generator load.
#[test]
fn degenerate_keys_are_refused() {
    let zeros = b64url_encode(&[0u8; 32]);
    let sequence = b64url_encode(&(0u8..64).collect::<Vec<_>>());
    let pattern = b64url_encode(b"correct horse correct horse corr");
    let e = load(&format!(
        "[tgc]\nencryption_key = \"{zeros}\"\nsigning_key = \"{sequence}\"\n\
         [login]\nflow_key = \"{pattern}\"\n[tickets]\nkey = \"{zeros}\"\n"
    ))
    .unwrap_err();

    assert_eq!(
        problem_keys(&e),
        vec!["tgc.encryption_key", "tickets.key", "login.flow_key"],
        "{e}"
    );
    assert!(e.to_string().contains("cas-server keygen"), "{e}");
    assert!(!e.to_string().contains(&zeros), "no key in the message");
    let good = |n| b64url_encode(&random_bytes::<64>()[..n]);
    load(&format!(
        "[tgc]\nencryption_key = \"{}\"\nsigning_key = \"{}\"\n[login]\nflow_key = \"{}\"\n[tickets]\nkey = \"{}\"\n",
        good(32),
        good(64),
        good(32),
        good(32)
    ))
    .expect("random keys load");
}

/// Item 8: a key file that group or others may read is refused with the `chmod` to run,
/// at load (`*_file` keys) and at startup (the generated TGC key file), in the real
/// binary; once private, the same file is used.
#[tokio::test]
async fn a_key_file_others_may_read_is_refused_with_the_chmod_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = write(
        dir.path(),
        "registry.key",
        &b64url_encode(&random_bytes::<32>()),
    );
    mode(&key_file, 0o644);
    let e = load(&format!(
        "[tickets]\nkey_file = \"{}\"\n",
        key_file.display()
    ))
    .unwrap_err();
    assert_eq!(problem_keys(&e), vec!["tickets.key_file"]);
    assert!(
        e.to_string()
            .contains(&format!("run `chmod 600 {}`", key_file.display())),
        "{e}"
    );
    mode(&key_file, 0o600);
    assert!(
        load(&format!(
            "[tickets]\nkey_file = \"{}\"\n",
            key_file.display()
        ))
        .is_ok()
    );

    let hash = crate::cli::hash_password(dir.path(), "a password").await;
    let config = write(dir.path(), "cas.toml", &operator_config(&hash));
    let tgc_keys = write(
        dir.path(),
        "tgc-keys.toml",
        &cas_server::tgc::TgcKeys::generate().to_config(),
    );
    mode(&tgc_keys, 0o640);
    let out = run(dir.path(), Some(&config), &[], &[], "").await;
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "readable by group or others (mode 640); run `chmod 600 {}`",
            tgc_keys.display()
        )),
        "{}",
        out.stderr
    );
}

/// Item 8: plain HTTP on an address other than loopback is refused unless a TLS proxy is
/// listed in front (trusted_proxies) or the operator sets `allow_plain_http`.
#[test]
fn plain_http_off_loopback_needs_a_proxy_or_an_explicit_switch() {
    let e = load("[server]\nbind = \"0.0.0.0:8080\"\n").unwrap_err();
    assert_eq!(problem_keys(&e), vec!["server.bind"]);
    assert!(e.to_string().contains("allow_plain_http"), "{e}");
    assert!(load("[server]\nbind = \"0.0.0.0:8080\"\ntrusted_proxies = [\"10.0.0.2\"]\n").is_ok());
    assert!(load("[server]\nbind = \"0.0.0.0:8080\"\nallow_plain_http = true\n").is_ok());
    assert!(load("[server]\nbind = \"127.0.0.1:8080\"\n").is_ok());
}

/// The raw answer to `request`, sent as written on a new connection (read to the end).
async fn raw_answer(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_shaped(answer: &str, status: &str) {
    let lower = answer.to_ascii_lowercase();
    assert!(lower.starts_with(&format!("http/1.1 {status}")), "{answer}");
    for header in [
        "\r\ncache-control: no-store\r\n",
        "\r\nx-content-type-options: nosniff\r\n",
        "\r\nx-frame-options: deny\r\n",
        "\r\nreferrer-policy: no-referrer\r\n",
        "\r\ncontent-security-policy: default-src 'none'",
    ] {
        assert!(lower.contains(header), "{header:?} missing: {answer}");
    }
}

/// Item 9: answers the HTTP library writes by itself (too many headers, a malformed
/// request, an over-long URI) carry the security and no-store headers too.
#[tokio::test]
async fn the_http_librarys_own_error_answers_carry_the_security_headers() {
    let server = TestServer::start().await;
    let addr = server
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let mut many = b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for i in 0..120 {
        many.extend(format!("X-H{i}: 1\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    assert_shaped(&raw_answer(&addr, &many).await, "431");
    assert_shaped(
        &raw_answer(
            &addr,
            b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n",
        )
        .await,
        "400",
    );
    let long = format!(
        "GET /cas/login?x={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_shaped(&raw_answer(&addr, long.as_bytes()).await, "414");
}

/// Item 9: the plain-HTTP redirect listener reflected any `Host` into `Location` (an open
/// redirect for anyone who can reach port 80). It now redirects only to names the
/// certificate gives exactly, and anything else to the certificate's first name; its
/// answers are not cacheable and carry the security headers.
#[tokio::test]
async fn the_redirect_listener_only_redirects_to_the_certificates_names() {
    let pki = crate::support::callback::TestPki::new();
    let server = TestServer::start_tls(&pki, |s| {
        s.server.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let redirect = server.redirect_addr.unwrap().to_string();
    let https_port = server.port().to_string();
    let location = |answer: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_default()
            .to_owned()
    };

    for (host, expected) in [
        ("localhost", "localhost"),
        ("LOCALHOST:80", "LOCALHOST"),
        ("127.0.0.1", "127.0.0.1"),
        ("evil.example", "localhost"),
        ("evil.example:80", "localhost"),
        ("localhost.evil.example", "localhost"),
        ("[::1]", "localhost"),
    ] {
        let answer = raw_answer(
            &redirect,
            format!("GET /cas/login?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_shaped(&answer, "301");
        assert_eq!(
            location(&answer),
            format!("https://{expected}:{https_port}/cas/login?x=1"),
            "Host: {host}"
        );
    }
    let no_host = raw_answer(&redirect, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        location(&no_host),
        format!("https://localhost:{https_port}/")
    );
}
