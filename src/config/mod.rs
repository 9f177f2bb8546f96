//! Configuration: embedded defaults, then the operator's TOML file (or the embedded demo
//! config), then environment variables `CAS__SECTION__KEY`, merged by the `config` crate.
//!
//! Loading never stops at the first mistake: every unknown key, wrong type, bad duration,
//! invalid pattern and impossible combination is collected into one [`ConfigError`] whose
//! lines name where the value came from (file or environment variable), the key, and how
//! to fix it.

mod duration;
mod raw;
pub mod secrets;
mod settings;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use duration::{DurationError, parse as parse_duration};
pub use settings::{
    Authn, HttpClient, HttpHeaders, Login, Logout, Origin, RequestFilter, SameSite, Server,
    Settings, Slo, Sso, Tgc, TgcKeySource, Throttle, TicketStore, Tickets, Tls, Ui, Validation,
};

use crate::auth::ldap::{LdapOptions, Lookup as LdapLookup, Mode as LdapMode, UsernameRules};
use crate::auth::{UserRecord, check_password_hash};
use crate::crypto::{Secret, b64url_decode};
use crate::services::{LogoutPolicy, LogoutType, RegisteredService, ResponseType, ServicePattern};
use crate::tgc::{CryptoMode, TgcKeys};

/// Every key's default; merged under every configuration.
pub const DEFAULTS: &str = include_str!("../../config/defaults.toml");
/// The demo configuration used when no `--config` is given.
pub const DEMO: &str = include_str!("../../config/demo.toml");
/// The demo user's password, printed in the startup banner (its hash is in `DEMO`).
pub const DEMO_PASSWORD: &str = "Mellon";

const ENV_PREFIX: &str = "CAS__";
/// The problem reported for a key that no random generator would produce.
const DEGENERATE: &str = "is not a random key (all one byte, a repeated pattern or a sequence); generate one with `cas-server keygen`";
/// Ten years: the longest any duration setting may be.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);
const SECTIONS: &[&str] = &[
    "server",
    "request_filter",
    "http_headers",
    "throttle",
    "tgc",
    "tickets",
    "sso",
    "http_client",
    "slo",
    "ui",
    "login",
    "authn",
    "logout",
    "validation",
    "users",
    "services",
];
/// Optional keys that have no entry in `DEFAULTS`, for "did you mean" hints.
const OPTIONAL_KEYS: &[&str] = &[
    "server.http_redirect_bind",
    "server.tls.cert_file",
    "server.tls.key_file",
    "tgc.previous_keys",
    "login.previous_flow_keys",
    "tgc.encryption_key",
    "tgc.encryption_key_file",
    "tgc.signing_key",
    "tgc.signing_key_file",
    "tgc.key_file",
    "login.flow_key",
    "http_client.trust_store",
    "http_client.authority_pattern",
    "http_client.proxy",
    "users.username",
    "users.password_hash",
    "users.attributes",
    "services.id",
    "services.name",
    "services.description",
    "services.pattern",
    "services.evaluation_order",
    "services.enabled",
    "services.attributes",
    "services.proxy_callback",
    "services.accept_proxy_tickets",
    "services.logout_type",
    "services.response_type",
    "services.sso",
    "services.max_auth_age",
    "services.create_cookie_on_renew",
    "services.theme",
    "sso.required_service_pattern",
    "ui.templates_dir",
    "ui.theme",
    "authn.ldap.name",
    "authn.ldap.url",
    "authn.ldap.start_tls",
    "authn.ldap.ca_file",
    "authn.ldap.bind_dn",
    "authn.ldap.bind_password",
    "authn.ldap.user_dn_template",
    "authn.ldap.base_dn",
    "authn.ldap.user_filter",
    "authn.ldap.mode",
    "authn.ldap.attributes",
    "authn.ldap.principal_attribute",
    "authn.ldap.trim_username",
    "authn.ldap.lowercase_username",
    "authn.ldap.strip_domain",
    "authn.ldap.connect_timeout",
    "authn.ldap.operation_timeout",
    "authn.ldap.pool_size",
    "services.logout_url",
    "tickets.key",
    "tickets.key_file",
    "tickets.memory.snapshot_file",
    "tickets.redis.username",
    "tickets.redis.password",
    "tickets.redis.ca_file",
];

