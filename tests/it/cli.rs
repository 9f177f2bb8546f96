//! The `cas-server` binary as an operator runs it: `serve` (with a file and in demo mode),
//! `check-config`, `check-service`, `keygen` and `hash-password`, checked through exit
//! codes, stdout/stderr, files on disk and HTTP against the real process.
//!
//! Every child runs with a bounded wait and is killed if a test fails midway; a server is
//! started on port 0 and found by reading its `cas-server listening on …` line.
#![cfg(unix)]

use std::path::Path;

use reqwest::StatusCode;

use crate::support::process::{LISTENING, Output, Server, http, location, log_in, ticket_in};
pub(crate) use crate::support::process::{hash_password, run, write};

const PASSWORD: &str = "correct horse battery staple";
const SERVICE: &str = "https://app.example.org/";

async fn service_validate(
    client: &reqwest::Client,
    server: &Server,
    service: &str,
    ticket: &str,
) -> String {
    let response = client
        .get(server.url("/serviceValidate"))
        .query(&[("service", service), ("ticket", ticket)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// Asserts that a login `response` redirected to `service` with a ticket that validates
/// there as `user`.
async fn assert_redirected_with_a_ticket_for(
    client: &reqwest::Client,
    server: &Server,
    response: &reqwest::Response,
    service: &str,
    user: &str,
) {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = location(response);
    assert!(
        location.starts_with(&format!("{service}?ticket=ST-")),
        "{location}"
    );
    let body = service_validate(client, server, service, &ticket_in(&location)).await;
    assert!(
        body.contains(&format!("<cas:user>{user}</cas:user>")),
        "{body}"
    );
}

/// A minimal operator config: loopback on port 0, one user, one exactly matched service.
pub(crate) fn operator_config(password_hash: &str) -> String {
    format!(
        r#"[server]
bind = "127.0.0.1:0"

[[users]]
username = "alice"
password_hash = "{password_hash}"

[[services]]
id = 1
name = "App"
pattern = "{SERVICE}"
"#
    )
}

/// The value of `key = "…"` in TOML-ish text.
fn toml_string(text: &str, key: &str) -> String {
    let table: toml::Table = text.parse().unwrap();
    fn find(table: &toml::Table, key: &str) -> Option<String> {
        table.iter().find_map(|(k, v)| match v {
            toml::Value::String(s) if k == key => Some(s.clone()),
            toml::Value::Table(inner) => find(inner, key),
            _ => None,
        })
    }
    find(&table, key).unwrap_or_else(|| panic!("no `{key}` in:\n{text}"))
}

/// A problem report is a header, then one `  - ` line per problem; a message that spans
/// lines (a regex or TOML parser's caret diagram) continues indented under its problem,
/// so no line of it passes for a report of its own.
fn assert_report_lines(stderr: &str) {
    let mut lines = stderr.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("cas-server: the configuration has "),
        "{stderr}"
    );
    for line in lines {
        assert!(
            line.starts_with("  - ") || line.starts_with("    "),
            "a line outside the problem list: {line:?}\n{stderr}"
        );
    }
}

/// A first start with an operator file serves the login page, creates the TGC key file
/// beside the config readable by the owner only, never prints that key material, lets a
/// user whose hash came from `hash-password` sign in, and stops cleanly on SIGTERM.
#[tokio::test]
async fn a_configured_server_serves_logins_keeps_its_keys_private_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(dir.path(), PASSWORD).await;
    let config = write(dir.path(), "cas.toml", &operator_config(&hash));
    let key_file = dir.path().join("tgc-keys.toml");
    assert!(!key_file.exists());

    let server = Server::start(dir.path(), Some(&config), &[]).await;
    assert!(
        server.base.starts_with("http://127.0.0.1:") && server.base.ends_with("/cas"),
        "{}",
        server.base
    );
    let client = http();

    let page = client.get(server.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"password\"") && html.contains("type=\"password\""));

    let wrong = log_in(&client, &server, SERVICE, "alice", "not the password").await;
    assert_eq!(
        wrong.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong password is refused"
    );
    let response = log_in(&client, &server, SERVICE, "alice", PASSWORD).await;
    let ticket = ticket_in(&location(&response));
    assert_redirected_with_a_ticket_for(&client, &server, &response, SERVICE, "alice").await;

    let stopped = server.stop().await;

    // The audit trail reached stderr (flushed at shutdown), with tickets redacted.
    for event in [
        "login_failure",
        "login_success",
        "ticket_issued",
        "ticket_validated",
    ] {
        assert!(
            stopped.stderr.contains(event),
            "{event}: {}",
            stopped.stderr
        );
    }
    assert!(stopped.stderr.contains("ST-…#"), "{}", stopped.stderr);
    assert!(
        !stopped.stderr.contains(&ticket),
        "a live ticket leaked into the logs"
    );

    let keys = std::fs::read_to_string(&key_file).expect("the TGC key file was created");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is private: {mode:o}");
    for secret in [
        toml_string(&keys, "encryption_key"),
        toml_string(&keys, "signing_key"),
    ] {
        assert!(secret.len() >= 32, "{secret}");
        assert!(
            !stopped.stdout.contains(&secret) && !stopped.stderr.contains(&secret),
            "key material leaked into the output"
        );
    }
    assert!(
        !stopped.stdout.contains(PASSWORD) && !stopped.stderr.contains(PASSWORD),
        "the password leaked into the output"
    );
}

