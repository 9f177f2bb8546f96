use super::*;

fn load_text(text: &str) -> Result<Settings, ConfigError> {
    load_with_env(
        Source::Text {
            name: "test.toml",
            text,
        },
        &HashMap::new(),
    )
}

fn keys(e: &ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn defaults_alone_load() {
    let s = load_text("").unwrap();
    assert_eq!(s.server.base_path, "/cas");
    assert_eq!(s.tickets.st_ttl, std::time::Duration::from_secs(10));
    assert_eq!(s.tickets.tgt_idle_ttl, std::time::Duration::from_secs(7200));
    assert!(s.tgc.secure);
    assert!(s.users.is_empty() && s.services.is_empty());
}

#[test]
fn the_demo_config_loads_and_has_a_user_and_services() {
    let s = load_with_env(Source::Demo, &HashMap::new()).unwrap();
    assert!(s.is_demo());
    assert_eq!(s.users.len(), 1);
    assert!(!s.services.is_empty());
    assert!(matches!(s.tgc.keys, TgcKeySource::Ephemeral));
}

#[test]
fn the_demo_config_refuses_a_public_bind() {
    let env = HashMap::from([("CAS__SERVER__BIND".to_owned(), "0.0.0.0:8080".to_owned())]);
    let e = load_with_env(Source::Demo, &env).unwrap_err();
    // The demo's insecure cookie is refused off loopback too.
    assert_eq!(keys(&e), vec!["server.bind", "tgc.secure"]);
    assert!(e.problems[0].origin.contains("CAS__SERVER__BIND"));
    assert!(e.problems[0].message.contains("--config"));
}

#[test]
fn every_problem_is_reported_at_once_with_key_and_fix() {
    let e = load_text(
        r#"
        [server]
        bnd = "x"
        [tickets]
        st_ttl = "ten seconds"
        tgt_idle_ttl = "9h"
        [[services]]
        id = 1
        name = "A"
        pattern = "regex:(unclosed"
        [[services]]
        id = 1
        name = "B"
        pattern = "prefix:https://b.example"
        colour = "red"
        [nonsense]
        a = 1
        "#,
    )
    .unwrap_err();
    let k = keys(&e);
    for expected in [
        "server.bnd",
        "tickets.st_ttl",
        "tickets.tgt_hard_ttl",
        "services[0].pattern",
        "services[1].id",
        "services[1].pattern",
        "services[1].colour",
        "nonsense",
    ] {
        assert!(k.contains(&expected), "{expected} missing from {k:?}\n{e}");
    }
    let text = e.to_string();
    assert!(
        text.contains("test.toml: key `server.bnd`: unknown key; did you mean `server.bind`?"),
        "{text}"
    );
    assert!(text.contains("\"PT8H\""), "{text}");
}

#[test]
fn wrong_types_name_the_key() {
    let e =
        load_text("[tgc]\nsecure = \"yes\"\n[authn]\nmax_concurrent_verifications = \"many\"\n")
            .unwrap_err();
    assert_eq!(
        keys(&e),
        vec!["tgc.secure", "authn.max_concurrent_verifications"],
        "{e}"
    );
}

#[test]
fn keys_of_the_wrong_length_are_refused() {
    let e = load_text("[tgc]\nencryption_key = \"AAAA\"\nsigning_key = \"AAAA\"\n").unwrap_err();
    assert!(e.to_string().contains("must be 32 bytes"), "{e}");
    let e = load_text("[tgc]\nencryption_key = \"AAAA\"\n").unwrap_err();
    assert!(e.to_string().contains("set both"), "{e}");
}

#[test]
fn environment_overrides_the_file() {
    let env = HashMap::from([
        ("CAS__TICKETS__ST_TTL".to_owned(), "PT30S".to_owned()),
        ("CAS__TGC__PIN_TO_SESSION".to_owned(), "false".to_owned()),
    ]);
    let s = load_with_env(
        Source::Text {
            name: "t",
            text: "[tickets]\nst_ttl = \"5s\"\n",
        },
        &env,
    )
    .unwrap();
    assert_eq!(s.tickets.st_ttl, std::time::Duration::from_secs(30));
    assert!(!s.tgc.pin_to_session);
    let env = HashMap::from([("CAS__TICKETS__BOGUS".to_owned(), "1".to_owned())]);
    let e = load_with_env(
        Source::Text {
            name: "t",
            text: "",
        },
        &env,
    )
    .unwrap_err();
    assert_eq!(
        e.problems[0].origin,
        "environment variable CAS__TICKETS__BOGUS"
    );
}

#[test]
fn insecure_cookie_needs_a_loopback_bind() {
    let e = load_text(
        "[server]\nbind = \"0.0.0.0:8080\"\nallow_plain_http = true\n[tgc]\nsecure = false\n",
    )
    .unwrap_err();
    assert_eq!(keys(&e), vec!["tgc.secure"]);
    assert!(load_text("[tgc]\nsecure = false\n").is_ok());
}

#[test]
fn file_source_names_the_file_and_places_the_key_file_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.toml");
    std::fs::write(&path, "[server]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let s = load_with_env(Source::File(&path), &HashMap::new()).unwrap();
    match s.tgc.keys {
        TgcKeySource::KeyFile(p) => assert_eq!(p, dir.path().join("tgc-keys.toml")),
        other => panic!("unexpected {other:?}"),
    }
    std::fs::write(&path, "[tickets]\nst_ttl = 10\n").unwrap();
    let e = load_with_env(Source::File(&path), &HashMap::new()).unwrap_err();
    assert_eq!(e.problems[0].origin, path.display().to_string());
    let missing = dir.path().join("missing.toml");
    let e = load_with_env(Source::File(&missing), &HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
    std::fs::write(&path, "[server\n").unwrap();
    let e = load_with_env(Source::File(&path), &HashMap::new()).unwrap_err();
    assert!(e.to_string().contains("not valid TOML"), "{e}");
}

#[test]
fn users_need_argon2id_hashes_and_attributes_may_be_lists() {
    let hash = crate::auth::hash_password("pw").unwrap();
    let s = load_text(&format!(
        "[[users]]\nusername = \"a\"\npassword_hash = \"{hash}\"\nattributes = {{ mail = \"a@x\", memberOf = [\"g1\", \"g2\"] }}\n"
    ))
    .unwrap();
    assert_eq!(s.users[0].attributes["memberOf"], vec!["g1", "g2"]);
    assert_eq!(s.users[0].attributes["mail"], vec!["a@x"]);
    let e = load_text("[[users]]\nusername = \"a\"\npassword_hash = \"secret\"\n").unwrap_err();
    assert_eq!(keys(&e), vec!["users[0].password_hash"]);
    assert!(e.to_string().contains("hash-password"));
}

#[test]
fn the_example_config_loads_and_documents_every_key() {
    const EXAMPLE: &str = include_str!("../../config/example.toml");
    load_text(EXAMPLE).unwrap();
    for key in known_keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            EXAMPLE.contains(&format!("{leaf} =")) || EXAMPLE.contains(&format!("[{key}]")),
            "config/example.toml does not document `{key}`"
        );
    }
}

