//! Loading as a whole: the layers, the demo, reports spanning sections, secrets in
//! messages, and `config/example.toml`. Each section's own mistakes are tested in its
//! file; the helpers here are shared with those tests.

use super::*;

/// An empty configuration text named `test.toml`.
pub(super) const TEXT: Source<'static> = Source::Text {
    name: "test.toml",
    text: "",
};

/// A registry and login-flow key (random, as `keygen` makes them).
pub(super) const KEY: &str = "EUK4Ne-6M6PvacShpsIXLRpHcqAmoTG9UVMt58Raw2Q";

/// `text` loaded as a file named `test.toml`, with no environment.
pub(super) fn load_text(text: &str) -> Result<Settings, ConfigError> {
    load_with(
        Source::Text {
            name: "test.toml",
            text,
        },
        &[],
    )
}

/// `source` loaded with the environment variables `env`.
pub(super) fn load_with(source: Source<'_>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_with_env(source, &env)
}

/// The keys of a report's problems, in order.
pub(super) fn keys(e: &ConfigError) -> Vec<&str> {
    e.problems.iter().map(|p| p.key.as_str()).collect()
}

/// Asserts that the report has a line naming `test.toml` and `key`, saying `words`.
pub(super) fn assert_problem(e: &ConfigError, key: &str, words: &str) {
    let text = e.to_string();
    let start = format!("  - test.toml: key `{key}`: ");
    assert!(
        text.lines()
            .any(|line| line.starts_with(&start) && line.contains(words)),
        "no line `{start}…{words}…` in:\n{text}"
    );
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
    let s = load_with(Source::Demo, &[]).unwrap();
    assert!(s.is_demo());
    assert_eq!(s.users.len(), 1);
    assert!(!s.services.is_empty());
    assert!(matches!(s.tgc.keys, TgcKeySource::Ephemeral));
}

#[test]
fn the_demo_config_refuses_a_public_bind() {
    let e = load_with(Source::Demo, &[("CAS__SERVER__BIND", "0.0.0.0:8080")]).unwrap_err();
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
fn an_unknown_section_gets_a_hint() {
    let e = load_text("[tiket]\nst_ttl = \"5s\"\n").unwrap_err();
    assert_eq!(keys(&e), ["tiket"]);
    assert_problem(&e, "tiket", "unknown section; did you mean `tickets`?");
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
    assert_problem(
        &e,
        "tgc.secure",
        "invalid type: string, expected a boolean; see config/example.toml",
    );
}

#[test]
fn environment_overrides_the_file() {
    let env = [
        ("CAS__TICKETS__ST_TTL", "PT30S"),
        ("CAS__TGC__PIN_TO_SESSION", "false"),
    ];
    let s = load_with(
        Source::Text {
            name: "t",
            text: "[tickets]\nst_ttl = \"5s\"\n",
        },
        &env,
    )
    .unwrap();
    assert_eq!(s.tickets.st_ttl, std::time::Duration::from_secs(30));
    assert!(!s.tgc.pin_to_session);
    let e = load_with(TEXT, &[("CAS__TICKETS__BOGUS", "1")]).unwrap_err();
    assert_eq!(
        e.problems[0].origin,
        "environment variable CAS__TICKETS__BOGUS"
    );
}

/// Numbers, booleans and lists from the environment are read as their fields' types;
/// text (a password that looks like a number) stays as written.
#[test]
fn environment_text_is_read_as_each_fields_type() {
    let s = load_with(
        TEXT,
        &[
            ("CAS__SERVER__MAX_CONNECTIONS", "64"),
            ("CAS__SERVER__TRUSTED_PROXIES", "10.0.0.1,10.0.0.0/8"),
            ("CAS__TGC__SECURE", "TRUE"),
            ("CAS__TGC__NAME", "1234"),
        ],
    )
    .unwrap();
    assert_eq!(s.server.max_connections, 64);
    assert_eq!(s.server.trusted_proxies.len(), 2);
    assert!(s.tgc.secure);
    assert_eq!(s.tgc.name, "1234");

    let e = load_with(TEXT, &[("CAS__SERVER__MAX_CONNECTIONS", "many")]).unwrap_err();
    assert_eq!(keys(&e), ["server.max_connections"]);
    assert_eq!(
        e.problems[0].origin,
        "environment variable CAS__SERVER__MAX_CONNECTIONS"
    );
    assert!(!e.to_string().contains("many"), "{e}");
}

#[test]
fn file_source_names_the_file_and_places_the_key_file_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cas.toml");
    std::fs::write(&path, "[server]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let s = load_with(Source::File(&path), &[]).unwrap();
    match s.tgc.keys {
        TgcKeySource::KeyFile(p) => assert_eq!(p, dir.path().join("tgc-keys.toml")),
        other => panic!("unexpected {other:?}"),
    }
    std::fs::write(&path, "[tickets]\nst_ttl = 10\n").unwrap();
    let e = load_with(Source::File(&path), &[]).unwrap_err();
    assert_eq!(e.problems[0].origin, path.display().to_string());
    let missing = dir.path().join("missing.toml");
    let e = load_with(Source::File(&missing), &[]).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
    std::fs::write(&path, "[server\n").unwrap();
    let e = load_with(Source::File(&path), &[]).unwrap_err();
    assert!(e.to_string().contains("not valid TOML"), "{e}");
}

/// Lists the key paths of the raw structs (array entries without an index), by running
/// [`read`] with a reader that deserializes each section from a probe.
struct KeyLister(Vec<String>);

impl Reader for KeyLister {
    fn section<S: Section>(&mut self) -> Option<S::Checked> {
        let _ = S::deserialize(Probe {
            path: S::NAME.to_owned(),
            keys: &mut self.0,
        });
        None
    }

    fn across(&mut self, _: impl FnOnce(&mut Scope<'_>)) {}
}

/// Every number is zero to the probe.
macro_rules! probe_numbers {
    ($($method:ident)*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
            self.deserialize_u64(v)
        }
    )*};
}

/// A deserializer that has every field, so that serde walks the whole struct.
struct Probe<'k> {
    path: String,
    keys: &'k mut Vec<String>,
}