/// Where the overlay on top of the defaults comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Demo,
    File(&'a Path),
    /// Configuration text with a name for messages (tests, tools).
    Text {
        name: &'a str,
        text: &'a str,
    },
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or environment variable the value came from.
    pub origin: String,
    /// Dotted key path, e.g. `tickets.st_ttl` or `services[2].pattern`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// All problems found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            // Parser messages (regex, TOML) span lines; keep them indented under their item.
            let message = p.message.replace('\n', "\n    ");
            if p.key.is_empty() {
                writeln!(f, "  - {}: {message}", p.origin)?;
            } else {
                writeln!(f, "  - {}: key `{}`: {message}", p.origin, p.key)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads with the process environment.
pub fn load(source: Source<'_>) -> Result<Settings, ConfigError> {
    load_with_env(source, &std::env::vars().collect())
}

/// Loads with an explicit environment (tests pass their own).
pub fn load_with_env(
    source: Source<'_>,
    env: &HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    let (origin, overlay) = match source {
        Source::Demo => (Origin::Demo, DEMO.to_owned()),
        Source::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => (Origin::File(path.to_owned()), text),
            Err(e) => {
                return Err(single(
                    path.display().to_string(),
                    "",
                    format!("cannot read the configuration file: {e}"),
                ));
            }
        },
        Source::Text { name, text } => (Origin::Text(name.to_owned()), text.to_owned()),
    };
    let mut ctx = Ctx {
        origin: origin.clone(),
        env: env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        problems: Vec::new(),
    };
    if let Err(e) = toml::from_str::<toml::Table>(&overlay) {
        return Err(single(
            origin.to_string(),
            "",
            format!("not valid TOML: {}", toml_error(&e, &overlay)),
        ));
    }
    let merged = Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .add_source(File::from_str(&overlay, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("CAS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.trusted_proxies")
                .source(Some(ctx.env.clone().into_iter().collect())),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Value>());
    let mut root = match merged {
        Ok(Value::Object(root)) => root,
        Ok(_) => Map::new(),
        Err(e) => return Err(single(origin.to_string(), "", e.to_string())),
    };
    keep_text_values(&mut root, &ctx.env);
    let (mut encrypted_problems, mut revealed) = (Vec::new(), Vec::new());
    for (section, value) in root.iter_mut() {
        secrets::decrypt_all(
            value,
            env.get(secrets::KEY_VARIABLE).map(String::as_str),
            section,
            &mut encrypted_problems,
            &mut revealed,
        );
    }
    for (key, message) in encrypted_problems {
        ctx.problem(&key, message);
    }
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let hint = suggest(key, SECTIONS.iter().copied());
            ctx.problem(key, format!("unknown section{hint}"));
        }
    }
    let known_keys = known_keys();
    let server = ctx.section::<raw::Server>(&root, "server", &known_keys);
    let request_filter = ctx.section::<raw::RequestFilter>(&root, "request_filter", &known_keys);
    let http_headers = ctx.section::<raw::HttpHeaders>(&root, "http_headers", &known_keys);
    let throttle = ctx.section::<raw::Throttle>(&root, "throttle", &known_keys);
    let tgc = ctx.section::<raw::Tgc>(&root, "tgc", &known_keys);
    let tickets = ctx.section::<raw::Tickets>(&root, "tickets", &known_keys);
    let sso = ctx.section::<raw::Sso>(&root, "sso", &known_keys);
    let ui = ctx.section::<raw::Ui>(&root, "ui", &known_keys);
    let http_client = ctx.section::<raw::HttpClient>(&root, "http_client", &known_keys);
    let slo = ctx.section::<raw::Slo>(&root, "slo", &known_keys);
    let login = ctx.section::<raw::Login>(&root, "login", &known_keys);
    let mut authn = ctx.section::<raw::Authn>(&root, "authn", &known_keys);
    let logout = ctx.section::<raw::Logout>(&root, "logout", &known_keys);
    let validation = ctx.section::<raw::Validation>(&root, "validation", &known_keys);
    let users = ctx.section::<Vec<raw::User>>(&root, "users", &known_keys);
    let services = ctx.section::<Vec<raw::Service>>(&root, "services", &known_keys);

    let server = server.and_then(|s| ctx.server(s));
    let request_filter = request_filter.and_then(|r| ctx.request_filter(r));
    let http_headers = http_headers.and_then(|h| ctx.http_headers(h));
    let throttle = throttle.and_then(|t| ctx.throttle(t));
    let tgc = tgc.and_then(|t| ctx.tgc(t, server.as_ref()));
    let tickets = tickets.and_then(|t| ctx.tickets(t));
    let http_client = http_client.and_then(|h| ctx.http_client(h));
    let slo = slo.and_then(|s| ctx.slo(s));
    let sso = sso.and_then(|s| ctx.sso(s));
    let ui = ui.and_then(|u| ctx.ui(u));
    let login = login.and_then(|l| ctx.login(l));
    let users = users.map(|u| ctx.users(u));
    let ldap = authn
        .as_mut()
        .and_then(|a| ctx.ldap_sources(std::mem::take(&mut a.ldap)));
    let services = services.map(|s| ctx.services(s));
    if let Some(a) = &authn {
        ctx.within(
            "authn.max_concurrent_verifications",
            a.max_concurrent_verifications as usize,
            0..=1024,
        );
    }
    if authn.as_ref().is_some_and(|a| a.verification_nice > 19) {
        ctx.problem(
            "authn.verification_nice",
            "must be between 0 (same priority as requests) and 19 (lowest)",
        );
    }

    if let (Some(tickets), Some(tgc), Some(login)) = (&tickets, &tgc, &login)
        && matches!(tickets.store, TicketStore::Redis(_))
    {
        // Every node must open every other node's cookies and login forms.
        if let TgcKeySource::KeyFile(path) = &tgc.keys
            && !path.exists()
        {
            ctx.problem(
                "tgc.key_file",
                format!(
                    "with store = \"redis\" every node needs the same TGC keys, and {} does not exist (this node would generate keys of its own); generate them once with `cas-server keygen` and give every node the same keys or file",
                    path.display()
                ),
            );
        }
        if matches!(tgc.keys, TgcKeySource::Ephemeral) {
            ctx.problem(
                "tgc.encryption_key",
                "with store = \"redis\" the TGC keys must be configured, identical on every node (generated keys differ per node and per restart); `cas-server keygen` prints a set",
            );
        }
        if login.flow_keys.is_empty() {
            ctx.problem(
                "login.flow_key",
                "with store = \"redis\" the login form key must be configured, identical on every node (a form shown by one node is posted to another); `cas-server keygen` prints one",
            );
        }
    }
    let settings = (|| {
        Some(Settings {
            origin,
            server: server?,
            request_filter: request_filter?,
            http_headers: http_headers?,
            throttle: throttle?,
            tgc: tgc?,
            tickets: tickets?,
            sso: sso?,
            ui: ui?,
            http_client: http_client?,
            slo: slo?,
            login: login?,
            authn: Authn {
                ldap: ldap?,
                max_concurrent_verifications: match authn.as_ref()?.max_concurrent_verifications {
                    // Half the cores: a flood of logins cannot starve ticket validation.
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
                    n => n as usize,
                },
                verification_nice: authn.as_ref()?.verification_nice,
            },
            logout: Logout {
                follow_service_redirects: logout?.follow_service_redirects,
            },
            validation: Validation {
                attributes_on_v2: validation?.attributes_on_v2,
            },
            users: users?,
            services: services?,
        })
    })();
    match settings {
        Some(settings) if ctx.problems.is_empty() => Ok(settings),
        _ => Err(ConfigError {
            problems: scrub(ctx.problems, &revealed),
        }),
    }
}

/// Messages quote values (`` `x` is not an address:port ``); a value that came from an
/// `ENC(…)` must not be printed in clear.
fn scrub(mut problems: Vec<Problem>, revealed: &[String]) -> Vec<Problem> {
    for problem in &mut problems {
        for secret in revealed.iter().filter(|s| !s.is_empty()) {
            // Messages quote values; a short secret is replaced only where quoted, or it
            // would garble every word that happens to contain it.
            let quoted = [format!("`{secret}`"), format!("\"{secret}\"")];
            for q in &quoted {
                problem.message = problem.message.replace(q.as_str(), "`(encrypted value)`");
            }
            if secret.len() >= 8 {
                problem.message = problem
                    .message
                    .replace(secret.as_str(), "(encrypted value)");
            }
        }
    }
    problems
}

/// Keys whose values are text however they look. Environment overrides are parsed for
/// type, so `CAS__TICKETS__REDIS__PASSWORD=007` would arrive as the number 7 (and a
/// refusal would print it): these keys get the variable's text back, as written.
const TEXT_KEYS: &[&str] = &[
    "password",
    "username",
    "bind_password",
    "bind_dn",
    "key",
    "flow_key",
    "encryption_key",
    "signing_key",
    "name",
];

fn keep_text_values(root: &mut Map<String, Value>, env: &BTreeMap<String, String>) {
    for (variable, text) in env {
        let Some(path) = variable.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        let Some((leaf, parents)) = parts.split_last() else {
            continue;
        };
        if !TEXT_KEYS.contains(&leaf.as_str()) {
            continue;
        }
        let mut table = Some(&mut *root);
        for parent in parents {
            table = match table.and_then(|t| t.get_mut(parent)) {
                Some(Value::Object(inner)) => Some(inner),
                _ => None,
            };
        }
        if let Some(value) = table.and_then(|t| t.get_mut(leaf)) {
            *value = Value::String(text.clone());
        }
    }
}

/// serde's type errors quote the value they met (`invalid type: integer `123456``): the
/// value of a password, say. The key and the expected type say enough.
fn without_values(message: &str) -> String {
    static VALUE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        #[allow(clippy::expect_used)] // a constant pattern
        regex::Regex::new(r#"(invalid (?:type|value|length): [a-z ]+?) ?(?:`[^`]*`|"[^"]*"|-?[0-9][^,]*)?, expected"#)
            .expect("valid pattern")
    });
    VALUE.replace_all(message, "$1, expected").into_owned()
}