/// With no `--config` the server runs the built-in demo: the banner names the demo user
/// and password, and a real login for a localhost application yields a ticket that
/// validates to that user.
#[tokio::test]
async fn the_demo_mode_banner_credentials_complete_a_real_login() {
    let dir = tempfile::tempdir().unwrap();
    let app = "http://localhost:9999/app";
    let server = Server::start(dir.path(), None, &[("CAS__SERVER__BIND", "127.0.0.1:0")]).await;
    let client = http();

    let response = log_in(&client, &server, app, "casuser", "Mellon").await;
    assert_redirected_with_a_ticket_for(&client, &server, &response, app, "casuser").await;

    let stopped = server.stop().await;
    assert!(stopped.stdout.contains("DEMO MODE"), "{}", stopped.stdout);
    assert!(
        stopped.stdout.contains("`casuser`") && stopped.stdout.contains("`Mellon`"),
        "the banner names the demo credentials:\n{}",
        stopped.stdout
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the demo writes no files (ephemeral keys)"
    );
}

/// The demo has a published password, so it refuses to listen beyond loopback, and says
/// which key and which environment variable asked for it.
#[tokio::test]
async fn the_demo_mode_refuses_a_non_loopback_bind() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        None,
        &[],
        &[("CAS__SERVER__BIND", "0.0.0.0:0")],
        "",
    )
    .await;

    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("  - environment variable CAS__SERVER__BIND: key `server.bind`: "),
        "{out}"
    );
    assert!(
        out.stderr.contains("--config"),
        "it says how to do it properly: {out}"
    );
    assert!(!out.stdout.contains(LISTENING), "{out}");
}

/// `check-config` reports every problem of a broken file in one run, each line naming
/// the file and the key, with a hint; a valid file passes with exit code 0.
#[tokio::test]
async fn check_config_reports_every_problem_at_once_and_passes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "broken.toml",
        r#"[server]
bind = "127.0.0.1:0"
bnd = 1

[tickets]
st_ttl = "ten seconds"

