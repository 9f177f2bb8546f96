//! `[[authn.ldap]]`: LDAP and Active Directory sources. Entries of an array of tables
//! take no defaults from the embedded file, so their defaults are the serde defaults
//! below (documented, commented out, in `config/example.toml`).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::report::Scope;
use crate::crypto::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    name: String,
    url: String,
    #[serde(default)]
    start_tls: bool,
    ca_file: Option<String>,
    bind_dn: Option<String>,
    bind_password: Option<String>,
    user_dn_template: Option<String>,
    base_dn: Option<String>,
    user_filter: Option<String>,
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    principal_attribute: Option<String>,
    #[serde(default = "yes")]
    trim_username: bool,
    #[serde(default = "yes")]
    lowercase_username: bool,
    #[serde(default)]
    strip_domain: bool,
    #[serde(default = "five_seconds")]
    connect_timeout: String,
    #[serde(default = "five_seconds")]
    operation_timeout: String,
    #[serde(default = "default_pool_size")]
    pool_size: usize,
}

fn default_mode() -> String {
    "ldap".to_owned()
}

fn yes() -> bool {
    true
}

fn five_seconds() -> String {
    "5s".to_owned()
}

fn default_pool_size() -> usize {
    4
}

/// Every source of `authn.ldap`; `None` if any has a problem. `cx` is `[authn]`.
pub(super) fn validate_all(raw: Vec<Raw>, cx: &mut Scope<'_>) -> Option<Vec<LdapOptions>> {
    let mut names = HashSet::new();
    let mut sources = Vec::new();
    let mut ok = true;
    for (i, source) in raw.into_iter().enumerate() {
        match source.validate(&mut cx.entry("ldap", i), &mut names) {
            Some(source) => sources.push(source),
            None => ok = false,
        }
    }
    ok.then_some(sources)
}

impl Raw {
    fn validate(self, cx: &mut Scope<'_>, names: &mut HashSet<String>) -> Option<LdapOptions> {
        let before = cx.problems();
        if self.name.trim().is_empty() || !names.insert(self.name.clone()) {
            cx.problem("name", "give each source a unique, non-empty name");
        }
        let scheme = url::Url::parse(&self.url)
            .ok()
            .map(|u| u.scheme().to_owned());
        match scheme.as_deref() {
            Some("ldap") => {}
            Some("ldaps") if self.start_tls => {
                cx.problem(
                    "start_tls",
                    "ldaps:// is already TLS; use ldap:// with start_tls",
                );
            }
            Some("ldaps") => {}
            // Never quote the URL itself: it may carry a password.
            Some(other) => cx.problem(
                "url",
                format!("is not an ldap:// or ldaps:// URL (its scheme is `{other}`)"),
            ),
            None => cx.problem(
                "url",
                "is not an ldap:// or ldaps:// URL, e.g. \"ldaps://ldap.example.org\"",
            ),
        }
        // Plain LDAP is allowed (a local directory) but reported: see `Settings::warnings`.
        if scheme.as_deref() == Some("ldap") && !self.start_tls && self.ca_file.is_some() {
            cx.problem(
                "ca_file",
                "is only used over TLS: set start_tls = true or use ldaps://",
            );
        }
        let extra_roots = match &self.ca_file {
            None => Vec::new(),
            Some(file) => cx.pem_certificates("ca_file", file).unwrap_or_default(),
        };
        let mode = match self.mode.as_str() {
            "ldap" => Mode::Ldap,
            "active_directory" => Mode::ActiveDirectory,
            other => {
                cx.problem(
                    "mode",
                    format!("`{other}` is not \"ldap\" or \"active_directory\""),
                );
                Mode::Ldap
            }
        };
        let bind = match (self.bind_dn, self.bind_password) {
            // An empty password is an unauthenticated bind (RFC 4513 5.1.2): LDAP servers
            // accept it and the search would run anonymously.
            (Some(_), Some(password)) if password.is_empty() => {
                cx.problem(
                    "bind_password",
                    "is empty, which LDAP treats as an anonymous bind; give the service account's password",
                );
                None
            }
            (Some(dn), Some(password)) => Some((dn, Secret::new(password))),
            (None, None) => None,
            (Some(_), None) => {
                cx.problem(
                    "bind_password",
                    "bind_dn needs a bind_password (it may be ENC(...))",
                );
                None
            }
            (None, Some(_)) => {
                cx.problem("bind_dn", "bind_password without bind_dn");
                None
            }
        };
        let lookup = lookup(
            cx,
            mode,
            self.user_dn_template,
            self.base_dn,
            self.user_filter,
        );
        let connect_timeout = cx.duration("connect_timeout", &self.connect_timeout);
        let operation_timeout = cx.duration("operation_timeout", &self.operation_timeout);
        cx.within("pool_size", self.pool_size, 1..=256);
        if cx.problems() > before {
            return None;
        }
        Some(LdapOptions {
            name: self.name,
            url: self.url,
            start_tls: self.start_tls,
            extra_roots,
            bind,
            lookup: lookup?,
            mode,
            attributes: self.attributes.into_iter().collect(),
            principal_attribute: self.principal_attribute,
            username: UsernameRules {
                trim: self.trim_username,
                lowercase: self.lowercase_username,
                strip_domain: self.strip_domain,
            },
            connect_timeout: connect_timeout?,
            operation_timeout: operation_timeout?,
            pool_size: self.pool_size,
        })
    }
}