/// The commented-out `[[services]]` example, uncommented, is a valid service entry: an
/// operator copying it must not meet duplicate keys or stale names.
#[test]
fn the_commented_service_example_loads_once_uncommented() {
    const EXAMPLE: &str = include_str!("../../config/example.toml");
    let block = &EXAMPLE[EXAMPLE.find("# [[services]]").unwrap()..];
    let service: String = block
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter(|l| !l.starts_with("# #") && l.len() > 2)
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let settings = load_text(&service).unwrap_or_else(|e| panic!("{e}\n{service}"));
    let entry = settings.services.iter().find(|s| s.name == "Staff portal");
    assert!(entry.is_some(), "{service}");
}

#[test]
fn http_client_mistakes_are_reported_together() {
    let e = load_text(
        "[http_client]\ntrust_store = \"/nonexistent/ca.pem\"\nproxy = \"no-port\"\nauthority_pattern = \"(\"\nread_timeout = \"soon\"\ndefault_headers = { \"Bad Header\" = \"x\" }\n",
    )
    .unwrap_err();
    let k = keys(&e);
    for expected in [
        "http_client.trust_store",
        "http_client.proxy",
        "http_client.authority_pattern",
        "http_client.read_timeout",
        "http_client.default_headers.Bad Header",
    ] {
        assert!(k.contains(&expected), "{expected} missing: {e}");
    }
}

