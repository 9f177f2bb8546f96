//! Validated runtime settings: only these leave the config module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::UserRecord;
use crate::crypto::Secret;
use crate::services::RegisteredService;
use crate::tgc::{CryptoMode, TgcKeys};

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

#[derive(Debug, Clone)]
pub struct Server {
    pub bind: SocketAddr,
    /// `""` for the root, otherwise `/cas`-style: leading slash, no trailing slash.
    pub base_path: String,
    pub trusted_proxies: Vec<IpNet>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the kernel's accept queue, and idle ones
    /// are closed to let them in.
    pub max_connections: usize,
    /// Connections one client address may hold (requests in flight, for clients behind
    /// a trusted proxy); at most `max_connections`.
    pub max_connections_per_client: usize,
    /// Native HTTPS; `None` serves plain HTTP (behind a TLS-terminating proxy).
    pub tls: Option<Tls>,
    /// A plain-HTTP listener that only redirects to HTTPS.
    pub http_redirect_bind: Option<SocketAddr>,
}

/// The server certificate chain and key, read and checked at load.
#[derive(Clone)]
pub struct Tls {
    pub config: std::sync::Arc<rustls::ServerConfig>,
    /// The server certificate, for the names it is valid for.
    pub leaf: rustls_pki_types::CertificateDer<'static>,
}

impl Tls {
    /// The host names the certificate names exactly (no wildcards), lower-case, in its
    /// order: the names this server is reached by.
    pub fn host_names(&self) -> Vec<String> {
        webpki::EndEntityCert::try_from(&self.leaf)
            .map(|cert| {
                cert.valid_dns_names()
                    .filter(|name| !name.starts_with('*'))
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `host` (a name or an IP address, without a port) is one the certificate
    /// names exactly: a wildcard would also cover other hosts of the domain.
    pub fn names_exactly(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => webpki::EndEntityCert::try_from(&self.leaf).is_ok_and(|cert| {
                cert.verify_is_valid_for_subject_name(&rustls_pki_types::ServerName::IpAddress(
                    ip.into(),
                ))
                .is_ok()
            }),
            Err(_) => self
                .host_names()
                .iter()
                .any(|name| name.eq_ignore_ascii_case(bare)),
        }
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(***)")
    }
}

/// The request filter's length limits.
#[derive(Debug, Clone, Copy)]
pub struct RequestFilter {
    pub max_ticket_length: usize,
    pub max_url_length: usize,
    pub max_username_length: usize,
    pub max_value_length: usize,
}

/// Security headers, each switchable.
#[derive(Debug, Clone)]
pub struct HttpHeaders {
    /// `Strict-Transport-Security`, sent on HTTPS responses only.
    pub hsts: Option<String>,
    pub frame_options: bool,
    /// Origins allowed to frame the pages (CSP `frame-ancestors`); empty: none.
    pub frame_ancestors: Vec<String>,
    pub content_type_options: bool,
    pub content_security_policy: bool,
    pub referrer_policy: bool,
}

/// Failed-login throttling (THR-01..05).
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub enabled: bool,
    /// Failures per client IP and username within `window` before blocking.
    pub threshold: u32,
    /// Failed password checks per client IP (any username) within `window` before the
    /// address is slowed.
    pub ip_threshold: u32,
    pub window: Duration,
    /// The spacing of password checks from a slowed address.
    pub ip_delay: Duration,
    /// Bound on remembered IPs and IP+username pairs (oldest evicted first).
    pub max_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone)]
pub enum TgcKeySource {
    /// The first pair encrypts and signs; all are accepted when reading (rotation).
    Configured(Vec<TgcKeys>),
    /// Read from, or generated once into, this file (mode 0600).
    KeyFile(PathBuf),
    /// Fresh keys at every start: sessions end on restart (demo, tests).
    Ephemeral,
}

#[derive(Debug, Clone)]
pub struct Tgc {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
    pub pin_to_session: bool,
    pub crypto: CryptoMode,
    pub keys: TgcKeySource,
}