[[services]]
id = 1
name = "Broken"
pattern = "regex:("
"#,
    );

    let out = run(dir.path(), Some(&broken), &["check-config"], &[], "").await;

    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("3 problems"), "{out}");
    let path = broken.display().to_string();
    for key in ["server.bnd", "tickets.st_ttl", "services[0].pattern"] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(&format!("key `{key}`")))
            .unwrap_or_else(|| panic!("`{key}` is not reported:\n{out}"));
        assert!(
            line.starts_with(&format!("  - {path}: key `{key}`: ")),
            "the line names the file: {line}"
        );
    }
    assert_report_lines(&out.stderr);
    assert!(out.stderr.contains("did you mean `server.bind`?"), "{out}");
    assert!(out.stderr.contains("\"PT8H\""), "{out}");
    assert!(out.stderr.contains("regular expression"), "{out}");

    let hash = hash_password(dir.path(), PASSWORD).await;
    let valid = write(dir.path(), "cas.toml", &operator_config(&hash));
    let out = run(dir.path(), Some(&valid), &["check-config"], &[], "").await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "{}: ok (1 service, 1 user, 0 LDAP sources, tickets in memory)",
            valid.display()
        )),
        "{out}"
    );
    assert!(
        !dir.path().join("tgc-keys.toml").exists(),
        "checking the config creates no key file"
    );
}

/// A value of the wrong type and a hard session limit shorter than the idle one are both
/// refused in one run, each naming its key.
#[tokio::test]
async fn a_wrong_type_and_a_hard_ttl_shorter_than_idle_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "cas.toml",
        r#"[server]
bind = "127.0.0.1:0"

[tgc]
secure = "yes"

[tickets]
tgt_idle_ttl = "9h"
"#,
    );

    let out = run(dir.path(), Some(&config), &["check-config"], &[], "").await;

    assert_eq!(out.code(), Some(1), "{out}");
    let path = config.display().to_string();
    assert!(
        out.stderr
            .contains(&format!("  - {path}: key `tgc.secure`: ")),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("  - {path}: key `tickets.tgt_hard_ttl`: ")),
        "{out}"
    );
    assert!(out.stderr.contains("tickets.tgt_idle_ttl"), "{out}");

    // The server refuses to start on the same file, with the same report.
    let serve = run(dir.path(), Some(&config), &["serve"], &[], "").await;
    assert_eq!(serve.code(), Some(1), "{serve}");
    assert_eq!(serve.stderr, out.stderr);
}

/// `keygen` prints fresh keys in config syntax: pasted into a file they make a valid
/// config that the server uses instead of generating a key file, and no two runs agree.
#[tokio::test]
async fn keygen_output_pasted_into_a_config_is_valid_and_fresh_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), None, &["keygen"], &[], "").await;
    let second = run(dir.path(), None, &["keygen"], &[], "").await;
    assert!(
        first.status.success() && second.status.success(),
        "{first}\n{second}"
    );
    for key in ["encryption_key", "signing_key", "flow_key"] {
        assert_ne!(
            toml_string(&first.stdout, key),
            toml_string(&second.stdout, key),
            "`{key}` repeats between runs"
        );
    }

    let config = write(
        dir.path(),
        "cas.toml",
        &format!("{}\n[server]\nbind = \"127.0.0.1:0\"\n", first.stdout),
    );
    let out = run(dir.path(), Some(&config), &["check-config"], &[], "").await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout.contains(": ok"), "{out}");

    let server = Server::start(dir.path(), Some(&config), &[]).await;
    let page = http().get(server.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    server.stop().await;
    assert!(
        !dir.path().join("tgc-keys.toml").exists(),
        "configured keys are used; no key file is generated"
    );
}

/// `hash-password` prints an argon2id hash of the line on stdin (a hash the server
/// accepts at login is checked in the first test) and refuses an empty password.
#[tokio::test]
async fn hash_password_prints_argon2id_and_refuses_an_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(dir.path(), PASSWORD).await;
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert_ne!(
        hash,
        hash_password(dir.path(), PASSWORD).await,
        "each hash has its own salt"
    );

    for stdin in ["", "\n", "\r\n"] {
        let out = run(dir.path(), None, &["hash-password"], &[], stdin).await;
        assert_eq!(out.code(), Some(1), "stdin {stdin:?}: {out}");
        assert!(
            out.stdout.is_empty(),
            "no hash for an empty password: {out}"
        );
        assert!(out.stderr.contains("empty"), "{out}");
    }
}

