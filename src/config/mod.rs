//! Configuration: the embedded defaults, then the operator's TOML file (or the embedded
//! demo config), then environment variables `CAS__SECTION__KEY`, layered by the `config`
//! crate. Each section is then read into its raw struct (`deny_unknown_fields`) and
//! checked into the type the server uses, one file per section: `server.rs`, `tls.rs`,
//! `tgc.rs`, `tickets.rs`, `redis.rs`, `sso.rs`, `login.rs`, `authn.rs`, `ldap.rs`,
//! `users.rs`, `services.rs`, `http_client.rs`, `slo.rs`, `ui.rs`, `throttle.rs`,
//! `request_filter.rs`, `http_headers.rs`, `logout.rs`, `validation.rs`.
//!
//! - **Defaults live in `config/example.toml`.** Every value it does not comment out is
//!   the default, merged under every configuration; the file operators read is the file
//!   the server runs on. Entries of arrays of tables (`[[services]]`, `[[users]]`,
//!   `[[authn.ldap]]`) cannot take defaults from a layer, so theirs are serde defaults on
//!   their raw structs.
//! - **The keys are the raw structs' fields.** An unknown key, in any table or array
//!   entry, is reported with the closest known one (`de.rs`); no list of keys is kept.
//! - **Environment values are text.** The `config` crate would parse
//!   `CAS__TICKETS__REDIS__PASSWORD=007` into the number 7 (and a refusal would print it).
//!   Its environment layer is read without parsing instead, and `de.rs` lets each field's
//!   type read the variable's text: booleans and numbers are parsed, lists split at
//!   commas, text kept as written. That is the only place a value changes type; values
//!   from files keep TOML's types (`secure = "yes"` is a mistake).
//! - **Every problem at once** (`report.rs`): unknown keys, wrong types, bad durations,
//!   invalid patterns and impossible combinations are all collected, each naming where
//!   the value came from (file or environment variable), its key path
//!   (`authn.ldap[0].pool_size`) and how to fix it, never the value of a secret.
//!
//! Adding a key touches three places: a field of its section's raw struct, its check
//! where that struct becomes the section's type, and its documented default (or a
//! commented example) in `config/example.toml`.

mod authn;
mod de;
mod duration;
mod files;
mod http_client;
mod http_headers;
pub mod keys;
mod ldap;
mod login;
mod logout;
pub mod pattern;
mod redis;
mod report;
mod request_filter;
pub mod secrets;
mod server;
mod services;
mod settings;
mod slo;
mod sso;
mod tgc;
mod throttle;
mod tickets;
mod tls;
mod ui;
mod users;
mod validation;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::de::DeserializeOwned;

pub use authn::Authn;
pub use duration::{DurationError, parse as parse_duration};
pub use http_client::HttpClient;
pub use http_headers::HttpHeaders;
pub use ldap::{LdapOptions, Lookup, Mode, UsernameRules};
pub use login::Login;
pub use logout::Logout;
pub use redis::{RedisOptions, SentinelOptions};
pub use report::{ConfigError, Problem};
pub use request_filter::RequestFilter;
pub use server::Server;
pub use services::{LogoutPolicy, LogoutType, RegisteredService, ResponseType, Theme};
pub use settings::{Origin, Settings};
pub use slo::Slo;
pub use sso::Sso;
pub use tgc::{CryptoMode, SameSite, Tgc, TgcKeySource};
pub use throttle::Throttle;
pub use tickets::{TicketStore, Tickets};
pub use tls::Tls;
pub use ui::Ui;
pub use users::UserRecord;
pub use validation::Validation;

use report::{Report, Scope, hint};

/// Every key's default, merged under every configuration: the documented example.
pub const DEFAULTS: &str = include_str!("../../config/example.toml");
/// The demo configuration used when no `--config` is given.
pub const DEMO: &str = include_str!("../../config/demo.toml");
/// The demo user's password, printed in the startup banner (its hash is in `DEMO`).
pub const DEMO_PASSWORD: &str = "Mellon";

const ENV_PREFIX: &str = "CAS__";

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

/// A table of the file: its raw form as written, and the type it is checked into.
trait Section: DeserializeOwned {
    /// The table's name in the file.
    const NAME: &'static str;
    type Checked;