/// A TOML syntax error as line, column and message, without the excerpt of the file the
/// parser would show: that line may hold a secret.
pub(crate) fn toml_error(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message().trim_end())
        }
        None => e.message().trim_end().to_owned(),
    }
}

fn single(origin: String, key: &str, message: String) -> ConfigError {
    ConfigError {
        problems: vec![Problem {
            origin,
            key: key.to_owned(),
            message,
        }],
    }
}

/// `section.key` for every key the defaults define, plus the optional ones.
fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = OPTIONAL_KEYS.iter().map(|k| (*k).to_owned()).collect();
    fn walk(prefix: &str, table: &toml::Table, keys: &mut Vec<String>) {
        for (name, value) in table {
            let key = format!("{prefix}{name}");
            if let toml::Value::Table(inner) = value {
                walk(&format!("{key}."), inner, keys);
            }
            keys.push(key);
        }
    }
    if let Ok(table) = DEFAULTS.parse::<toml::Table>() {
        for (section, value) in table {
            if let toml::Value::Table(inner) = value {
                walk(&format!("{section}."), &inner, &mut keys);
            }
        }
    }
    keys
}

fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    closest(wrong, candidates).map_or_else(String::new, |c| format!("; did you mean `{c}`?"))
}

/// The candidate within three edits of `wrong`, if any.
fn closest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::levenshtein(wrong, c), c))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| c)
}

struct Ctx {
    origin: Origin,
    env: BTreeMap<String, String>,
    problems: Vec<Problem>,
}