/// How a user's entry is found: a DN template (direct bind) or a search under a base DN.
fn lookup(
    cx: &mut Scope<'_>,
    mode: Mode,
    user_dn_template: Option<String>,
    base_dn: Option<String>,
    user_filter: Option<String>,
) -> Option<Lookup> {
    match (user_dn_template, base_dn) {
        (Some(template), None) => {
            if !template.contains("{user}") {
                cx.problem(
                    "user_dn_template",
                    "must contain {user}, e.g. \"uid={user},ou=people,dc=example,dc=org\"",
                );
            }
            Some(Lookup::Template(template))
        }
        (None, Some(base_dn)) => {
            let filter = user_filter.unwrap_or_else(|| {
                match mode {
                    Mode::Ldap => "(uid={user})",
                    Mode::ActiveDirectory => "(sAMAccountName={user})",
                }
                .to_owned()
            });
            if !filter.contains("{user}") || !filter.starts_with('(') || !filter.ends_with(')') {
                cx.problem(
                    "user_filter",
                    "must be a parenthesised filter containing {user}, e.g. \"(uid={user})\"",
                );
            }
            Some(Lookup::Search { base_dn, filter })
        }
        (Some(_), Some(_)) => {
            cx.problem(
                "user_dn_template",
                "give either user_dn_template (direct bind) or base_dn (search), not both",
            );
            None
        }
        (None, None) => {
            cx.problem(
                "base_dn",
                "set base_dn (search then bind) or user_dn_template (direct bind)",
            );
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ldap,
    /// Active Directory: account state comes from the bind error's sub-code.
    ActiveDirectory,
}

/// How the user's entry is found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Search under `base_dn` with `filter`, where `{user}` is the escaped username.
    Search { base_dn: String, filter: String },
    /// Bind directly as this DN, where `{user}` is the DN-escaped username (or, for
    /// Active Directory, a UPN template such as `{user}@example.org`).
    Template(String),
}

/// How a login name becomes the name looked up.
#[derive(Debug, Clone, Copy)]
pub struct UsernameRules {
    pub trim: bool,
    pub lowercase: bool,
    /// `jdoe@example.org` → `jdoe`.
    pub strip_domain: bool,
}

/// One `[[authn.ldap]]` source, validated.
#[derive(Debug, Clone)]
pub struct LdapOptions {
    pub name: String,
    pub url: String,
    pub start_tls: bool,
    /// Extra trusted CAs (DER), with the system roots.
    pub extra_roots: Vec<Vec<u8>>,
    /// The service account; `None` searches anonymously.
    pub bind: Option<(String, Secret<String>)>,
    pub lookup: Lookup,
    pub mode: Mode,
    /// Directory attribute → released attribute name.
    pub attributes: Vec<(String, String)>,
    /// The directory attribute whose value becomes the principal id; default the login name.
    pub principal_attribute: Option<String>,
    pub username: UsernameRules,
    pub connect_timeout: std::time::Duration,
    pub operation_timeout: std::time::Duration,
    pub pool_size: usize,
}

impl LdapOptions {
    /// `url` without any user or password it may carry, for messages.
    pub fn display_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string()
            }
            Err(_) => "(not a URL)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_problem, keys, load_text};

    const SOURCE: &str = "[[authn.ldap]]\nname = \"corp\"\nurl = \"ldap://ldap.example.org\"\nbase_dn = \"dc=example,dc=org\"\n";

    #[test]
    fn ldap_mistakes_name_the_file_and_the_entry() {
        let e = load_text(&format!(
            "{SOURCE}[[authn.ldap]]\nname = \"corp\"\nurl = \"https://ldap.example.org\"\nmode = \"novell\"\npool_size = 0\nbind_password = \"x\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "authn.ldap[1].name",
                "authn.ldap[1].url",
                "authn.ldap[1].mode",
                "authn.ldap[1].bind_dn",
                "authn.ldap[1].base_dn",
                "authn.ldap[1].pool_size"
            ]
        );
        assert_problem(&e, "authn.ldap[1].url", "is not an ldap:// or ldaps:// URL");
        // A URL may carry a password: never quoted back.
        let e = load_text(&format!(
            "{SOURCE}[[authn.ldap]]\nname = \"corp\"\nurl = \"https://admin:hunter2@ldap.example.org\"\nbase_dn = \"dc=x\"\n"
        ))
        .unwrap_err();
        assert_problem(&e, "authn.ldap[1].url", "its scheme is `https`");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn plain_ldap_is_a_warning_and_a_ca_file_without_tls_a_mistake() {
        let settings = load_text(SOURCE).unwrap();
        let warnings = settings.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("`corp` has no TLS"), "{warnings:?}");

        let e = load_text(&format!("{SOURCE}ca_file = \"/nonexistent/ca.pem\"\n")).unwrap_err();
        assert!(
            e.to_string().contains("ca_file`: is only used over TLS"),
            "{e}"
        );
    }

    #[test]
    fn entries_take_their_defaults_from_the_raw_struct() {
        let s = load_text(SOURCE).unwrap();
        let source = &s.authn.ldap[0];
        assert_eq!(source.pool_size, 4);
        assert_eq!(source.connect_timeout, std::time::Duration::from_secs(5));
        assert!(source.username.trim && source.username.lowercase);
        assert!(!source.username.strip_domain && !source.start_tls);
        assert!(matches!(
            &source.lookup,
            crate::auth::ldap::Lookup::Search { filter, .. } if filter == "(uid={user})"
        ));
    }
}