impl<'de> serde::Deserializer<'de> for Probe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_str("")
    }

    fn deserialize_bool<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_bool(false)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_seq(serde::de::value::SeqDeserializer::new(std::iter::once(
            self,
        )))
    }

    fn deserialize_map<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_map(serde::de::value::MapDeserializer::new(std::iter::empty::<(
            String,
            String,
        )>()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Self::Error> {
        struct Fields<'a, 'k> {
            fields: std::slice::Iter<'static, &'static str>,
            probe: &'a mut Probe<'k>,
            current: String,
        }
        impl<'de> serde::de::MapAccess<'de> for Fields<'_, '_> {
            type Error = serde::de::value::Error;
            fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
                &mut self,
                seed: K,
            ) -> Result<Option<K::Value>, Self::Error> {
                let Some(field) = self.fields.next() else {
                    return Ok(None);
                };
                self.current = format!("{}.{field}", self.probe.path);
                self.probe.keys.push(self.current.clone());
                seed.deserialize(serde::de::IntoDeserializer::into_deserializer(*field))
                    .map(Some)
            }
            fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
                &mut self,
                seed: T,
            ) -> Result<T::Value, Self::Error> {
                seed.deserialize(Probe {
                    path: self.current.clone(),
                    keys: &mut *self.probe.keys,
                })
            }
        }
        let mut probe = self;
        v.visit_map(Fields {
            fields: fields.iter(),
            probe: &mut probe,
            current: String::new(),
        })
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Self::Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_u64<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        v.visit_u64(0)
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct tuple tuple_struct enum identifier
        ignored_any
    }

    probe_numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u128 deserialize_f32
        deserialize_f64
    }
}

impl<'de, 'k> serde::de::IntoDeserializer<'de, serde::de::value::Error> for Probe<'k> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

#[test]
fn the_example_config_loads_and_documents_every_key() {
    const EXAMPLE: &str = include_str!("../../config/example.toml");
    load_text(EXAMPLE).unwrap();
    let mut lister = KeyLister(Vec::new());
    assert!(read(&mut lister, Origin::Demo).is_none());
    assert!(lister.0.len() > 100, "{:?}", lister.0);
    for key in lister.0 {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            EXAMPLE.contains(&format!("{leaf} =")) || EXAMPLE.contains(&format!("[{key}]")),
            "config/example.toml does not document `{key}`"
        );
    }
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
    let text = format!("[server]\nbind = \"{sealed}\"\n");
    let e = load_with(
        Source::Text {
            name: "test.toml",
            text: &text,
        },
        &[(secrets::KEY_VARIABLE, &key)],
    )
    .unwrap_err();
    assert_eq!(keys(&e), vec!["server.bind"], "{e}");
    assert!(!e.to_string().contains("s3cretpw"), "{e}");
    assert!(e.to_string().contains("(encrypted value)"), "{e}");
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
    let s = load_with(
        Source::Text {
            name: "test.toml",
            text: &redis,
        },
        &[("CAS__TICKETS__REDIS__PASSWORD", "007")],
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