impl Ctx {
    /// Names the environment variable when one set `key`, the file otherwise.
    fn origin_of(&self, key: &str) -> String {
        let var = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase());
        if self.env.contains_key(&var) {
            format!("environment variable {var}")
        } else {
            self.origin.to_string()
        }
    }

    /// `value` within `range`, or a problem naming it. Upper bounds keep a typo from
    /// preallocating gigabytes or starting a thread per value.
    fn within(&mut self, key: &str, value: usize, range: std::ops::RangeInclusive<usize>) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.problem(
                key,
                format!("must be between {} and {}", range.start(), range.end()),
            );
        }
        ok
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            origin: self.origin_of(key),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Deserializes one section, recording unknown keys and the first type error in it.
    fn section<T: DeserializeOwned>(
        &mut self,
        root: &Map<String, Value>,
        name: &str,
        known: &[String],
    ) -> Option<T> {
        let value = root.get(name).cloned().unwrap_or_else(|| {
            if matches!(name, "users" | "services") {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        });
        let mut unknown = Vec::new();
        let parsed: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(value, &mut |path: serde_ignored::Path<'_>| {
                unknown.push(path.to_string())
            }),
        );
        for path in unknown {
            let key = format!("{name}{}", index_path(&path));
            // Compared leaf to leaf, so nested keys (`authn.ldap[0].bind_pasword`) get
            // their hint too.
            let leaf = path.rsplit('.').next().unwrap_or(&path);
            let prefix = format!("{name}.");
            let hint = closest(
                leaf,
                known
                    .iter()
                    .filter(|k| k.starts_with(&prefix))
                    .filter_map(|k| k.rsplit('.').next()),
            )
            .map_or_else(String::new, |best| {
                let parent = key.rsplit_once('.').map_or("", |(parent, _)| parent);
                format!("; did you mean `{parent}.{best}`?")
            });
            self.problem(&key, format!("unknown key{hint}"));
        }
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." || path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}{}", index_path(&path))
                };
                let inner = without_values(&e.into_inner().to_string());
                self.problem(
                    &key,
                    format!("{inner}; see config/example.toml for the expected form"),
                );
                None
            }
        }
    }

    fn duration(&mut self, key: &str, text: &str) -> Option<std::time::Duration> {
        match duration::parse(text) {
            Ok(d) if d.is_zero() => {
                self.problem(key, "must be longer than zero");
                None
            }
            // Longer would overflow date arithmetic somewhere, and means nothing here.
            Ok(d) if d > MAX_DURATION => {
                self.problem(key, "must be at most 10 years");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(key, e.to_string());
                None
            }
        }
    }

    fn server(&mut self, raw: raw::Server) -> Option<Server> {
        let bind = match raw.bind.parse::<SocketAddr>() {
            Ok(addr) => {
                if self.origin == Origin::Demo && !addr.ip().is_loopback() {
                    self.problem(
                        "server.bind",
                        format!(
                            "the built-in demo config only listens on loopback (it has a demo user with a published password); write your own config and pass it with --config to listen on {addr}"
                        ),
                    );
                }
                Some(addr)
            }
            Err(_) => {
                self.problem(
                    "server.bind",
                    format!("`{}` is not an address:port; write e.g. \"127.0.0.1:8080\" or \"[::]:8443\"", raw.bind),
                );
                None
            }
        };
        let base_path = raw.base_path.trim_end_matches('/').to_owned();
        let base_ok = base_path.is_empty()
            || (base_path.starts_with('/')
                && base_path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.')));
        if !base_ok {
            self.problem(
                "server.base_path",
                format!(
                    "`{}` is not a URL path; write e.g. \"/cas\" or \"/\"",
                    raw.base_path
                ),
            );
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.trusted_proxies.iter().enumerate() {
            match text.trim().parse::<ipnet::IpNet>() {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => match text.trim().parse::<IpAddr>() {
                    Ok(ip) => trusted_proxies.push(ipnet::IpNet::from(ip)),
                    Err(_) => self.problem(
                        &format!("server.trusted_proxies[{i}]"),
                        format!(
                            "`{text}` is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"
                        ),
                    ),
                },
            }
        }
        let request_timeout = self.duration("server.request_timeout", &raw.request_timeout);
        self.within("server.max_body_bytes", raw.max_body_bytes, 1..=64 << 20);
        self.within("server.max_header_bytes", raw.max_header_bytes, 1..=1 << 20);
        self.within("server.max_connections", raw.max_connections, 1..=1_000_000);
        self.within(
            "server.max_connections_per_client",
            raw.max_connections_per_client,
            1..=1_000_000,
        );
        let tls = match raw.tls {
            None => Some(None),
            Some(tls) => self.tls(&tls).map(Some),
        };
        let http_redirect_bind = match raw.http_redirect_bind {
            None => Some(None),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) if tls.as_ref().is_some_and(Option::is_some) => Some(Some(addr)),
                Ok(_) => {
                    self.problem(
                        "server.http_redirect_bind",
                        "redirects to HTTPS, so it needs [server.tls]",
                    );
                    None
                }
                Err(_) => {
                    self.problem(
                        "server.http_redirect_bind",
                        format!("`{text}` is not an address:port, e.g. \"0.0.0.0:80\""),
                    );
                    None
                }
            },
        };
        // All CAS traffic over HTTPS (the CAS security guide): plain HTTP is for loopback,
        // or behind the TLS-terminating proxies listed as trusted.
        if let (Some(addr), Some(None)) = (bind, &tls)
            && !addr.ip().is_loopback()
            && trusted_proxies.is_empty()
            && !raw.allow_plain_http
            && self.origin != Origin::Demo
        {
            self.problem(
                "server.bind",
                format!(
                    "{addr} is not loopback and serves plain HTTP: passwords and SSO cookies would cross the network in clear; configure [server.tls], or bind to loopback behind a TLS proxy (listed in server.trusted_proxies), or set server.allow_plain_http = true if the network is protected otherwise"
                ),
            );
        }
        Some(Server {
            bind: bind?,
            base_path: base_ok.then_some(base_path)?,
            trusted_proxies,
            request_timeout: request_timeout?,
            max_body_bytes: raw.max_body_bytes,
            max_header_bytes: raw.max_header_bytes,
            max_connections: raw.max_connections,
            max_connections_per_client: raw.max_connections_per_client.min(raw.max_connections),
            tls: tls?,
            http_redirect_bind: http_redirect_bind?,
        })
    }

    /// Reads the certificate chain and key and checks that they belong together.
    fn tls(&mut self, raw: &raw::Tls) -> Option<Tls> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let cert_path = self.resolve(&raw.cert_file);
        let key_path = self.resolve(&raw.key_file);
        let chain = match std::fs::read(&cert_path) {
            Err(e) => {
                self.problem(
                    "server.tls.cert_file",
                    format!("cannot read {}: {e}", cert_path.display()),
                );
                None
            }
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(chain) if !chain.is_empty() => Some(chain),
                _ => {
                    self.problem(
                        "server.tls.cert_file",
                        format!(
                            "{} holds no PEM certificate chain (-----BEGIN CERTIFICATE-----)",
                            cert_path.display()
                        ),
                    );
                    None
                }
            },
        };
        let key = match std::fs::read(&key_path) {
            Ok(_) if let Err(e) = crate::crypto::check_not_world_readable(&key_path) => {
                self.problem("server.tls.key_file", e);
                None
            }
            Err(e) => {
                self.problem(
                    "server.tls.key_file",
                    format!("cannot read {}: {e}", key_path.display()),
                );
                None
            }
            Ok(pem) => match PrivateKeyDer::from_pem_slice(&pem) {
                Ok(key) => Some(key),
                Err(_) => {
                    self.problem(
                        "server.tls.key_file",
                        format!(
                            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            key_path.display()
                        ),
                    );
                    None
                }
            },
        };
        let (chain, key) = (chain?, key?);
        let leaf = chain[0].clone();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key));
        match config {
            Ok(mut config) => {
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(Tls {
                    config: std::sync::Arc::new(config),
                    leaf,
                })
            }
            Err(e) => {
                self.problem(
                    "server.tls.key_file",
                    format!(
                        "{} does not fit the certificate in {} ({e})",
                        key_path.display(),
                        cert_path.display()
                    ),
                );
                None
            }
        }
    }

    fn request_filter(&mut self, raw: raw::RequestFilter) -> Option<RequestFilter> {
        for (key, value) in [
            ("request_filter.max_ticket_length", raw.max_ticket_length),
            ("request_filter.max_url_length", raw.max_url_length),
            (
                "request_filter.max_username_length",
                raw.max_username_length,
            ),
            ("request_filter.max_value_length", raw.max_value_length),
        ] {
            if value < 32 {
                self.problem(key, "must be at least 32 (tickets alone are 32 characters)");
                return None;
            }
        }
        Some(RequestFilter {
            max_ticket_length: raw.max_ticket_length,
            max_url_length: raw.max_url_length,
            max_username_length: raw.max_username_length,
            max_value_length: raw.max_value_length,
        })
    }

    fn http_headers(&mut self, raw: raw::HttpHeaders) -> Option<HttpHeaders> {
        let max_age = self.duration("http_headers.hsts_max_age", &raw.hsts_max_age)?;
        for (i, origin) in raw.frame_ancestors.iter().enumerate() {
            let ok = url::Url::parse(origin)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.path() == "/")
                && !origin.contains(['\'', ';', ' ', ',']);
            if !ok {
                self.problem(
                    &format!("http_headers.frame_ancestors[{i}]"),
                    format!("`{origin}` is not an origin such as \"https://portal.example.org\""),
                );
                return None;
            }
        }
        Some(HttpHeaders {
            hsts: raw.hsts.then(|| {
                let mut value = format!("max-age={}", max_age.as_secs());
                if raw.hsts_include_subdomains {
                    value.push_str("; includeSubDomains");
                }
                value
            }),
            frame_options: raw.frame_options,
            frame_ancestors: raw
                .frame_ancestors
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
            content_type_options: raw.content_type_options,
            content_security_policy: raw.content_security_policy,
            referrer_policy: raw.referrer_policy,
        })
    }

    fn throttle(&mut self, raw: raw::Throttle) -> Option<Throttle> {
        let window = self.duration("throttle.window", &raw.window);
        let ip_delay = self.duration("throttle.ip_delay", &raw.ip_delay);
        // At least 1: throttling is turned off with `enabled = false`, not with zeros.
        let counts = [
            self.within("throttle.threshold", raw.threshold as usize, 1..=1_000_000),
            self.within(
                "throttle.ip_threshold",
                raw.ip_threshold as usize,
                1..=1_000_000,
            ),
            // Each table preallocates its capacity.
            self.within("throttle.max_entries", raw.max_entries, 1..=1_000_000),
        ];
        if counts.contains(&false) {
            return None;
        }
        Some(Throttle {
            enabled: raw.enabled,
            threshold: raw.threshold,
            ip_threshold: raw.ip_threshold,
            window: window?,
            ip_delay: ip_delay?,
            max_entries: raw.max_entries,
        })
    }

    fn tgc(&mut self, raw: raw::Tgc, server: Option<&Server>) -> Option<Tgc> {
        let name_ok = !raw.name.is_empty()
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            self.problem(
                "tgc.name",
                "a cookie name is letters, digits, `-` and `_` only",
            );
        }
        let same_site = match raw.same_site.to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => Some(SameSite::None),
            _ => {
                self.problem(
                    "tgc.same_site",
                    format!(
                        "`{}` is not one of \"lax\", \"strict\", \"none\"",
                        raw.same_site
                    ),
                );
                None
            }
        };
        if same_site == Some(SameSite::None) && !raw.secure {
            self.problem(
                "tgc.same_site",
                "\"none\" requires tgc.secure = true (browsers drop such cookies otherwise)",
            );
        }
        if !raw.secure && server.is_some_and(|s| !s.bind.ip().is_loopback()) {
            self.problem(
                "tgc.secure",
                "false is only for local testing on a loopback address; an SSO cookie without Secure can leak over plain HTTP",
            );
        }
        let crypto = match raw.crypto.as_str() {
            "encrypt_and_sign" => Some(CryptoMode::EncryptAndSign),
            "sign_and_encrypt" => Some(CryptoMode::SignAndEncrypt),
            other => {
                self.problem(
                    "tgc.crypto",
                    format!("`{other}` is not \"encrypt_and_sign\" or \"sign_and_encrypt\""),
                );
                None
            }
        };
        let encryption = self.secret(
            "tgc.encryption_key",
            raw.encryption_key,
            raw.encryption_key_file,
        );
        let signing = self.secret("tgc.signing_key", raw.signing_key, raw.signing_key_file);
        let keys = match (encryption, signing) {
            (Ok(Some(enc)), Ok(Some(sign))) => {
                // Each pair is reported under its own name: `tgc.encryption_key`, or
                // `tgc.previous_keys[1].signing_key`.
                let pairs = std::iter::once(("tgc.".to_owned(), enc.as_str(), sign.as_str()))
                    .chain(raw.previous_keys.iter().enumerate().map(|(i, k)| {
                        (
                            format!("tgc.previous_keys[{i}]."),
                            k.encryption_key.as_str(),
                            k.signing_key.as_str(),
                        )
                    }));
                let mut keys = Vec::new();
                for (prefix, e, s) in pairs {
                    match TgcKeys::from_base64(e, s) {
                        Ok(k) => keys.push(k),
                        Err(why) => {
                            let which = if why.starts_with("encryption") {
                                "encryption_key"
                            } else {
                                "signing_key"
                            };
                            self.problem(&format!("{prefix}{which}"), why);
                        }
                    }
                }
                (keys.len() == raw.previous_keys.len() + 1)
                    .then_some(TgcKeySource::Configured(keys))
            }
            (Ok(None), Ok(None)) if !raw.previous_keys.is_empty() => {
                self.problem(
                    "tgc.previous_keys",
                    "rotation needs the current keys configured too (encryption_key, signing_key)",
                );
                None
            }
            (Ok(None), Ok(None)) => Some(match (&self.origin, raw.key_file) {
                (Origin::File(path), key_file) => TgcKeySource::KeyFile(match key_file {
                    Some(file) => self.resolve(&file),
                    None => path
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join("tgc-keys.toml"),
                }),
                (_, Some(file)) => TgcKeySource::KeyFile(self.resolve(&file)),
                _ => TgcKeySource::Ephemeral,
            }),
            (Ok(Some(_)), Ok(None)) | (Ok(None), Ok(Some(_))) => {
                self.problem("tgc", "set both encryption_key and signing_key (or their *_file forms), or neither to have them generated");
                None
            }
            _ => None,
        };
        Some(Tgc {
            name: name_ok.then_some(raw.name)?,
            secure: raw.secure,
            same_site: same_site?,
            pin_to_session: raw.pin_to_session,
            crypto: crypto?,
            keys: keys?,
        })
    }

    /// A secret given inline or as `<key>_file`; `Err` when already reported.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Result<Option<String>, ()> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(key, format!("give either {key} or {key}_file, not both"));
                Err(())
            }
            (Some(v), None) => Ok(Some(v)),
            (None, Some(file)) => {
                let path = self.resolve(&file);
                if let Err(e) = crate::crypto::check_private_file(&path)
                    && path.exists()
                {
                    self.problem(&format!("{key}_file"), e);
                    return Err(());
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text.trim().to_owned())),
                    Err(e) => {
                        self.problem(
                            &format!("{key}_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        Err(())
                    }
                }
            }
            (None, None) => Ok(None),
        }
    }

    /// Relative paths are relative to the configuration file's folder.
    fn resolve(&self, file: &str) -> PathBuf {
        let path = PathBuf::from(file);
        match &self.origin {
            Origin::File(config) if path.is_relative() => {
                config.parent().unwrap_or(Path::new(".")).join(path)
            }
            _ => path,
        }
    }

    fn tickets(&mut self, raw: raw::Tickets) -> Option<Tickets> {
        let idle = self.duration("tickets.tgt_idle_ttl", &raw.tgt_idle_ttl);
        let hard = self.duration("tickets.tgt_hard_ttl", &raw.tgt_hard_ttl);
        let st = self.duration("tickets.st_ttl", &raw.st_ttl);
        let pt = self.duration("tickets.pt_ttl", &raw.pt_ttl);
        let reaper = self.duration("tickets.reaper_interval", &raw.reaper_interval);
        if let (Some(idle), Some(hard)) = (idle, hard)
            && hard < idle
        {
            self.problem(
                "tickets.tgt_hard_ttl",
                format!(
                    "the hard limit ({}) is shorter than tickets.tgt_idle_ttl ({}); make tgt_hard_ttl at least as long",
                    humantime::format_duration(hard),
                    humantime::format_duration(idle)
                ),
            );
            return None;
        }
        for (key, ttl) in [("tickets.st_ttl", st), ("tickets.pt_ttl", pt)] {
            if ttl.is_some_and(|t| t > std::time::Duration::from_secs(300)) {
                self.problem(
                    key,
                    "one-use tickets should live at most 5 minutes (CAS §3.1.1, §3.2.1); the default is \"10s\"",
                );
                return None;
            }
        }
        let key = match self.secret("tickets.key", raw.key, raw.key_file) {
            Ok(None) => Some(None),
            Ok(Some(text)) => {
                match b64url_decode(&text).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) {
                    Some(bytes) if crate::crypto::is_degenerate(&bytes) => {
                        self.problem("tickets.key", DEGENERATE);
                        None
                    }
                    Some(bytes) => Some(Some(Secret::new(bytes))),
                    None => {
                        self.problem(
                            "tickets.key",
                            "must be 32 bytes in base64url; generate one with `cas-server keygen`",
                        );
                        None
                    }
                }
            }
            Err(()) => None,
        };
        let store = match raw.store.as_str() {
            "memory" => Some(TicketStore::Memory),
            "redis" => self.redis(raw.redis).map(TicketStore::Redis),
            other => {
                self.problem(
                    "tickets.store",
                    format!("`{other}` is not \"memory\" or \"redis\""),
                );
                None
            }
        };
        let snapshot_file = raw.memory.snapshot_file.map(|f| self.resolve(&f));
        if matches!(store, Some(TicketStore::Redis(_))) && snapshot_file.is_some() {
            self.problem(
                "tickets.memory.snapshot_file",
                "only applies to store = \"memory\"; Redis keeps the tickets itself",
            );
        }
        if matches!(key, Some(None)) {
            if matches!(store, Some(TicketStore::Redis(_))) {
                self.problem(
                    "tickets.key",
                    "the Redis store needs a registry key (the same on every node) to encrypt tickets and hash their ids; generate one with `cas-server keygen`",
                );
            } else if snapshot_file.is_some() {
                self.problem(
                    "tickets.key",
                    "tickets.memory.snapshot_file needs a registry key to encrypt the snapshot (and to read it back after a restart); generate one with `cas-server keygen`",
                );
            }
        }
        Some(Tickets {
            tgt_idle_ttl: idle?,
            tgt_hard_ttl: hard?,
            st_ttl: st?,
            pt_ttl: pt?,
            reaper_interval: reaper?,
            store: store?,
            key: key?,
            snapshot_file,
        })
    }

    fn redis(&mut self, raw: raw::TicketsRedis) -> Option<crate::tickets::RedisOptions> {
        let connect_timeout = self.duration("tickets.redis.connect_timeout", &raw.connect_timeout);
        let command_timeout = self.duration("tickets.redis.command_timeout", &raw.command_timeout);
        let pool_ok = self.within("tickets.redis.pool_size", raw.pool_size as usize, 1..=64);
        for (key, timeout) in [
            ("tickets.redis.connect_timeout", connect_timeout),
            ("tickets.redis.command_timeout", command_timeout),
        ] {
            if timeout.is_some_and(|t| t > std::time::Duration::from_secs(30)) {
                self.problem(
                    key,
                    "must be at most 30s: a request waits up to connect_timeout + command_timeout before it is answered 503",
                );
            }
        }
        let tls = match url::Url::parse(&raw.url) {
            // `#insecure` would turn certificate checks off in the client library; a query
            // could carry other client options. Neither belongs in this setting.
            Ok(u) if u.fragment().is_some() || u.query().is_some() => {
                self.problem(
                    "tickets.redis.url",
                    "must not have a query or #fragment (e.g. #insecure); the form is redis[s]://[user:password@]host:port/db",
                );
                None
            }
            Ok(u) if redis::IntoConnectionInfo::into_connection_info(u.as_str()).is_err() => {
                self.problem(
                    "tickets.redis.url",
                    "is not a Redis URL the client accepts (check the port and the database number after the /)",
                );
                None
            }
            Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => Some(false),
            Ok(u) if u.scheme() == "rediss" && u.host_str().is_some() => Some(true),
            // Never quote the URL itself: it may carry a password.
            Ok(u) => {
                self.problem(
                    "tickets.redis.url",
                    format!(
                        "the scheme `{}` is not redis:// or rediss:// with a host, e.g. \"redis://127.0.0.1:6379\"",
                        u.scheme()
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(
                    "tickets.redis.url",
                    format!("is not a URL ({e}); e.g. \"redis://127.0.0.1:6379\""),
                );
                None
            }
        };
        let ca_pem = match (&raw.ca_file, tls) {
            (None, _) => Some(None),
            (Some(_), Some(false)) => {
                self.problem(
                    "tickets.redis.ca_file",
                    "a CA file only applies to TLS: use a rediss:// URL",
                );
                None
            }
            (Some(file), _) => self
                .pem_certificates("tickets.redis.ca_file", file)
                .and_then(|_| std::fs::read(self.resolve(file)).ok())
                .map(Some),
        };
        if raw.key_prefix.is_empty()
            || raw.key_prefix.len() > 64
            || raw
                .key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "*?[]\\".contains(c))
        {
            self.problem(
                "tickets.redis.key_prefix",
                "must be 1 to 64 characters without spaces or * ? [ ] \\, e.g. \"cas:\"",
            );
            return None;
        }
        if raw.password.is_some() && url::Url::parse(&raw.url).is_ok_and(|u| u.password().is_some())
        {
            self.problem(
                "tickets.redis.password",
                "give the password either in the URL or here, not both",
            );
            return None;
        }
        tls?;
        pool_ok.then_some(())?;
        Some(crate::tickets::RedisOptions {
            url: Secret::new(raw.url),
            username: raw.username,
            password: raw.password.map(Secret::new),
            ca_pem: ca_pem?,
            key_prefix: raw.key_prefix,
            pool_size: raw.pool_size as usize,
            connect_timeout: connect_timeout?,
            command_timeout: command_timeout?,
            encrypt: raw.encrypt,
        })
    }

    fn http_client(&mut self, raw: raw::HttpClient) -> Option<HttpClient> {
        let connect_timeout = self.duration("http_client.connect_timeout", &raw.connect_timeout);
        let read_timeout = self.duration("http_client.read_timeout", &raw.read_timeout);
        let extra_roots = match raw.trust_store {
            None => Some(Vec::new()),
            Some(file) => self.pem_certificates("http_client.trust_store", &file),
        };
        let authority_pattern = match raw.authority_pattern {
            None => Some(None),
            Some(re) => match regex::Regex::new(&format!("^(?:{re})$")) {
                Ok(re) => Some(Some(re)),
                Err(e) => {
                    self.problem(
                        "http_client.authority_pattern",
                        format!("invalid regular expression: {e}"),
                    );
                    None
                }
            },
        };
        let proxy = match raw.proxy {
            None => Some(None),
            // Not quoted back: a value with credentials in it (user:pw@host) is refused
            // without being printed.
            Some(p) => match p.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty()
                        && !host.contains(['/', '@'])
                        && port.parse::<u16>().is_ok() =>
                {
                    Some(Some(p))
                }
                _ => {
                    self.problem(
                        "http_client.proxy",
                        "is not host:port (e.g. \"proxy.example.org:3128\"); credentials are not supported",
                    );
                    None
                }
            },
        };
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let mut default_headers = Vec::new();
        for (name, value) in raw.default_headers {
            if name.is_empty() || !name.chars().all(token) {
                self.problem(
                    &format!("http_client.default_headers.{name}"),
                    "is not a valid HTTP header name",
                );
            } else if value.chars().any(|c| c.is_control() || !c.is_ascii()) {
                self.problem(
                    &format!("http_client.default_headers.{name}"),
                    "the value must be printable ASCII",
                );
            } else {
                default_headers.push((name, value));
            }
        }
        Some(HttpClient {
            connect_timeout: connect_timeout?,
            read_timeout: read_timeout?,
            extra_roots: extra_roots?,
            verify_hostname: raw.verify_hostname,
            allow_local_urls: raw.allow_local_urls,
            authority_pattern: authority_pattern?,
            proxy: proxy?,
            default_headers,
        })
    }

    fn sso(&mut self, raw: raw::Sso) -> Option<Sso> {
        let duration = self.duration("sso.remember_me.duration", &raw.remember_me.duration);
        if duration.is_some_and(|d| d > std::time::Duration::from_secs(90 * 86_400)) {
            self.problem(
                "sso.remember_me.duration",
                "a remember-me session may last at most 3 months (CAS §4.1.5)",
            );
            return None;
        }
        let required_service_pattern = match raw.required_service_pattern {
            None => Some(None),
            Some(re) => match regex::Regex::new(&format!("^(?:{re})$")) {
                Ok(re) => Some(Some(re)),
                Err(e) => {
                    self.problem(
                        "sso.required_service_pattern",
                        format!("invalid regular expression: {e}"),
                    );
                    None
                }
            },
        };
        Some(Sso {
            proxy_authn_enabled: raw.proxy_authn_enabled,
            create_cookie_on_renew: raw.create_cookie_on_renew,
            allow_missing_service: raw.allow_missing_service,
            required_service_pattern: required_service_pattern?,
            remember_me: if raw.remember_me.enabled {
                Some(duration?)
            } else {
                None
            },
        })
    }

    fn ui(&mut self, raw: raw::Ui) -> Option<Ui> {
        let locales = crate::locales::codes();
        if !locales.contains(&raw.default_locale.as_str()) {
            self.problem(
                "ui.default_locale",
                format!(
                    "`{}` has no catalogue; choose one of {}",
                    raw.default_locale,
                    locales.join(", ")
                ),
            );
            return None;
        }
        let templates_dir = match raw.templates_dir {
            None => None,
            Some(dir) => {
                let path = self.resolve(&dir);
                if !path.is_dir() {
                    self.problem(
                        "ui.templates_dir",
                        format!("{} is not a folder", path.display()),
                    );
                    return None;
                }
                Some(path)
            }
        };
        let theme = match raw.theme {
            None => crate::services::Theme::default(),
            Some(theme) => self.theme("ui.theme", theme)?,
        };
        Some(Ui {
            default_locale: raw.default_locale,
            templates_dir,
            theme,
        })
    }

    fn theme(&mut self, key: &str, raw: raw::Theme) -> Option<crate::services::Theme> {
        let before = self.problems.len();
        if let Some(colour) = &raw.accent_colour {
            let ok = colour.len() == 7
                && colour.starts_with('#')
                && colour[1..].chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                self.problem(
                    &format!("{key}.accent_colour"),
                    format!("`{colour}` is not a colour like \"#1f5fa8\""),
                );
            }
        }
        if let Some(logo) = &raw.logo_url {
            let ok = logo.starts_with('/') && !logo.starts_with("//")
                || url::Url::parse(logo).is_ok_and(|u| u.scheme() == "https");
            if !ok || logo.chars().any(char::is_control) {
                self.problem(
                    &format!("{key}.logo_url"),
                    format!("`{logo}` must be an https:// URL or a path on this server"),
                );
            }
        }
        (self.problems.len() == before).then_some(crate::services::Theme {
            display_name: raw.display_name,
            logo_url: raw.logo_url,
            accent_colour: raw.accent_colour,
        })
    }

    fn slo(&mut self, raw: raw::Slo) -> Option<Slo> {
        let timeout = self.duration("slo.timeout", &raw.timeout);
        let counts = [
            self.within("slo.workers", raw.workers as usize, 1..=1024),
            self.within(
                "slo.queue_capacity",
                raw.queue_capacity as usize,
                1..=1_000_000,
            ),
        ];
        if counts.contains(&false) {
            return None;
        }
        Some(Slo {
            enabled: raw.enabled,
            workers: raw.workers as usize,
            queue_capacity: raw.queue_capacity as usize,
            timeout: timeout?,
            on_expiry: raw.on_expiry,
        })
    }

    fn login(&mut self, raw: raw::Login) -> Option<Login> {
        let form_ttl = self.duration("login.form_ttl", &raw.form_ttl);
        if raw.flow_key.is_none() && !raw.previous_flow_keys.is_empty() {
            self.problem(
                "login.previous_flow_keys",
                "rotation needs the current login.flow_key too",
            );
            return None;
        }
        let mut flow_keys = Vec::new();
        let keys = raw
            .flow_key
            .iter()
            .map(|k| ("login.flow_key".to_owned(), k))
            .chain(
                raw.previous_flow_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (format!("login.previous_flow_keys[{i}]"), k)),
            );
        for (key, text) in keys {
            match b64url_decode(text).and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) {
                Some(bytes) if crate::crypto::is_degenerate(&bytes) => {
                    self.problem(&key, DEGENERATE);
                    return None;
                }
                Some(bytes) => flow_keys.push(Secret::new(bytes)),
                None => {
                    self.problem(
                        &key,
                        "must be 32 bytes in base64url; generate one with `cas-server keygen`",
                    );
                    return None;
                }
            }
        }
        Some(Login {
            form_ttl: form_ttl?,
            flow_keys,
        })
    }

    fn users(&mut self, raw: Vec<raw::User>) -> Vec<UserRecord> {
        let mut seen = std::collections::HashSet::new();
        let mut users = Vec::with_capacity(raw.len());
        for (i, u) in raw.into_iter().enumerate() {
            if u.username.trim().is_empty() || u.username.chars().any(char::is_control) {
                self.problem(
                    &format!("users[{i}].username"),
                    "must be a non-empty name without control characters",
                );
            }
            if !seen.insert(u.username.clone()) {
                self.problem(
                    &format!("users[{i}].username"),
                    format!("`{}` is listed twice", u.username),
                );
            }
            if let Err(e) = check_password_hash(&u.password_hash) {
                self.problem(
                    &format!("users[{i}].password_hash"),
                    format!("{e}; create one with `cas-server hash-password`"),
                );
            }
            let attributes = u
                .attributes
                .into_iter()
                .map(|(k, v)| {
                    let values = match v {
                        raw::OneOrMany::One(s) => vec![s],
                        raw::OneOrMany::Many(list) => list,
                    };
                    (k, values)
                })
                .collect();
            users.push(UserRecord {
                username: u.username,
                password_hash: u.password_hash,
                attributes,
            });
        }
        users
    }

    fn services(&mut self, raw: Vec<raw::Service>) -> Vec<RegisteredService> {
        let mut seen = std::collections::HashSet::new();
        let mut services = Vec::with_capacity(raw.len());
        for (i, s) in raw.into_iter().enumerate() {
            if !seen.insert(s.id) {
                self.problem(
                    &format!("services[{i}].id"),
                    format!("id {} is used by another service", s.id),
                );
            }
            if s.name.trim().is_empty() {
                self.problem(
                    &format!("services[{i}].name"),
                    "give the service a name users will recognise",
                );
            }
            let proxy_callback = match s.proxy_callback.as_deref().map(ServicePattern::parse) {
                None => Some(None),
                Some(Ok(p)) => Some(Some(p)),
                Some(Err(e)) => {
                    self.problem(&format!("services[{i}].proxy_callback"), e.0);
                    None
                }
            };
            let logout = self.logout_policy(i, s.logout_type.as_deref(), s.logout_url);
            let response_type = match s.response_type.as_deref() {
                None | Some("redirect") => Some(ResponseType::Redirect),
                Some("post") => Some(ResponseType::Post),
                Some("header") => Some(ResponseType::Header),
                Some(other) => {
                    self.problem(
                        &format!("services[{i}].response_type"),
                        format!("`{other}` is not \"redirect\", \"post\" or \"header\""),
                    );
                    None
                }
            };
            let max_auth_age = match &s.max_auth_age {
                None => Some(None),
                Some(text) => self
                    .duration(&format!("services[{i}].max_auth_age"), text)
                    .map(Some),
            };
            let theme = match s.theme {
                None => Some(None),
                Some(theme) => self.theme(&format!("services[{i}].theme"), theme).map(Some),
            };
            let pattern = ServicePattern::parse(&s.pattern)
                .map_err(|e| self.problem(&format!("services[{i}].pattern"), e.0))
                .ok();
            let (
                Some(pattern),
                Some(proxy_callback),
                Some(logout),
                Some(response_type),
                Some(max_auth_age),
                Some(theme),
            ) = (
                pattern,
                proxy_callback,
                logout,
                response_type,
                max_auth_age,
                theme,
            )
            else {
                continue;
            };
            services.push(RegisteredService {
                id: s.id,
                name: s.name,
                description: s.description,
                pattern,
                evaluation_order: s.evaluation_order,
                enabled: s.enabled,
                attributes: s.attributes,
                proxy_callback,
                accept_proxy_tickets: s.accept_proxy_tickets,
                logout,
                response_type,
                sso_enabled: s.sso,
                max_auth_age,
                create_cookie_on_renew: s.create_cookie_on_renew,
                theme,
            });
        }
        services
    }
}

