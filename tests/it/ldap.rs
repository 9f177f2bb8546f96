//! LDAP authentication against a real OpenLDAP directory started by the test.

use std::time::{Duration, Instant};

use cas_server::auth::ldap::{LdapOptions, Lookup, Mode, UsernameRules};
use cas_server::crypto::Secret;
use reqwest::StatusCode;

use crate::support::callback::TestPki;
use crate::support::slapd::{LDAP_PASSWORD, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd};
use crate::support::*;

/// A search-then-bind source for `url`, releasing mail and memberOf.
fn source(url: &str) -> LdapOptions {
    LdapOptions {
        name: "corp".into(),
        url: url.into(),
        start_tls: false,
        extra_roots: vec![],
        bind: Some((SERVICE_DN.into(), Secret::new(SERVICE_PASSWORD.into()))),
        lookup: Lookup::Search {
            base_dn: PEOPLE.into(),
            filter: "(uid={user})".into(),
        },
        mode: Mode::Ldap,
        attributes: vec![
            ("mail".into(), "mail".into()),
            ("memberOf".into(), "memberOf".into()),
        ],
        principal_attribute: None,
        username: UsernameRules {
            trim: true,
            lowercase: true,
            strip_domain: false,
        },
        connect_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(1),
        pool_size: 2,
    }
}

async fn server_for(slapd: &Slapd) -> TestServer {
    let url = slapd.url();
    TestServer::start_with(|s| s.authn.ldap = vec![source(&url)]).await
}

/// The server's `/health` document.
async fn health(server: &TestServer) -> serde_json::Value {
    serde_json::from_str(&server.client().get("/health", &[]).await.raw).unwrap()
}

/// A directory user signs in through the form; `/p3` releases the directory's
/// attributes, the multi-valued `memberOf` as repeated elements.
#[tokio::test]
async fn a_directory_user_logs_in_and_services_get_the_directory_attributes() {
    let slapd = Slapd::start(None);
    let server = server_for(&slapd).await;
    let browser = server.browser();

    let ticket = browser
        .login_for_ticket_as(SERVICE, "JDoe ", LDAP_PASSWORD)
        .await;
    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;

    assert_eq!(
        validation.user(),
        "jdoe",
        "trimmed and lowercased login name"
    );
    assert_eq!(validation.attribute("mail"), vec!["jdoe@example.org"]);
    assert_eq!(
        validation.attribute("memberOf"),
        vec![
            "cn=staff,ou=groups,dc=example,dc=org",
            "cn=faculty,ou=groups,dc=example,dc=org"
        ]
    );
}

/// A wrong password and an unknown user get the same message and a similar time.
#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let slapd = Slapd::start(None);
    let server = server_for(&slapd).await;
    let browser = server.browser();

    // The fastest of three tries each: scheduling on a busy machine only ever adds time,
    // so the minimums compare the work done, not the noise.
    let mut wrong = None;
    let mut unknown = None;
    let (mut wrong_time, mut unknown_time) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let started = Instant::now();
        let response = browser
            .login(Some(SERVICE), "jdoe", "not-the-password")
            .await;
        wrong_time = wrong_time.min(started.elapsed());
        wrong = Some(response);
        let started = Instant::now();
        let response = browser
            .login(Some(SERVICE), "nobody-here", "not-the-password")
            .await;
        unknown_time = unknown_time.min(started.elapsed());
        unknown = Some(response);
    }
    let (wrong, unknown) = (wrong.unwrap(), unknown.unwrap());

    for response in [wrong, unknown] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("The username or password is not correct.")
        );
    }
    let gap = wrong_time.abs_diff(unknown_time);
    assert!(
        gap < Duration::from_millis(250),
        "wrong {wrong_time:?} vs unknown {unknown_time:?}"
    );
}

