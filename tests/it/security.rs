//! Hardening: the request filter, security headers, login throttling and the
//! trusted-proxy rule, as an attacker would probe them.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

/// Percent-encodes a value for hand-built URLs (so tests control repetition and bytes).
fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// GETs `path` with `query` sent exactly as written (no re-encoding of the hand-built text).
async fn get_raw_query(
    http: &reqwest::Client,
    server: &TestServer,
    path: &str,
    query: &str,
) -> reqwest::Response {
    http.get(format!("{}{path}?{query}", server.base))
        .send()
        .await
        .unwrap()
}

/// `127.0.0.1:PORT` of a plain-HTTP server, for raw TCP connections.
fn host_and_port(server: &TestServer) -> String {
    server
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// `/health` through a new connection that gives up after `limit`.
async fn health_within(server: &TestServer, limit: Duration) -> reqwest::Result<reqwest::Response> {
    server
        .http()
        .timeout(limit)
        .build()
        .unwrap()
        .get(server.url("/health"))
        .send()
        .await
}

/// The login page requested with `X-Forwarded-Proto: https`, as a TLS-terminating proxy
/// would send it.
async fn login_page_forwarded_as_https(server: &TestServer) -> reqwest::Response {
    server
        .http()
        .build()
        .unwrap()
        .get(server.url("/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
}

/// Every way the filter refuses a request, as raw query strings around a real ticket.
fn malformed(ticket: &str) -> Vec<(&'static str, String)> {
    let service = enc(SERVICE);
    vec![
        (
            "repeated ticket",
            format!("service={service}&ticket={ticket}&ticket={ticket}"),
        ),
        (
            "repeated service",
            format!("service={service}&service={service}&ticket={ticket}"),
        ),
        (
            "CR LF in service",
            format!(
                "service={}&ticket={ticket}",
                enc(&format!("{SERVICE}\r\nSet-Cookie: x=1"))
            ),
        ),
        (
            "NUL in ticket",
            format!("service={service}&ticket={ticket}%00"),
        ),
        (
            "ticket over 256",
            format!("service={service}&ticket={ticket}{}", "A".repeat(250)),
        ),
        (
            "service over 4 KiB",
            format!(
                "service={}&ticket={ticket}",
                enc(&format!("{SERVICE}{}", "a".repeat(4096)))
            ),
        ),
        (
            "not UTF-8",
            format!("service={service}%FF%FE&ticket={ticket}"),
        ),
    ]
}

/// The request filter on every validation endpoint: each malformed request gets the
/// protocol's INVALID_REQUEST (or `no` for CAS 1), and the ticket is left untouched.
#[tokio::test]
async fn the_filter_refuses_malformed_validation_requests_without_consuming_the_ticket() {
    let server = TestServer::start().await;
    let http = server.http().build().unwrap();
    let ticket = server.browser().login_for_ticket(SERVICE).await;

    for path in [
        "/serviceValidate",
        "/proxyValidate",
        "/p3/serviceValidate",
        "/p3/proxyValidate",
        "/validate",
    ] {
        for (case, query) in malformed(&ticket) {
            let response = get_raw_query(&http, &server, path, &query).await;
            assert_eq!(response.status(), StatusCode::OK, "{path} {case}");
            let body = response.text().await.unwrap();
            if path == "/validate" {
                assert_eq!(body, "no\n\n", "{path} {case}");
            } else {
                assert_eq!(
                    parse_validation(&body).code(),
                    "INVALID_REQUEST",
                    "{path} {case}"
                );
            }
        }
    }

    let still_valid = server
        .client()
        .validate("/serviceValidate", SERVICE, &ticket)
        .await;
    assert_eq!(
        still_valid.user(),
        "alice",
        "no rejected request consumed the ticket"
    );
}

/// The filter on `/proxy`: INVALID_REQUEST as a proxyFailure.
#[tokio::test]
async fn the_filter_refuses_malformed_proxy_requests() {
    let server = TestServer::start().await;
    let http = server.http().build().unwrap();

    for query in [
        "pgt=PGT-1&pgt=PGT-2&targetService=https%3A%2F%2Fbackend.example.org%2F".to_owned(),
        format!("pgt=PGT-1%0D%0A&targetService={}", enc(BACKEND)),
        format!("pgt={}&targetService={}", "P".repeat(300), enc(BACKEND)),
    ] {
        let body = get_raw_query(&http, &server, "/proxy", &query)
            .await
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("<cas:proxyFailure code=\"INVALID_REQUEST\">"),
            "{query}: {body}"
        );
    }
}

/// The filter on the browser endpoints: an error page with HTTP 400, no redirect, no
/// cookie, and the SSO session is untouched.
#[tokio::test]
async fn the_filter_refuses_malformed_browser_requests_with_a_400_page() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;
    let service = enc(SERVICE);
    let crlf = enc(&format!("{SERVICE}\r\nLocation: https://evil.example/"));

    for (path, query) in [
        ("/login", format!("service={service}&service={service}")),
        ("/login", format!("service={crlf}")),
        ("/login", format!("service={service}&renew=%00")),
        (
            "/login",
            format!("service={}", enc(&format!("{SERVICE}{}", "a".repeat(5000)))),
        ),
        ("/login", "service=%C3%28".to_owned()),
        ("/logout", format!("service={service}&service={service}")),
        ("/logout", format!("service={crlf}")),
    ] {
        let response = get_raw_query(&browser.http, &server, path, &query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}?{query}");
        assert!(location(&response).is_none());
        assert!(!response.headers().contains_key("set-cookie"));
        assert!(response.text().await.unwrap().contains("Bad request"));
    }
    let long_user = "u".repeat(257);
    let response = browser.login(Some(SERVICE), &long_user, PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "username over 256"
    );
    assert_eq!(
        browser.sso_ticket(SERVICE).await.len(),
        32,
        "the session survived"
    );
}

/// Oversized headers and bodies are refused.
#[tokio::test]
async fn oversized_headers_and_bodies_are_refused() {
    let server = TestServer::start().await;
    let http = server.http().build().unwrap();

    let big_header = http
        .get(server.url("/login"))
        .header("x-padding", "p".repeat(20_000))
        .send()
        .await
        .unwrap();
    let big_body = http
        .post(server.url("/serviceValidate"))
        .header("content-type", "application/x-www-form-urlencoded")
        // Every field is within its own limit (4 096); only the whole body (about 68 KB)
        // is over `max_body_bytes` (64 KiB).
        .body(format!(
            "service={}&ticket=ST-1{}",
            enc(SERVICE),
            (0..17)
                .map(|i| format!("&pad{i}={}", "p".repeat(4000)))
                .collect::<String>()
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(
        big_header.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(big_header.headers()["x-content-type-options"], "nosniff");
    let body = big_body.text().await.unwrap();
    assert_eq!(parse_validation(&body).code(), "INVALID_REQUEST");
}

/// Security headers on every page type; no HSTS over plain HTTP.
#[tokio::test]
async fn security_headers_are_set_on_every_page_type() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let ticket = browser.login_for_ticket(SERVICE).await;

    let login_page = browser.get("/login", &[("renew", "true")]).await;
    let validation = server
        .raw_get(
            "/p3/serviceValidate",
            &[("service", SERVICE), ("ticket", &ticket)],
        )
        .await;
    let error_page = browser.get("/login", &[("service", FOREIGN_SERVICE)]).await;
    let logout_page = browser.get("/logout", &[]).await;
    let stylesheet = browser.get("/static/cas.css", &[]).await;

    for response in [
        &login_page,
        &validation,
        &error_page,
        &logout_page,
        &stylesheet,
    ] {
        let h = response.headers();
        let what = response.url().path();
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{what}: {csp}"
        );
        assert!(
            !csp.contains("script-src") && !csp.contains("unsafe-inline"),
            "no scripts: {csp}"
        );
        assert!(
            !h.contains_key("strict-transport-security"),
            "{what}: no HSTS over plain HTTP"
        );
    }
    for response in [&login_page, &validation, &error_page, &logout_page] {
        assert_eq!(response.headers()["cache-control"], "no-store", "GEN-06");
        assert_eq!(response.headers()["pragma"], "no-cache");
    }
    // Static assets keep their own caching.
    assert_eq!(
        stylesheet.headers()["cache-control"],
        "public, max-age=3600"
    );
}

/// HSTS is sent when a trusted proxy reports HTTPS, and only then.
#[tokio::test]
async fn hsts_follows_a_trusted_proxys_forwarded_proto() {
    let trusting = TestServer::start().await;
    let untrusting = TestServer::start_with(|s| s.server.trusted_proxies.clear()).await;

    let via_proxy = login_page_forwarded_as_https(&trusting).await;
    let forged = login_page_forwarded_as_https(&untrusting).await;

    assert_eq!(
        via_proxy.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert!(!forged.headers().contains_key("strict-transport-security"));

    // Found in review: on a dual-stack listener the proxy's IPv4 address arrives as
    // ::ffff:127.0.0.1 and was not recognised as trusted.
    let dual_stack = TestServer::start_with(|s| s.server.bind = "[::]:0".parse().unwrap()).await;
    let port = dual_stack
        .base
        .rsplit_once("]:")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let via_ipv4 = dual_stack
        .http()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/cas/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        via_ipv4.headers().contains_key("strict-transport-security"),
        "{:?}",
        via_ipv4.headers()
    );
}

/// `http_headers.frame_ancestors` replaces DENY with an allow-list; the front-channel
/// logout page allows frames from its applications' origins.
#[tokio::test]
async fn framing_rules_follow_the_configuration_and_front_channel_logout() {
    let server = TestServer::start_with(|s| {
        s.http_headers.frame_ancestors = vec!["https://portal.example.org".into()];
    })
    .await;
    let browser = server.browser();

    let page = browser.get("/login", &[]).await;
    browser
        .login_for_ticket("https://front.example.org/app")
        .await;
    let logout = browser.get("/logout", &[]).await;

    assert!(!page.headers().contains_key("x-frame-options"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors https://portal.example.org"),
        "{csp}"
    );
    let csp = logout.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-src https://front.example.org"), "{csp}");
}

fn throttled(s: &mut cas_server::config::Settings) {
    s.throttle.threshold = 3;
    s.throttle.window = Duration::from_secs(60);
}

/// THR-01, THR-03, THR-05: three bad logins, then the right password gets 423 without a
/// password check; after the window it works again.
#[tokio::test]
async fn three_failed_logins_block_the_next_until_the_window_passes() {
    let server = TestServer::start_with(throttled).await;
    let browser = server.browser();
    for _ in 0..3 {
        let r = browser.login(Some(SERVICE), "alice", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    let blocked = browser.login(Some(SERVICE), "alice", PASSWORD).await;
    assert_eq!(blocked.status(), StatusCode::LOCKED);
    assert!(blocked.headers().contains_key("retry-after"));
    assert!(location(&blocked).is_none() && !blocked.headers().contains_key("set-cookie"));
    assert!(
        blocked
            .text()
            .await
            .unwrap()
            .contains("Too many failed sign-in attempts")
    );
    let bob = browser.login(Some(SERVICE), "bob", BOB_PASSWORD).await;
    assert_eq!(
        bob.status(),
        StatusCode::FOUND,
        "another user from the same IP is not blocked"
    );

    server.clock.advance(Duration::from_secs(61));
    let after = browser.login(Some(SERVICE), "alice", PASSWORD).await;
    assert_eq!(after.status(), StatusCode::FOUND);
}

/// THR-03: attempts are counted when they start, so ten wrong passwords sent at once
/// still get only three password checks; the others are refused without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_checks_than_the_threshold() {
    let server = TestServer::start_with(throttled).await;
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let browser = server.browser();
        let lt = browser.form_token(Some(SERVICE)).await;
        attempts.push((browser, lt));
    }

    let tasks: Vec<_> = attempts
        .into_iter()
        .map(|(browser, lt)| {
            tokio::spawn(async move {
                browser
                    .submit_login(Some(SERVICE), "alice", "wrong", &lt, &[])
                    .await
                    .status()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    let count = |status| answers.iter().filter(|s| **s == status).count();
    assert_eq!(count(StatusCode::UNAUTHORIZED), 3, "password checks");
    assert_eq!(count(StatusCode::LOCKED), 7, "refused without a check");
}

/// THR-01: GETs are never throttled, and a blocked user can still see the form.
#[tokio::test]
async fn the_form_is_still_shown_while_blocked() {
    let server = TestServer::start_with(|s| {
        throttled(s);
        s.throttle.ip_threshold = 3;
    })
    .await;
    let browser = server.browser();
    for _ in 0..3 {
        browser.login(None, "alice", "wrong").await;
    }
    let blocked = browser.login(None, "alice", PASSWORD).await;
    assert_eq!(blocked.status(), StatusCode::LOCKED);

    let form = browser.get_login(&[("service", SERVICE)]).await;

    assert_eq!(form.status(), StatusCode::OK);
    assert!(
        form.text().await.unwrap().contains("name=\"password\""),
        "the form itself"
    );
}

/// Security review (issue 13, item 2): 25 POSTs with a bogus form token (refused at once,
/// no password checked) from one address used to lock every user behind it out for ten
/// minutes. Cheap failures count against their name only: a user who has not failed
/// signs in with the right password.
#[tokio::test]
async fn bogus_form_posts_from_an_address_lock_no_one_else_out() {
    let server = TestServer::start().await;
    let attacker = server.browser();
    for i in 0..30 {
        let refused = attacker
            .submit_login(Some(SERVICE), &format!("user{i}"), "guess", "LT-bogus", &[])
            .await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    let neighbour = server.browser();
    let signed_in = neighbour.login(Some(SERVICE), "bob", BOB_PASSWORD).await;

    assert_eq!(signed_in.status(), StatusCode::FOUND, "not locked out");
}

/// Security review (issue 13, item 2): failed password checks for many names from one
/// address (password spraying) slow the address instead of locking it: past the
/// threshold its checks are spaced `ip_delay` apart, and an attempt that comes too
/// early gets 429 with the wait, never 423. A user who has not failed gets in once the
/// wait is over.
#[tokio::test]
async fn an_address_that_sprays_passwords_is_slowed_not_locked() {
    let server = TestServer::start_with(|s| {
        throttled(s);
        s.throttle.ip_threshold = 3;
        s.throttle.ip_delay = Duration::from_secs(5);
    })
    .await;
    let browser = server.browser();
    for name in ["carol", "dave", "erin"] {
        let r = browser.login(Some(SERVICE), name, "Spring2026!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let sprayed = browser.login(Some(SERVICE), "frank", "Spring2026!").await;
    assert_eq!(sprayed.status(), StatusCode::UNAUTHORIZED, "one more check");

    let slowed = browser.login(Some(SERVICE), "bob", BOB_PASSWORD).await;
    assert_eq!(slowed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(slowed.headers()["retry-after"], "5");
    assert!(location(&slowed).is_none());
    assert!(
        slowed
            .text()
            .await
            .unwrap()
            .contains("try again in a few seconds")
    );
    server.clock.advance(Duration::from_secs(5));
    let bob = browser.login(Some(SERVICE), "bob", BOB_PASSWORD).await;
    assert_eq!(bob.status(), StatusCode::FOUND, "in, after the wait");
    let next = browser.login(Some(SERVICE), "alice", PASSWORD).await;
    assert_eq!(
        next.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is still slowed for the window"
    );
}

/// The trusted-proxy rule: a forged X-Forwarded-For from an untrusted peer changes
/// nothing: the cookie stays pinned to the real address, and failures still count
/// against it.
#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = TestServer::start_with(|s| {
        s.server.trusted_proxies.clear();
        throttled(s);
    })
    .await;
    let owner = Browser::new(&server.base, USER_AGENT, Some("203.0.113.1"));
    owner.login(None, "alice", PASSWORD).await;
    let same_peer_other_claim = Browser::new(&server.base, USER_AGENT, Some("198.51.100.2"));
    same_peer_other_claim.set_tgc(&owner.tgc().unwrap());

    let sso = same_peer_other_claim
        .get_login(&[("service", SERVICE)])
        .await;
    assert_eq!(
        sso.status(),
        StatusCode::FOUND,
        "the forged header did not change the pinned IP"
    );

    for i in 0..3 {
        let liar = Browser::new(&server.base, USER_AGENT, Some(&format!("192.0.2.{i}")));
        liar.login(None, "bob", "wrong").await;
    }
    let liar = Browser::new(&server.base, USER_AGENT, Some("192.0.2.99"));
    let blocked = liar.login(None, "bob", BOB_PASSWORD).await;
    assert_eq!(
        blocked.status(),
        StatusCode::LOCKED,
        "rotating X-Forwarded-For does not escape throttling"
    );
}

/// `server.max_connections`: with every slot held by a connection with a request on it
/// (here a request head under way), a new connection waits; it is served as soon as a
/// slot frees. (An idle connection gives its slot up instead: `connections.rs`.)
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    use tokio::io::AsyncWriteExt as _;
    let server = TestServer::start_with(|s| s.server.max_connections = 1).await;
    let addr = host_and_port(&server);
    let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
    hog.write_all(b"GET /cas/health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Let the server accept the busy connection into the only slot.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let waiting = health_within(&server, Duration::from_millis(500)).await;
    drop(hog);
    let served = health_within(&server, Duration::from_secs(5))
        .await
        .unwrap();

    assert!(waiting.is_err(), "no slot was free");
    assert_eq!(served.status(), StatusCode::OK);
}

/// A request whose body never arrives is answered 408 after the request timeout, with
/// the same security headers and no-store as every other answer.
#[tokio::test]
async fn a_stalled_request_times_out_with_the_security_headers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start_with(|s| {
        s.server.request_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(host_and_port(&server))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /cas/serviceValidate HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nservice=",
        )
        .await
        .unwrap();

    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("cache-control: no-store"), "{answer}");
    assert!(
        answer.contains("x-content-type-options: nosniff"),
        "{answer}"
    );
    assert!(answer.contains("content-security-policy:"), "{answer}");
}

/// Slowloris: a client that trickles header bytes never lets the connection go idle, and
/// the request timeout only starts once the head is in. The head must be complete within
/// the request timeout of its first byte, or the connection is closed and its slot freed.
#[tokio::test]
async fn a_request_head_trickled_byte_by_byte_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start_with(|s| {
        s.server.max_connections = 1;
        s.server.request_timeout = Duration::from_millis(500);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(host_and_port(&server))
        .await
        .unwrap();
    slow.write_all(b"GET /cas/login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();

    // One byte every 100 ms for up to 5 s, well inside the 1 s idle limit each time.
    let started = std::time::Instant::now();
    let mut closed = false;
    let mut buf = [0u8; 256];
    while started.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("answered a request whose head never ended"),
            Err(_) => {}
        }
    }

    assert!(closed, "the trickling connection was still open after 5 s");
    let served = health_within(&server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK, "its slot was given back");
}

/// A head sent in pieces but completed in time is served, and keep-alive requests after
/// it get a fresh allowance each.
#[tokio::test]
async fn a_head_in_pieces_within_the_limit_is_served() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start_with(|s| {
        s.server.request_timeout = Duration::from_secs(2);
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(host_and_port(&server))
        .await
        .unwrap();
    for round in 0..3 {
        for piece in [
            &b"GET /cas/health HTTP/1.1\r\n"[..],
            b"Host: localhost\r\n",
            b"\r\n",
        ] {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer}"
        );
        // Each head takes about 800 ms of a 2 s allowance: three in a row would exceed
        // one allowance, so each must get its own.
    }
}

/// An idle connection does not keep its slot: after twice the request timeout with
/// nothing read or written it is closed, and the next client is served.
#[tokio::test]
async fn an_idle_connection_gives_up_its_slot() {
    let server = TestServer::start_with(|s| {
        s.server.max_connections = 1;
        s.server.request_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = host_and_port(&server);
    let _hog = tokio::net::TcpStream::connect(&addr).await.unwrap();

    let served = health_within(&server, Duration::from_secs(5))
        .await
        .unwrap();

    assert_eq!(
        served.status(),
        StatusCode::OK,
        "served once the idle connection was closed"
    );
}

/// Found in review: a service URL whose authority hides an escaped `/` and an `@` matched
/// `prefix:https://app.example.org/` once decoded, while browsers send its ticket to
/// `evil.example`. Such URLs are never services: no redirect, no ticket.
#[tokio::test]
async fn a_service_url_that_reads_differently_to_a_browser_is_refused() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    for hostile in [
        "https://app.example.org%2F@evil.example/",
        "https://app.example.org%2f%40evil.example/x",
        "https://user@app.example.org/",
        "https://app.example.org/a/../../elsewhere",
    ] {
        for query in [
            vec![("service", hostile)],
            vec![("service", hostile), ("gateway", "true")],
        ] {
            let response = browser.get_login(&query).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{hostile}");
            assert!(location(&response).is_none(), "{hostile}");
        }
    }
}

/// Login CSRF: a form posted by another site arrives without the browser's SameSite
/// form-binding cookie, and is refused even with valid credentials and a fresh token.
#[tokio::test]
async fn a_login_form_posted_from_another_browser_is_refused() {
    let server = TestServer::start().await;
    let attacker = server.browser();
    let lt = attacker.form_token(Some(SERVICE)).await;
    let victim = server.browser();

    let forged = victim
        .submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[])
        .await;

    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(victim.tgc().is_none(), "no session was planted");
    let own = attacker
        .submit_login(Some(SERVICE), "alice", PASSWORD, &lt, &[])
        .await;
    assert_eq!(
        own.status(),
        StatusCode::FOUND,
        "the token still works from its own browser"
    );
}
