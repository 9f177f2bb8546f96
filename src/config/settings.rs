//! The validated settings: only these leave the config module. Each section's type
//! lives beside the raw form it is checked from (`server.rs`, `tgc.rs`...).

use std::path::PathBuf;

use super::RegisteredService;
use super::UserRecord;
use super::{
    Authn, HttpClient, HttpHeaders, Login, Logout, RequestFilter, Server, Slo, Sso, Tgc, Throttle,
    TicketStore, Tickets, Ui, Validation,
};

/// Where the settings came from, for messages and key-file placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No `--config`: the embedded demo configuration.
    Demo,
    File(PathBuf),
    /// A configuration given as text (tests, tools).
    Text(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Demo => f.write_str("the embedded demo config"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Text(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub origin: Origin,
    pub server: Server,
    pub request_filter: RequestFilter,
    pub http_headers: HttpHeaders,
    pub throttle: Throttle,
    pub tgc: Tgc,
    pub tickets: Tickets,
    pub sso: Sso,
    pub ui: Ui,
    pub http_client: HttpClient,
    pub slo: Slo,
    pub login: Login,
    pub authn: Authn,
    pub logout: Logout,
    pub validation: Validation,
    pub users: Vec<UserRecord>,
    pub services: Vec<RegisteredService>,
}

impl Settings {
    /// True when the demo configuration is in use (no `--config`).
    pub fn is_demo(&self) -> bool {
        self.origin == Origin::Demo
    }

    /// Choices that are allowed but weaken security, for the log at startup and for
    /// `check-config` (loading happens before logging exists).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .authn
            .ldap
            .iter()
            .filter(|l| l.url.starts_with("ldap://") && !l.start_tls)
            .map(|l| {
                format!(
                    "LDAP source `{}` has no TLS: passwords cross the network in clear; \
                     use ldaps:// or start_tls = true",
                    l.name
                )
            })
            .collect();
        if let TicketStore::Redis(redis) = &self.tickets.store
            && redis.is_plain_remote()
        {
            warnings.push(
                "the Redis ticket store is reached without TLS on another host: its password \
                 crosses the network in clear (the tickets are encrypted); use rediss://"
                    .to_owned(),
            );
        }
        for (i, service) in self.services.iter().enumerate() {
            let loose = [
                ("pattern", Some(&service.pattern)),
                ("proxy_callback", service.proxy_callback.as_ref()),
            ];
            for (key, pattern) in loose {
                if pattern.is_some_and(super::pattern::ServicePattern::has_loose_host) {
                    warnings.push(format!(
                        "services[{i}].{key} (`{}`): the host part of this regex can match `/`, `?`, `#`, `@` or `\\` \
                         (an unescaped `.`, `.*` or a class such as `[^/]` before the domain), so a URL on \
                         another host matches it, e.g. `https://evil.example?.your.domain/`; spell the host \
                         out, e.g. `[a-z0-9-]+\\.example\\.org`",
                        service.name
                    ));
                }
            }
        }
        if let TicketStore::Redis(redis) = &self.tickets.store
            && !redis.encrypt
        {
            warnings.push(
                "tickets.redis.encrypt is off: whoever can read Redis can use the sessions and \
                 tickets it holds"
                    .to_owned(),
            );
        }
        warnings
    }
}