#[test]
fn a_trust_store_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let e = load_text(&format!(
        "[http_client]\ntrust_store = \"{}\"\n",
        bad.display()
    ))
    .unwrap_err();
    assert_eq!(keys(&e), vec!["http_client.trust_store"]);
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}

#[test]
fn service_proxy_policies_are_parsed_and_checked() {
    let s = load_text(
        "[[services]]\nid = 1\nname = \"Portal\"\npattern = \"https://p.example.org/\"\nproxy_callback = \"prefix:https://p.example.org/cb/\"\naccept_proxy_tickets = true\n",
    )
    .unwrap();
    assert!(s.services[0].accept_proxy_tickets);
    assert!(
        s.services[0]
            .proxy_callback
            .as_ref()
            .unwrap()
            .matches("https://p.example.org/cb/x")
    );
    let e = load_text(
        "[[services]]\nid = 1\nname = \"Portal\"\npattern = \"https://p.example.org/\"\nproxy_callback = \"regex:(\"\n[tickets]\npt_ttl = \"1h\"\n",
    )
    .unwrap_err();
    assert_eq!(
        keys(&e),
        vec!["tickets.pt_ttl", "services[0].proxy_callback"],
        "{e}"
    );
}

#[test]
fn verification_nice_is_a_unix_nice_increment() {
    let e = load_text("[authn]\nverification_nice = 20\n").unwrap_err();
    assert_eq!(keys(&e), vec!["authn.verification_nice"], "{e}");
    let e = load_text("[authn]\nverification_nice = -1\n").unwrap_err();
    assert_eq!(keys(&e), vec!["authn.verification_nice"], "{e}");
    assert_eq!(load_text("").unwrap().authn.verification_nice, 10);
}

#[test]
fn absurd_sizes_and_durations_are_refused_not_obeyed() {
    let e = load_text(
        "[server]\nmax_connections = 9000000000000000000\n\
         [throttle]\nmax_entries = 100000000\n\
         [authn]\nmax_concurrent_verifications = 4000000000\n\
         [tickets]\ntgt_hard_ttl = \"100000y\"\n\
         [http_client]\nconnect_timeout = \"500000000000y\"\n",
    )
    .unwrap_err();
    assert_eq!(
        keys(&e),
        vec![
            "server.max_connections",
            "throttle.max_entries",
            "tickets.tgt_hard_ttl",
            "http_client.connect_timeout",
            "authn.max_concurrent_verifications",
        ],
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("between 1 and 1000000"), "{text}");
    assert!(text.contains("at most 10 years"), "{text}");
}

#[test]
fn a_decrypted_value_is_never_quoted_in_an_error() {
    let key = crate::crypto::b64url_encode(&crate::crypto::random_bytes::<32>());
    let sealer = secrets::parse_key(&key).unwrap();
    let sealed = secrets::encrypt(&sealer, "s3cretpw");
    let env = HashMap::from([(secrets::KEY_VARIABLE.to_owned(), key)]);
    let text = format!("[server]\nbind = \"{sealed}\"\n");
    let e = load_with_env(
        Source::Text {
            name: "test.toml",
            text: &text,
        },
        &env,
    )
    .unwrap_err();
    assert_eq!(keys(&e), vec!["server.bind"], "{e}");
    assert!(!e.to_string().contains("s3cretpw"), "{e}");
    assert!(e.to_string().contains("(encrypted value)"), "{e}");
}

