//! Native HTTPS: the server speaks TLS (HTTP/1.1 and HTTP/2) with a certificate from a CA
//! generated for the test, redirects plain HTTP to HTTPS, and refuses bad certificate
//! configurations at startup with messages naming the key.

use std::collections::HashMap;

use cas_server::config::{self, Source};
use reqwest::StatusCode;

use crate::support::callback::TestPki;
use crate::support::*;

/// The whole browser flow and ticket validation over verified TLS, with HSTS.
#[tokio::test]
async fn login_and_validation_work_over_https() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |_| {}).await;
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let browser = server.browser();

    let page = browser.get_login(&[("service", SERVICE)]).await;
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let ticket = browser.login_for_ticket(SERVICE).await;
    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;

    assert_eq!(validation.user(), "alice");
    assert_eq!(
        browser.sso_ticket(SERVICE).await.len(),
        32,
        "the SSO cookie works over HTTPS"
    );
}

/// The login page fetched by a client made from `builder` (which picks the HTTP versions).
async fn login_page_with(
    server: &TestServer,
    builder: reqwest::ClientBuilder,
) -> reqwest::Response {
    builder
        .build()
        .unwrap()
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
}

/// HTTP/2 is negotiated by ALPN; HTTP/1.1 clients are served too.
#[tokio::test]
async fn http2_and_http1_are_both_served() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |_| {}).await;

    let h2 = login_page_with(&server, server.http()).await;
    let h1 = login_page_with(&server, server.http().http1_only()).await;

    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), StatusCode::OK);
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), StatusCode::OK);
}

/// A client that does not trust the CA cannot talk to the server (the certificate is
/// really verified), and plain HTTP on the TLS port gets nothing.
#[tokio::test]
async fn untrusting_and_plain_clients_are_not_served() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |_| {}).await;

    let untrusting = reqwest::Client::new()
        .get(server.url("/login"))
        .send()
        .await;
    let plain = reqwest::Client::new()
        .get(server.url("/login").replace("https://", "http://"))
        .send()
        .await;

    assert!(untrusting.is_err());
    // Plain HTTP on the TLS port fails the handshake: no answer at all, not a page.
    assert!(plain.is_err(), "{plain:?}");
}

/// The optional plain-HTTP listener only redirects to the same URL over HTTPS.
#[tokio::test]
async fn the_http_listener_redirects_to_https() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |s| {
        s.server.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let redirect = server.redirect_addr.expect("a redirect listener");
    let https_port = server.port().to_string();

    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{}/cas/login?service=https%3A%2F%2Fapp.example.org%2F",
            redirect.port()
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        location(&response).unwrap(),
        format!(
            "https://127.0.0.1:{https_port}/cas/login?service=https%3A%2F%2Fapp.example.org%2F"
        )
    );
}

/// Found in review: the redirect listener kept a half-sent request open forever; it now
/// closes idle connections like the HTTPS one, so port 80 cannot hoard descriptors.
#[tokio::test]
async fn the_http_listener_closes_idle_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |s| {
        s.server.http_redirect_bind = Some("127.0.0.1:0".parse().unwrap());
        s.server.request_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let redirect = server.redirect_addr.expect("a redirect listener");
    let mut stalled = tokio::net::TcpStream::connect(redirect).await.unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();

    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("the server closes the connection well within 5 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
}

fn load(text: &str) -> Result<config::Settings, config::ConfigError> {
    config::load_with_env(
        Source::Text {
            name: "tls.toml",
            text,
        },
        &HashMap::new(),
    )
}

/// Startup refuses a missing, unreadable, non-PEM or mismatched certificate or key, naming
/// the key and the file.
#[test]
fn certificate_mistakes_are_named_at_startup() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = pki.leaf(&["localhost"]);
    let other = pki.leaf(&["localhost"]);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let other_key = dir.path().join("other-key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    write_private(&key, &leaf.key_pem);
    write_private(&other_key, &other.key_pem);
    write_private(&garbage, "not a certificate");
    let readable = dir.path().join("readable-key.pem");
    std::fs::write(&readable, &leaf.key_pem).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls = |c: &std::path::Path, k: &std::path::Path| {
        format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            c.display(),
            k.display()
        )
    };

    assert!(load(&tls(&cert, &key)).is_ok());
    let cases = [
        (
            tls(&dir.path().join("missing.pem"), &key),
            "server.tls.cert_file",
            "cannot read",
        ),
        (
            tls(&cert, &dir.path().join("missing.pem")),
            "server.tls.key_file",
            "cannot read",
        ),
        (
            tls(&garbage, &key),
            "server.tls.cert_file",
            "no PEM certificate",
        ),
        (
            tls(&cert, &garbage),
            "server.tls.key_file",
            "no PEM private key",
        ),
        (
            tls(&cert, &other_key),
            "server.tls.key_file",
            "does not fit the certificate",
        ),
        // Security review (issue 13, item 8): a private key anyone may read.
        (
            tls(&cert, &readable),
            "server.tls.key_file",
            "readable by others (mode 644); run `chmod o-rwx",
        ),
    ];
    for (text, key_path, words) in cases {
        let e = load(&text).unwrap_err();
        let line = e.to_string();
        assert_eq!(e.problems[0].key, key_path, "{line}");
        assert!(line.contains(words), "{line}");
        for secret in [&leaf.key_pem, &other.key_pem] {
            let body = secret.lines().nth(1).unwrap();
            assert!(!line.contains(body), "no key material in messages");
        }
    }
    let e = load("[server]\nhttp_redirect_bind = \"127.0.0.1:0\"\n").unwrap_err();
    assert_eq!(e.problems[0].key, "server.http_redirect_bind");
}

/// Found in review: with Secure cookies the form-binding cookie is `__Host-CASFLOW`, which
/// browsers accept only from this exact host over HTTPS with `Path=/`: no sibling domain
/// can plant a binding value it knows. Signing in still works.
#[tokio::test]
async fn the_form_binding_cookie_is_host_only_when_secure() {
    let pki = TestPki::new();
    let server = TestServer::start_tls(&pki, |s| s.tgc.secure = true).await;
    let browser = server.browser();

    let page = browser.get_login(&[("service", SERVICE)]).await;
    let flow = set_cookies(&page)
        .into_iter()
        .find(|c| c.contains("CASFLOW="))
        .expect("the form sets its binding cookie");

    assert!(flow.starts_with("__Host-CASFLOW="), "{flow}");
    assert!(
        flow.contains("Path=/;") || flow.ends_with("Path=/"),
        "{flow}"
    );
    assert!(
        flow.contains("Secure") && !flow.contains("Domain"),
        "{flow}"
    );
    let ticket = browser.login_for_ticket(SERVICE).await;
    assert_validates_as(&server, SERVICE, &ticket, "alice").await;
}