/// RFC 4515 escaping: filter metacharacters in a username match nothing, even with a
/// real password.
#[tokio::test]
async fn filter_injection_usernames_fail() {
    let slapd = Slapd::start(None);
    let server = server_for(&slapd).await;
    let browser = server.browser();

    for name in [
        "*)(uid=*))(|(uid=*",
        "*",
        "jdoe)(|(uid=*",
        "j*",
        "jdoe\\2a",
        "(uid=jdoe)",
    ] {
        let response = browser.login(Some(SERVICE), name, LDAP_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(browser.tgc().is_none(), "{name} logged in");
    }
}

/// An account locked by the directory's password policy gets its own message.
#[tokio::test]
async fn a_locked_account_is_told_so() {
    let slapd = Slapd::start(None);
    let server = server_for(&slapd).await;

    let response = server
        .browser()
        .login(Some(SERVICE), "locked", LDAP_PASSWORD)
        .await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let html = response.text().await.unwrap();
    assert!(html.contains("Your account is locked"), "{html}");
}

/// With no `[[users]]`, the directory alone answers (no static source in front of it).
#[tokio::test]
async fn a_directory_only_deployment_signs_directory_users_in() {
    let slapd = Slapd::start(None);
    let url = slapd.url();
    let server = TestServer::start_with(|s| {
        s.users.clear();
        s.authn.ldap = vec![source(&url)];
    })
    .await;

    let ticket = server
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    let validation = server
        .client()
        .validate("/serviceValidate", SERVICE, &ticket)
        .await;
    assert_eq!(validation.user(), "jdoe");
    let refused = server
        .browser()
        .login(Some(SERVICE), "alice", crate::support::PASSWORD)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// A password an administrator reset (ppolicy `changeAfterReset`) binds, but it only
/// lets the user change it: no SSO session.
#[tokio::test]
async fn a_reset_password_must_be_changed_before_signing_in() {
    let slapd = Slapd::start(None);
    let server = server_for(&slapd).await;
    let browser = server.browser();

    let response = browser.login(Some(SERVICE), "reset", LDAP_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let html = response.text().await.unwrap();
    assert!(html.contains("Your password has expired"), "{html}");
    assert!(browser.tgc().is_none(), "no session with a reset password");
}

/// StartTLS with a CA generated for the test; without the CA the certificate is refused.
#[tokio::test]
async fn starttls_verifies_the_directory_certificate() {
    let pki = TestPki::new();
    let slapd = Slapd::start(Some(&pki));
    let url = format!("ldap://localhost:{}", slapd.port);
    let mut trusted = source(&url);
    trusted.start_tls = true;
    trusted.extra_roots = vec![slapd.ca_der.clone().unwrap()];
    let mut untrusted = trusted.clone();
    untrusted.extra_roots.clear();

    let good = TestServer::start_with(|s| s.authn.ldap = vec![trusted]).await;
    let bad = TestServer::start_with(|s| s.authn.ldap = vec![untrusted]).await;

    let ticket = good
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    assert_validates_as(&good, SERVICE, &ticket, "jdoe").await;
    let refused = bad
        .browser()
        .login(Some(SERVICE), "jdoe", LDAP_PASSWORD)
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// A directory that stops answering (frozen, connections accepted): a login waits one
/// attempt's timeouts, not a second attempt's too, and gets the 503 page; service
/// resumes when the directory answers again.
#[tokio::test]
async fn a_frozen_directory_costs_one_attempt_then_a_503() {
    let slapd = Slapd::start(None);
    let mut options = source(&slapd.url());
    options.operation_timeout = Duration::from_secs(2);
    let server = TestServer::start_with(|s| s.authn.ldap = vec![options]).await;
    slapd.freeze(true);

    let started = Instant::now();
    let response = server
        .browser()
        .login(Some(SERVICE), "jdoe", LDAP_PASSWORD)
        .await;
    let took = started.elapsed();
    slapd.freeze(false);

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The kernel still accepts connections, so one attempt waits out the 2 s operation
    // timeout; a retry on a fresh connection would make it 4 s.
    assert!(took < Duration::from_millis(3_000), "took {took:?}");
    let ticket = server
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    assert_validates_as(&server, SERVICE, &ticket, "jdoe").await;
}

/// The directory stops: logins get a 503 page without any LDAP detail, `/health` says
/// so; it comes back: logins work again without restarting CAS.
#[tokio::test]
async fn an_outage_is_a_503_and_the_source_recovers_by_itself() {
    let mut slapd = Slapd::start(None);
    let server = server_for(&slapd).await;
    let browser = server.browser();
    browser
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    assert_eq!(health(&server).await["directories"][0]["reachable"], true);

    slapd.stop();
    let other = Browser::new(&server.base, "second browser", None);
    let down = other.login(Some(SERVICE), "jdoe", LDAP_PASSWORD).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = down.text().await.unwrap();
    assert!(html.contains("temporarily unavailable"), "{html}");
    for detail in ["ldap", "LDAP", "127.0.0.1", "connection", "refused"] {
        assert!(
            !html.contains(detail),
            "LDAP detail `{detail}` reached the browser"
        );
    }
    // Health answers are cached for 2 s: poll (bounded) until the outage shows.
    let mut reachable = serde_json::Value::Null;
    for _ in 0..20 {
        reachable = health(&server).await["directories"][0]["reachable"].clone();
        if reachable == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(reachable, false);

    slapd.restart();
    let third = Browser::new(&server.base, "third browser", None);
    let ticket = third
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    assert_validates_as(&server, SERVICE, &ticket, "jdoe").await;
}

/// Sources in order: the static users first, then the directory. A name in both is
/// accepted with either password, and the attributes show which source answered.
#[tokio::test]
async fn static_users_come_first_then_the_directory() {
    let slapd = Slapd::start(None);
    let url = slapd.url();
    let server = TestServer::start_with(|s| {
        let mut static_jdoe = s.users[0].clone();
        static_jdoe.username = "jdoe".into();
        static_jdoe.attributes.clear();
        s.users.push(static_jdoe);
        s.authn.ldap = vec![source(&url)];
    })
    .await;

    let alice = server
        .browser()
        .login_for_ticket_as(SERVICE, "alice", PASSWORD)
        .await;
    let static_jdoe = server
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", PASSWORD)
        .await;
    let ldap_jdoe = server
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;

    let client = server.client();
    assert_eq!(
        client
            .validate("/p3/serviceValidate", SERVICE, &alice)
            .await
            .user(),
        "alice"
    );
    let from_static = client
        .validate("/p3/serviceValidate", SERVICE, &static_jdoe)
        .await;
    assert!(
        !from_static.attribute_names().contains(&"mail".to_owned()),
        "the static entry answered"
    );
    let from_ldap = client
        .validate("/p3/serviceValidate", SERVICE, &ldap_jdoe)
        .await;
    assert_eq!(
        from_ldap.attribute("mail"),
        vec!["jdoe@example.org"],
        "the directory answered"
    );
}

/// Direct bind with a DN template (no service account), and a principal taken from a
/// directory attribute.
#[tokio::test]
async fn direct_bind_with_a_dn_template_works() {
    let slapd = Slapd::start(None);
    let mut options = source(&slapd.url());
    options.bind = None;
    options.lookup = Lookup::Template(format!("uid={{user}},{PEOPLE}"));
    options.principal_attribute = Some("mail".into());
    let server = TestServer::start_with(|s| s.authn.ldap = vec![options]).await;

    let ticket = server
        .browser()
        .login_for_ticket_as(SERVICE, "jdoe", LDAP_PASSWORD)
        .await;
    let wrong = server.browser().login(Some(SERVICE), "jdoe", "nope").await;

    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;
    assert_eq!(validation.user(), "jdoe@example.org");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

/// Found in review: an entry without the principal attribute fell back to the login
/// name, which could equal another person's attribute value (one user id, two people).
/// Such an entry, or one with several values, cannot sign in.
#[tokio::test]
async fn a_missing_or_ambiguous_principal_attribute_refuses_the_login() {
    let slapd = Slapd::start(None);
    let mut by_mail = source(&slapd.url());
    by_mail.principal_attribute = Some("mail".into());
    let server = TestServer::start_with(|s| s.authn.ldap = vec![by_mail]).await;

    let missing = server
        .browser()
        .login(Some(SERVICE), "nomail", LDAP_PASSWORD)
        .await;
    assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(location(&missing).is_none());

    let mut by_group = source(&slapd.url());
    by_group.principal_attribute = Some("memberOf".into());
    let server = TestServer::start_with(|s| s.authn.ldap = vec![by_group]).await;
    let ambiguous = server
        .browser()
        .login(Some(SERVICE), "jdoe", LDAP_PASSWORD)
        .await;
    assert_eq!(ambiguous.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// `cas-server check-config --probe` binds each directory's service account: it passes
/// while the directory is up and fails, naming the source, when it is down.
#[tokio::test]
async fn check_config_probe_tests_the_directory() {
    let mut slapd = Slapd::start(None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cas.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n\n[[authn.ldap]]\nname = \"corp\"\nurl = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\nbase_dn = \"{PEOPLE}\"\nconnect_timeout = \"1s\"\noperation_timeout = \"1s\"\n",
            slapd.url()
        ),
    )
    .unwrap();
    let probe = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_cas-server"))
            .args(["check-config", "--probe", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };

    let up = probe();
    slapd.stop();
    let down = probe();

    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(String::from_utf8_lossy(&up.stdout).contains("ldap source `corp`"));
    assert!(
        String::from_utf8_lossy(&up.stdout).contains("warning: LDAP source `corp` has no TLS"),
        "plain LDAP is reported"
    );
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("ldap source `corp`"), "{stderr}");
    assert!(
        !stderr.contains(SERVICE_PASSWORD),
        "the bind password never appears"
    );
}