    /// Checks every key, recording each problem in `cx` (the section's scope);
    /// `None` when any was found.
    fn validate(self, cx: &mut Scope<'_>) -> Option<Self::Checked>;
}

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
                return Err(ConfigError::single(
                    path.display().to_string(),
                    format!("cannot read the configuration file: {e}"),
                ));
            }
        },
        Source::Text { name, text } => (Origin::Text(name.to_owned()), text.to_owned()),
    };
    // The `config` crate's own parse error quotes the line, which may hold a secret.
    if let Err(e) = toml::from_str::<toml::Table>(&overlay) {
        return Err(ConfigError::single(
            origin.to_string(),
            format!("not valid TOML: {}", toml_error(&e, &overlay)),
        ));
    }
    let variables: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut root = match layers(&overlay, &variables) {
        Ok(root) => root,
        Err(e) => return Err(ConfigError::single(origin.to_string(), e.to_string())),
    };
    let mut report = Report::new(origin.clone(), variables.into_keys().collect());
    let mut revealed = Vec::new();
    let config_key = env.get(secrets::KEY_VARIABLE).map(String::as_str);
    secrets::decrypt_all(&mut root, config_key, "", &mut report, &mut revealed);
    let ValueKind::Table(root) = root.kind else {
        return Err(ConfigError::single(
            origin.to_string(),
            "the configuration is not a table".to_owned(),
        ));
    };
    let mut loader = Loader {
        root,
        read: Vec::new(),
        report,
    };
    let settings = read(&mut loader, origin);
    loader.unknown_sections();
    loader.report.finish(settings, &revealed)
}

/// The defaults, `overlay` and the `CAS__…` variables, merged.
fn layers(
    overlay: &str,
    variables: &BTreeMap<String, String>,
) -> Result<Value, config::ConfigError> {
    let config = Config::builder()
        .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
        .add_source(File::from_str(overlay, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("CAS")
                .prefix_separator("__")
                .separator("__")
                // Text as written: the fields' types read it (see the module doc).
                .try_parsing(false)
                .source(Some(variables.clone().into_iter().collect())),
        )
        .build()?;
    Ok(config.cache)
}

/// Reads the sections of a configuration: the loader reads and checks them, the test of
/// `config/example.toml` only lists the keys of their raw structs.
trait Reader {
    fn section<S: Section>(&mut self) -> Option<S::Checked>;

    /// Runs a check that spans sections, in the scope of the whole file.
    fn across(&mut self, check: impl FnOnce(&mut Scope<'_>));
}

/// Every section in the order of [`Settings`], then the checks across sections.
fn read(r: &mut impl Reader, origin: Origin) -> Option<Settings> {
    let server = r.section::<server::Raw>();
    let request_filter = r.section::<request_filter::Raw>();
    let http_headers = r.section::<http_headers::Raw>();
    let throttle = r.section::<throttle::Raw>();
    let tgc = r.section::<tgc::Raw>();
    let tickets = r.section::<tickets::Raw>();
    let sso = r.section::<sso::Raw>();
    let ui = r.section::<ui::Raw>();
    let http_client = r.section::<http_client::Raw>();
    let slo = r.section::<slo::Raw>();
    let login = r.section::<login::Raw>();
    let authn = r.section::<authn::Raw>();
    let logout = r.section::<logout::Raw>();
    let validation = r.section::<validation::Raw>();
    let users = r.section::<users::Raw>();
    let services = r.section::<services::Raw>();
    if let (Some(tgc), Some(server)) = (&tgc, &server) {
        r.across(|cx| tgc::check_with_server(tgc, server, &mut cx.at(tgc::Raw::NAME)));
    }
    if let (Some(tickets), Some(tgc), Some(login)) = (&tickets, &tgc, &login) {
        r.across(|cx| tickets::check_cluster_keys(tickets, tgc, login, cx));
    }
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
        authn: authn?,
        logout: logout?,
        validation: validation?,
        users: users?,
        services: services?,
    })
}

/// Reads the merged tree, section by section, into the report.
struct Loader {
    root: Map<String, Value>,
    /// The sections read so far: the known ones.
    read: Vec<&'static str>,
    report: Report,
}

impl Reader for Loader {
    fn section<S: Section>(&mut self) -> Option<S::Checked> {
        self.read.push(S::NAME);
        let value = self
            .root
            .remove(S::NAME)
            .unwrap_or_else(|| Value::new(None, ValueKind::Nil));
        let unknown = de::Unknown::default();
        let raw = S::deserialize(de::Node::new(value, S::NAME, &unknown));
        for (key, message) in unknown.into_inner() {
            self.report.problem(&key, message);
        }
        match raw {
            Ok(raw) => raw.validate(&mut self.report.scope(S::NAME)),
            Err(e) => {
                self.report.problem(
                    e.key(),
                    format!("{e}; see config/example.toml for the expected form"),
                );
                None
            }
        }
    }

    fn across(&mut self, check: impl FnOnce(&mut Scope<'_>)) {
        check(&mut self.report.scope(""));
    }
}

impl Loader {
    /// Tables no section reads, each with the closest section name.
    fn unknown_sections(&mut self) {
        let mut unknown: Vec<&String> = self.root.keys().collect();
        unknown.sort();
        for name in unknown {
            let hint = hint("", name, self.read.iter().copied());
            self.report.problem(name, format!("unknown section{hint}"));
        }
    }
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

#[cfg(test)]
mod tests;