impl Ctx {
    fn ldap_sources(&mut self, raw: Vec<raw::Ldap>) -> Option<Vec<LdapOptions>> {
        let mut names = std::collections::HashSet::new();
        let mut sources = Vec::new();
        let mut ok = true;
        for (i, l) in raw.into_iter().enumerate() {
            match self.ldap_source(i, l, &mut names) {
                Some(source) => sources.push(source),
                None => ok = false,
            }
        }
        ok.then_some(sources)
    }

    fn ldap_source(
        &mut self,
        i: usize,
        raw: raw::Ldap,
        names: &mut std::collections::HashSet<String>,
    ) -> Option<LdapOptions> {
        let key = |k: &str| format!("authn.ldap[{i}].{k}");
        let before = self.problems.len();
        if raw.name.trim().is_empty() || !names.insert(raw.name.clone()) {
            self.problem(&key("name"), "give each source a unique, non-empty name");
        }
        let scheme = url::Url::parse(&raw.url)
            .ok()
            .map(|u| u.scheme().to_owned());
        match scheme.as_deref() {
            Some("ldap") => {}
            Some("ldaps") if raw.start_tls => {
                self.problem(
                    &key("start_tls"),
                    "ldaps:// is already TLS; use ldap:// with start_tls",
                );
            }
            Some("ldaps") => {}
            _ => self.problem(
                &key("url"),
                format!("`{}` is not an ldap:// or ldaps:// URL", raw.url),
            ),
        }
        // Plain LDAP is allowed (a local directory) but reported: see `Settings::warnings`.
        if scheme.as_deref() == Some("ldap") && !raw.start_tls && raw.ca_file.is_some() {
            self.problem(
                &key("ca_file"),
                "is only used over TLS: set start_tls = true or use ldaps://",
            );
        }
        let extra_roots = match &raw.ca_file {
            None => Vec::new(),
            Some(file) => self
                .pem_certificates(&key("ca_file"), file)
                .unwrap_or_default(),
        };
        let mode = match raw.mode.as_deref().unwrap_or("ldap") {
            "ldap" => LdapMode::Ldap,
            "active_directory" => LdapMode::ActiveDirectory,
            other => {
                self.problem(
                    &key("mode"),
                    format!("`{other}` is not \"ldap\" or \"active_directory\""),
                );
                LdapMode::Ldap
            }
        };
        let bind = match (raw.bind_dn, raw.bind_password) {
            // An empty password is an unauthenticated bind (RFC 4513 5.1.2): LDAP servers
            // accept it and the search would run anonymously.
            (Some(_), Some(password)) if password.is_empty() => {
                self.problem(
                    &key("bind_password"),
                    "is empty, which LDAP treats as an anonymous bind; give the service account's password",
                );
                None
            }
            (Some(dn), Some(password)) => Some((dn, Secret::new(password))),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    &key("bind_password"),
                    "bind_dn needs a bind_password (it may be ENC(...))",
                );
                None
            }
            (None, Some(_)) => {
                self.problem(&key("bind_dn"), "bind_password without bind_dn");
                None
            }
        };
        let default_filter = match mode {
            LdapMode::Ldap => "(uid={user})",
            LdapMode::ActiveDirectory => "(sAMAccountName={user})",
        };
        let lookup = match (raw.user_dn_template, raw.base_dn) {
            (Some(template), None) => {
                if !template.contains("{user}") {
                    self.problem(
                        &key("user_dn_template"),
                        "must contain {user}, e.g. \"uid={user},ou=people,dc=example,dc=org\"",
                    );
                }
                Some(LdapLookup::Template(template))
            }
            (None, Some(base_dn)) => {
                let filter = raw.user_filter.unwrap_or_else(|| default_filter.to_owned());
                if !filter.contains("{user}") || !filter.starts_with('(') || !filter.ends_with(')')
                {
                    self.problem(
                        &key("user_filter"),
                        "must be a parenthesised filter containing {user}, e.g. \"(uid={user})\"",
                    );
                }
                Some(LdapLookup::Search { base_dn, filter })
            }
            (Some(_), Some(_)) => {
                self.problem(
                    &key("user_dn_template"),
                    "give either user_dn_template (direct bind) or base_dn (search), not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    &key("base_dn"),
                    "set base_dn (search then bind) or user_dn_template (direct bind)",
                );
                None
            }
        };
        let connect_timeout = self.duration(
            &key("connect_timeout"),
            raw.connect_timeout.as_deref().unwrap_or("5s"),
        );
        let operation_timeout = self.duration(
            &key("operation_timeout"),
            raw.operation_timeout.as_deref().unwrap_or("5s"),
        );
        let pool_size = raw.pool_size.unwrap_or(4);
        self.within(&key("pool_size"), pool_size, 1..=256);
        if self.problems.len() > before {
            return None;
        }
        Some(LdapOptions {
            name: raw.name,
            url: raw.url,
            start_tls: raw.start_tls,
            extra_roots,
            bind,
            lookup: lookup?,
            mode,
            attributes: raw.attributes.into_iter().collect(),
            principal_attribute: raw.principal_attribute,
            username: UsernameRules {
                trim: raw.trim_username,
                lowercase: raw.lowercase_username,
                strip_domain: raw.strip_domain,
            },
            connect_timeout: connect_timeout?,
            operation_timeout: operation_timeout?,
            pool_size,
        })
    }

    /// Reads PEM certificates from `file` (relative to the configuration file).
    fn pem_certificates(&mut self, key: &str, file: &str) -> Option<Vec<Vec<u8>>> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let path = self.resolve(file);
        match std::fs::read(&path) {
            Ok(pem) => match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if !certs.is_empty() => {
                    Some(certs.into_iter().map(|c| c.to_vec()).collect())
                }
                _ => {
                    self.problem(
                        key,
                        format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            path.display()
                        ),
                    );
                    None
                }
            },
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn logout_policy(
        &mut self,
        i: usize,
        kind: Option<&str>,
        url: Option<String>,
    ) -> Option<LogoutPolicy> {
        let kind = match kind.unwrap_or("back_channel") {
            "back_channel" => LogoutType::BackChannel,
            "front_channel" => LogoutType::FrontChannel,
            "none" => LogoutType::None,
            other => {
                self.problem(
                    &format!("services[{i}].logout_type"),
                    format!("`{other}` is not \"back_channel\", \"front_channel\" or \"none\""),
                );
                return None;
            }
        };
        if let Some(u) = &url {
            let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http"))
                && !u.chars().any(char::is_control);
            if !ok {
                self.problem(
                    &format!("services[{i}].logout_url"),
                    format!("`{u}` is not an absolute http(s) URL"),
                );
                return None;
            }
        }
        Some(LogoutPolicy { kind, url })
    }
}

/// serde_ignored / serde_path_to_error paths (`0.username`, `[0].username`) as
/// `[0].username`, prefixed for joining after a section name.
fn index_path(path: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option level in serde's paths: not part of the key.
    for part in path.split('.').filter(|p| !p.is_empty() && *p != "?") {
        // `name[3]` (one serde path style) and `[3]` (the other) both become `.name[3]`.
        let (name, index) = match part.split_once('[') {
            Some((name, index)) => (name, Some(index.trim_end_matches(']'))),
            None if part.chars().all(|c| c.is_ascii_digit()) => ("", Some(part)),
            None => (part, None),
        };
        if !name.is_empty() {
            out.push('.');
            out.push_str(name);
        }
        if let Some(index) = index {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