#[test]
fn plain_ldap_is_a_warning_and_a_ca_file_without_tls_a_mistake() {
    let ldap = "[[authn.ldap]]\nname = \"corp\"\nurl = \"ldap://ldap.example.org\"\nbase_dn = \"dc=example,dc=org\"\n";
    let settings = load_text(ldap).unwrap();
    let warnings = settings.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("`corp` has no TLS"), "{warnings:?}");

    let e = load_text(&format!("{ldap}ca_file = \"/nonexistent/ca.pem\"\n")).unwrap_err();
    assert!(
        e.to_string().contains("ca_file`: is only used over TLS"),
        "{e}"
    );
}

#[test]
fn outbound_header_values_stay_out_of_debug_output() {
    let s = load_text("[http_client]\ndefault_headers = { Authorization = \"Bearer s3cret\" }\n")
        .unwrap();
    let printed = format!("{:?}", s.http_client);
    assert!(
        printed.contains("Authorization") && !printed.contains("s3cret"),
        "{printed}"
    );
}

#[test]
fn nested_keys_are_named_exactly_and_get_hints() {
    let e = load_text(
        "[[authn.ldap]]\nname = \"corp\"\nurl = \"ldaps://ldap.example.org\"\nbase_dn = \"dc=x\"\nbind_pasword = \"x\"\n\
         [server.tls]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\nextra = 1\n",
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "`authn.ldap[0].bind_pasword`: unknown key; did you mean `authn.ldap[0].bind_password`?"
        ),
        "{text}"
    );
    assert!(text.contains("`server.tls.extra`: unknown key"), "{text}");

    let enc = crate::crypto::b64url_encode(&crate::crypto::random_bytes::<32>());
    let sign = crate::crypto::b64url_encode(&crate::crypto::random_bytes::<64>());
    let e = load_text(&format!(
        "[tgc]\nencryption_key = \"{enc}\"\nsigning_key = \"{sign}\"\n\
         [[tgc.previous_keys]]\nencryption_key = \"short\"\nsigning_key = \"{sign}\"\n"
    ))
    .unwrap_err();
    assert_eq!(keys(&e), vec!["tgc.previous_keys[0].encryption_key"], "{e}");
}

/// A registry and login-flow key (random, as `keygen` makes them).
const KEY: &str = "EUK4Ne-6M6PvacShpsIXLRpHcqAmoTG9UVMt58Raw2Q";

#[test]
fn the_redis_store_needs_shared_keys_configured() {
    let e = load_text("[tickets]\nstore = \"redis\"\n").unwrap_err();
    assert_eq!(
        keys(&e),
        vec!["tickets.key", "tgc.encryption_key", "login.flow_key"]
    );
    assert!(e.problems[0].message.contains("cas-server keygen"));
    assert!(e.problems[1].message.contains("identical on every node"));

    let tgc = crate::tgc::TgcKeys::generate().to_config();
    let s = load_text(&format!(
        "[tgc]\n{tgc}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"redis://cache.internal:6380/2\"\npassword = \"s3cret\"\npool_size = 8\n"
    ))
    .unwrap();
    let TicketStore::Redis(redis) = &s.tickets.store else {
        panic!("redis store");
    };
    assert_eq!(redis.pool_size, 8);
    assert!(redis.encrypt, "encrypted at rest by default");
    assert_eq!(redis.key_prefix, "cas:");
    assert!(
        !format!("{s:?}").contains("s3cret"),
        "the password never prints"
    );
}