/// `check-service` shows which entry accepts a URL and by which pattern (exit 0), and
/// for a refused URL (exit 1) points at the nearest entry.
#[tokio::test]
async fn check_service_names_the_matching_entry_or_the_nearest_miss() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(dir.path(), PASSWORD).await;
    let config = write(dir.path(), "cas.toml", &operator_config(&hash));

    let out = run(
        dir.path(),
        Some(&config),
        &["check-service", SERVICE],
        &[],
        "",
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "matches service 1 \"App\" (evaluation_order 0) by pattern `{SERVICE}`"
        )),
        "{out}"
    );

    let miss = "https://app.example.com/";
    let out = run(dir.path(), Some(&config), &["check-service", miss], &[], "").await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("matches no enabled service"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("nearest: service 1 \"App\" (`{SERVICE}`)")),
        "{out}"
    );
}

/// A `--config` path that does not exist stops the server at once, naming the path.
#[tokio::test]
async fn a_missing_config_file_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join("cas.toml");

    for args in [&[][..], &["check-config"][..]] {
        let out = run(dir.path(), Some(&missing), args, &[], "").await;
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(out.stderr.contains(&missing.display().to_string()), "{out}");
        assert!(out.stderr.contains("cannot read"), "{out}");
        assert!(!out.stdout.contains(LISTENING), "{out}");
    }
}

/// A file that is not TOML at all is reported with its path, and the parser's excerpt
/// stays inside the problem list.
#[tokio::test]
async fn a_file_that_is_not_toml_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "cas.toml", "[server\nbind = 1\n");

    let out = run(dir.path(), Some(&config), &["check-config"], &[], "").await;

    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains(&format!("  - {}: not valid TOML", config.display())),
        "{out}"
    );
    assert_report_lines(&out.stderr);
}

/// A supervisor may send SIGTERM as soon as the server says it is listening; that must
/// already be a graceful shutdown, not the default signal death. Repeated because the
/// window is short.
#[tokio::test]
async fn sigterm_right_after_the_listening_line_is_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..10 {
        let server = Server::start(dir.path(), None, &[("CAS__SERVER__BIND", "127.0.0.1:0")]).await;
        server.stop().await;
    }
}

/// The key `cas-server keygen` prints for ENC(...) values.
async fn config_key(dir: &Path) -> String {
    let out = run(dir, None, &["keygen"], &[], "").await;
    assert!(out.status.success(), "{out}");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("# CAS_CONFIG_KEY="))
        .expect("keygen prints a CAS_CONFIG_KEY")
        .to_owned()
}

/// Secrets in config: a value written ENC(...) by `encrypt-value` is decrypted at startup
/// with CAS_CONFIG_KEY and works; a wrong or missing key stops startup naming the key
/// path, and neither the secret nor the key appears in any output.
#[tokio::test]
async fn encrypted_config_values_round_trip_and_a_wrong_key_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(dir.path(), PASSWORD).await;
    let key = config_key(dir.path()).await;
    let sealed = run(
        dir.path(),
        None,
        &["encrypt-value"],
        &[("CAS_CONFIG_KEY", &key)],
        &format!("{hash}\n"),
    )
    .await;
    assert!(sealed.status.success(), "{sealed}");
    let sealed = sealed.stdout.trim().to_owned();
    assert!(
        sealed.starts_with("ENC(") && !sealed.contains(&hash),
        "{sealed}"
    );
    let config = write(dir.path(), "cas.toml", &operator_config(&sealed));

    let server = Server::start(dir.path(), Some(&config), &[("CAS_CONFIG_KEY", &key)]).await;
    let client = http();
    let response = log_in(&client, &server, SERVICE, "alice", PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "the decrypted hash verifies"
    );
    let stopped = server.stop().await;
    assert!(!stopped.stdout.contains(&hash) && !stopped.stderr.contains(&hash));
    assert!(!stopped.stdout.contains(&key) && !stopped.stderr.contains(&key));

    let other_key = config_key(dir.path()).await;
    for env in [vec![("CAS_CONFIG_KEY", other_key.as_str())], vec![]] {
        let out = run(dir.path(), Some(&config), &["check-config"], &env, "").await;
        assert_eq!(out.code(), Some(1), "{out}");
        assert!(out.stderr.contains("users[0].password_hash"), "{out}");
        assert!(out.stderr.contains("CAS_CONFIG_KEY"), "{out}");
        for secret in [hash.as_str(), key.as_str(), other_key.as_str()] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{out}"
            );
        }
    }
    let no_key = run(dir.path(), None, &["encrypt-value"], &[], "x\n").await;
    assert_eq!(no_key.code(), Some(1));
    assert!(no_key.stderr.contains("CAS_CONFIG_KEY"), "{no_key}");
}