#[derive(Debug, Clone)]
pub struct Tickets {
    pub tgt_idle_ttl: Duration,
    pub tgt_hard_ttl: Duration,
    pub st_ttl: Duration,
    pub pt_ttl: Duration,
    pub reaper_interval: Duration,
    pub store: TicketStore,
    /// Encrypts tickets at rest and keys their stored ids (Redis, the snapshot file).
    pub key: Option<Secret<[u8; 32]>>,
    /// `[tickets.memory] snapshot_file`: live tickets kept across a graceful restart.
    pub snapshot_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum TicketStore {
    Memory,
    Redis(crate::tickets::RedisOptions),
}

#[derive(Debug, Clone)]
pub struct Sso {
    /// Proxy authentication (`pgtUrl`, `/proxy`) as a whole.
    pub proxy_authn_enabled: bool,
    /// TGC-09: a forced (renew) login also (re)creates the SSO cookie.
    pub create_cookie_on_renew: bool,
    /// `/login` without a `service` is allowed (the "you are signed in" page).
    pub allow_missing_service: bool,
    /// When set, every `service` given to `/login` must match it too (anchored).
    pub required_service_pattern: Option<regex::Regex>,
    /// Remember-me sessions and their lifetime; `None` when the feature is off.
    pub remember_me: Option<Duration>,
}

/// The user interface.
#[derive(Debug, Clone)]
pub struct Ui {
    pub default_locale: String,
    pub templates_dir: Option<PathBuf>,
    /// The look of pages not shown for a themed service.
    pub theme: crate::services::Theme,
}

/// The outbound HTTP client (proxy callbacks, single logout).
#[derive(Clone)]
pub struct HttpClient {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Extra trusted CA certificates (DER), used together with the system roots.
    pub extra_roots: Vec<Vec<u8>>,
    pub verify_hostname: bool,
    /// Allow loopback, private and link-local destinations (refused by default).
    pub allow_local_urls: bool,
    /// When set, the `host[:port]` of every outbound URL must match it (anchored).
    pub authority_pattern: Option<regex::Regex>,
    /// `host:port` of an HTTP proxy for outbound calls.
    pub proxy: Option<String>,
    pub default_headers: Vec<(String, String)>,
}

/// Header values may be credentials (`Authorization`): names only.
impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("extra_roots", &self.extra_roots.len())
            .field("verify_hostname", &self.verify_hostname)
            .field("allow_local_urls", &self.allow_local_urls)
            .field("authority_pattern", &self.authority_pattern)
            .field("proxy", &self.proxy)
            .field(
                "default_headers",
                &self
                    .default_headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Single logout (SLO-01..12).
#[derive(Debug, Clone)]
pub struct Slo {
    pub enabled: bool,
    /// Back-channel messages in flight at once.
    pub workers: usize,
    /// Messages waiting for a worker; beyond it new messages are dropped.
    pub queue_capacity: usize,
    /// Longest one back-channel message may take.
    pub timeout: Duration,
    /// Also notify services when a session ends by idle or hard timeout.
    pub on_expiry: bool,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub form_ttl: Duration,
    /// Keys for login-flow tokens: the first seals, all open (rotation). Empty: a random
    /// key per process.
    pub flow_keys: Vec<Secret<[u8; 32]>>,
}

#[derive(Debug, Clone)]
pub struct Authn {
    pub max_concurrent_verifications: usize,
    /// How much lower than the request threads password verifiers run (0 to 19).
    pub verification_nice: u8,
    /// LDAP / Active Directory sources, tried in order after the static users.
    pub ldap: Vec<crate::auth::ldap::LdapOptions>,
}

#[derive(Debug, Clone)]
pub struct Logout {
    pub follow_service_redirects: bool,
}

#[derive(Debug, Clone)]
pub struct Validation {
    pub attributes_on_v2: bool,
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
                if pattern.is_some_and(crate::services::ServicePattern::has_loose_host) {
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