#[test]
fn redis_mistakes_are_reported_without_quoting_the_url() {
    let e = load_text(
        "[tickets]\nstore = \"memcached\"\nkey = \"short\"\n[tickets.redis]\nurl = \"http://user:hunter2@x\"\npool_size = 0\nconect_timeout = \"1s\"\n"
    )
    .unwrap_err();
    let k = keys(&e);
    assert!(
        k.contains(&"tickets.key") && k.contains(&"tickets.store"),
        "{k:?}"
    );
    assert!(k.contains(&"tickets.redis.conect_timeout"), "{k:?}");
    let e = load_text(&format!(
        "[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"http://user:hunter2@x\"\npool_size = 0\nca_file = \"ca.pem\"\n"
    ))
    .unwrap_err();
    let k = keys(&e);
    assert!(
        k.contains(&"tickets.redis.url") && k.contains(&"tickets.redis.pool_size"),
        "{k:?}"
    );
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = load_text(&format!(
        "[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"redis://x\"\nca_file = \"ca.pem\"\n"
    ))
    .unwrap_err();
    assert!(keys(&e).contains(&"tickets.redis.ca_file"));
}

#[test]
fn a_snapshot_needs_a_key_and_the_memory_store() {
    let e = load_text("[tickets.memory]\nsnapshot_file = \"/var/lib/cas/tickets\"\n").unwrap_err();
    assert_eq!(keys(&e), vec!["tickets.key"]);
    assert!(e.problems[0].message.contains("snapshot"));
    let s = load_text(&format!(
        "[tickets]\nkey = \"{KEY}\"\n[tickets.memory]\nsnapshot_file = \"/var/lib/cas/tickets\"\n"
    ))
    .unwrap();
    assert_eq!(
        s.tickets.snapshot_file.as_deref(),
        Some(std::path::Path::new("/var/lib/cas/tickets"))
    );
    assert!(matches!(s.tickets.store, TicketStore::Memory));
}

#[test]
fn redis_urls_prefixes_and_timeouts_are_checked() {
    let base = |redis: &str| {
        format!(
            "[tgc]\n{}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\n{redis}",
            crate::tgc::TgcKeys::generate().to_config()
        )
    };
    for (redis, key) in [
        (
            "url = \"rediss://r.internal#insecure\"\n",
            "tickets.redis.url",
        ),
        (
            "url = \"redis://r.internal/?protocol=resp3\"\n",
            "tickets.redis.url",
        ),
        ("key_prefix = \"\"\n", "tickets.redis.key_prefix"),
        ("key_prefix = \"cas:*\"\n", "tickets.redis.key_prefix"),
        (
            "command_timeout = \"1m\"\n",
            "tickets.redis.command_timeout",
        ),
    ] {
        let e = load_text(&base(redis)).unwrap_err();
        assert_eq!(keys(&e), vec![key], "{redis}");
    }
    let remote = load_text(&base("url = \"redis://r.internal:6379\"\n")).unwrap();
    assert!(
        remote.warnings().iter().any(|w| w.contains("rediss://")),
        "{:?}",
        remote.warnings()
    );
    let local = load_text(&base("url = \"redis://127.0.0.1:6379\"\n")).unwrap();
    assert!(local.warnings().is_empty(), "{:?}", local.warnings());
    let plain = load_text(&base("encrypt = false\n")).unwrap();
    assert!(
        plain
            .warnings()
            .iter()
            .any(|w| w.contains("encrypt is off"))
    );
}

#[test]
fn a_redis_node_needs_an_existing_tgc_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.toml");
    std::fs::write(
        &path,
        format!("[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n"),
    )
    .unwrap();
    let e = load_with_env(Source::File(&path), &HashMap::new()).unwrap_err();
    assert_eq!(keys(&e), vec!["tgc.key_file"]);
    assert!(e.problems[0].message.contains("does not exist"), "{e}");

    std::fs::write(
        dir.path().join("tgc-keys.toml"),
        crate::tgc::TgcKeys::generate().to_config(),
    )
    .unwrap();
    let s = load_with_env(Source::File(&path), &HashMap::new()).unwrap();
    assert!(matches!(s.tgc.keys, TgcKeySource::KeyFile(_)));
}