/// The real binary with `[tickets.memory] snapshot_file`: SIGTERM writes the snapshot,
/// the next start restores it (the SSO cookie still works) and deletes it.
#[tokio::test]
async fn sigterm_saves_the_snapshot_and_the_next_start_restores_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let hash = hash_password(dir.path(), PASSWORD).await;
    let key = cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
    let text = format!(
        "{}\n[tgc]\nsecure = false\n[tickets]\nkey = \"{key}\"\n[tickets.memory]\nsnapshot_file = \"tickets.snapshot\"\n",
        operator_config(&hash)
    );
    let config = write(dir.path(), "cas.toml", &text);
    let snapshot = dir.path().join("tickets.snapshot");
    let client = http();

    let server = Server::start(dir.path(), Some(&config), &[]).await;
    let response = log_in(&client, &server, SERVICE, "alice", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let stopped = server.stop().await;
    assert!(
        stopped.stderr.contains("saved the ticket snapshot"),
        "{}",
        stopped.stderr
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&snapshot).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let server = Server::start(dir.path(), Some(&config), &[]).await;
    assert!(!snapshot.exists(), "deleted once restored");
    let sso = client
        .get(server.url("/login"))
        .query(&[("service", SERVICE)])
        .send()
        .await
        .unwrap();
    assert_eq!(sso.status(), StatusCode::FOUND, "the session came back");
    assert_redirected_with_a_ticket_for(&client, &server, &sso, SERVICE, "alice").await;
    server.stop().await;
}

/// `cas-server check-config --probe` on `config`.
async fn probe(dir: &Path, config: &Path) -> Output {
    run(dir, Some(config), &["check-config", "--probe"], &[], "").await
}

/// `check-config --probe` pings the Redis ticket store with the configured credentials.
#[tokio::test]
async fn check_config_probe_reaches_the_redis_store() {
    let redis = crate::support::redis::RedisServer::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::support::ClusterKeys::generate();
    let config_for = |url: &str| {
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[tgc]\n{}[login]\nflow_key = \"{}\"\n[tickets]\nstore = \"redis\"\nkey = \"{}\"\n[tickets.redis]\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n",
            keys.tgc, keys.flow, keys.registry
        )
    };
    let good = write(dir.path(), "good.toml", &config_for(&redis.url()));
    let out = probe(dir.path(), &good).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout.contains("tickets in redis") && out.stdout.contains("reachable"),
        "{out}"
    );

    assert!(out.stdout.contains("maxmemory-policy noeviction"), "{out}");
    assert!(out.stdout.contains("no node has recorded"), "{out}");
    let recorded: Vec<String> = redis.keys("*keycheck").await;
    assert!(
        recorded.is_empty(),
        "the probe records no key: {recorded:?}"
    );
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg("cas:keycheck")
                .arg("another key's value"),
        )
        .await;
    let out = probe(dir.path(), &good).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("another tickets.key"), "{out}");

    let evicting = crate::support::redis::RedisServer::start_with(
        false,
        &["--maxmemory-policy", "allkeys-lru"],
    )
    .await;
    let lru = write(dir.path(), "lru.toml", &config_for(&evicting.url()));
    let out = probe(dir.path(), &lru).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains("allkeys-lru") && out.stderr.contains("noeviction"),
        "{out}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = write(
        dir.path(),
        "bad.toml",
        &config_for(&format!("redis://127.0.0.1:{port}")),
    );
    let out = probe(dir.path(), &bad).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stderr.contains("redis"), "{out}");
}