/// Found in review: secrets reached messages through serde's type errors, TOML excerpts
/// and proxy values, and numeric-looking passwords from the environment were refused.
#[test]
fn mistakes_never_print_the_value_of_a_secret() {
    let ldap = "[[authn.ldap]]\nname = \"dir\"\nurl = \"ldaps://ldap.example.org\"\nbase_dn = \"dc=example,dc=org\"\nbind_dn = \"cn=cas\"\n";
    let e = load_text(&format!("{ldap}bind_password = 987654321\n")).unwrap_err();
    assert_eq!(keys(&e), vec!["authn.ldap[0].bind_password"], "{e}");
    assert!(!e.to_string().contains("987654321"), "{e}");

    let e = load_text("[tickets]\nkey = s3cretvalue\n").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("line 2"), "{text}");
    assert!(!text.contains("s3cretvalue"), "{text}");

    let e =
        load_text("[http_client]\nproxy = \"user:hunter22@proxy.example.org:3128\"\n").unwrap_err();
    assert_eq!(keys(&e), vec!["http_client.proxy"]);
    assert!(!e.to_string().contains("hunter22"), "{e}");

    let e = load_text(&format!("{ldap}bind_password = \"\"\n")).unwrap_err();
    assert_eq!(keys(&e), vec!["authn.ldap[0].bind_password"], "{e}");

    let tgc = crate::tgc::TgcKeys::generate().to_config();
    let redis = format!(
        "[tgc]\n{tgc}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n"
    );
    let env = HashMap::from([("CAS__TICKETS__REDIS__PASSWORD".to_owned(), "007".to_owned())]);
    let s = load_with_env(
        Source::Text {
            name: "test.toml",
            text: &redis,
        },
        &env,
    )
    .unwrap();
    let TicketStore::Redis(options) = &s.tickets.store else {
        panic!("redis");
    };
    assert_eq!(
        options.password.as_ref().map(|p| p.expose().as_str()),
        Some("007"),
        "kept as written"
    );
}

#[test]
fn list_entries_and_nested_tables_are_named_and_hinted() {
    let e = load_text(
        "[[authn.ldap]]\nname = \"dir\"\nurl = \"ldaps://ldap.example.org\"\nbase_dn = \"dc=x\"\npool_size = \"big\"\n",
    )
    .unwrap_err();
    assert_eq!(keys(&e), vec!["authn.ldap[0].pool_size"], "{e}");
    assert!(!e.to_string().contains("\"big\""), "{e}");

    let e = load_text("[tickets.redis]\npool_sise = 3\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("did you mean `tickets.redis.pool_size`?"),
        "{e}"
    );

    let tgc = crate::tgc::TgcKeys::generate().to_config();
    let e = load_text(&format!(
        "[tgc]\n{tgc}[login]\nflow_key = \"{KEY}\"\n[tickets]\nstore = \"redis\"\nkey = \"{KEY}\"\n[tickets.redis]\nurl = \"redis://cache.internal:6379/abc\"\n"
    ))
    .unwrap_err();
    assert_eq!(keys(&e), vec!["tickets.redis.url"], "{e}");
}

/// Security review (issue 13, item 5): a regex whose host part can leave the host loads,
/// with a warning naming the entry (at startup and in `check-config`).
#[test]
fn a_regex_with_a_loose_host_part_is_a_warning() {
    let settings = load_text(
        "[[services]]\nid = 1\nname = \"Sloppy\"\npattern = 'regex:https://.*\\.sloppy\\.example\\.org/.*'\n\
         [[services]]\nid = 2\nname = \"Tight\"\npattern = 'regex:https://[a-z0-9-]+\\.tight\\.example\\.org/.*'\n\
         proxy_callback = 'regex:https://[^/]+\\.tight\\.example\\.org/cb'\n",
    )
    .unwrap();
    let warnings = settings.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("services[0].pattern (`Sloppy`)"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("services[1].proxy_callback (`Tight`)"),
        "{warnings:?}"
    );
}
