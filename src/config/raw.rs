//! A serde mirror of the TOML file, section by section. Defaults live in
//! `config/defaults.toml`, merged under every file, so required fields here are always
//! present unless the operator's file breaks them. Each key is documented in
//! `config/example.toml`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Server {
    pub bind: String,
    pub base_path: String,
    pub trusted_proxies: Vec<String>,
    pub request_timeout: String,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub allow_plain_http: bool,
    pub http_redirect_bind: Option<String>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Deserialize)]
pub struct Tls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
pub struct RequestFilter {
    pub max_ticket_length: usize,
    pub max_url_length: usize,
    pub max_username_length: usize,
    pub max_value_length: usize,
}

#[derive(Debug, Deserialize)]
pub struct HttpHeaders {
    pub hsts: bool,
    pub hsts_max_age: String,
    pub hsts_include_subdomains: bool,
    pub frame_options: bool,
    pub frame_ancestors: Vec<String>,
    pub content_type_options: bool,
    pub content_security_policy: bool,
    pub referrer_policy: bool,
}

#[derive(Debug, Deserialize)]
pub struct Throttle {
    pub enabled: bool,
    pub threshold: u32,
    pub ip_threshold: u32,
    pub window: String,
    pub ip_delay: String,
    pub max_entries: usize,
}

#[derive(Debug, Deserialize)]
pub struct KeyPair {
    pub encryption_key: String,
    pub signing_key: String,
}

#[derive(Debug, Deserialize)]
pub struct Tgc {
    pub name: String,
    pub secure: bool,
    pub same_site: String,
    pub pin_to_session: bool,
    pub crypto: String,
    pub encryption_key: Option<String>,
    pub encryption_key_file: Option<String>,
    pub signing_key: Option<String>,
    pub signing_key_file: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub previous_keys: Vec<KeyPair>,
}

#[derive(Debug, Deserialize)]
pub struct Tickets {
    pub tgt_idle_ttl: String,
    pub tgt_hard_ttl: String,
    pub st_ttl: String,
    pub pt_ttl: String,
    pub reaper_interval: String,
    pub store: String,
    pub key: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub memory: TicketsMemory,
    pub redis: TicketsRedis,
}

#[derive(Debug, Default, Deserialize)]
pub struct TicketsMemory {
    pub snapshot_file: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TicketsRedis {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<String>,
    pub key_prefix: String,
    pub pool_size: u32,
    pub connect_timeout: String,
    pub command_timeout: String,
    pub encrypt: bool,
}

#[derive(Debug, Deserialize)]
pub struct Sso {
    pub proxy_authn_enabled: bool,
    pub create_cookie_on_renew: bool,
    pub allow_missing_service: bool,
    pub required_service_pattern: Option<String>,
    pub remember_me: RememberMe,
}

#[derive(Debug, Deserialize)]
pub struct RememberMe {
    pub enabled: bool,
    pub duration: String,
}

#[derive(Debug, Deserialize)]
pub struct Ui {
    pub default_locale: String,
    pub templates_dir: Option<String>,
    pub theme: Option<Theme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Theme {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub accent_colour: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct HttpClient {
    pub connect_timeout: String,
    pub read_timeout: String,
    pub trust_store: Option<String>,
    pub verify_hostname: bool,
    pub allow_local_urls: bool,
    pub authority_pattern: Option<String>,
    pub proxy: Option<String>,
    #[serde(default)]
    pub default_headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Slo {
    pub enabled: bool,
    pub workers: u32,
    pub queue_capacity: u32,
    pub timeout: String,
    pub on_expiry: bool,
}

#[derive(Debug, Deserialize)]
pub struct Login {
    pub form_ttl: String,
    pub flow_key: Option<String>,
    #[serde(default)]
    pub previous_flow_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Authn {
    pub max_concurrent_verifications: u32,
    pub verification_nice: u8,
    #[serde(default)]
    pub ldap: Vec<Ldap>,
}

#[derive(Debug, Deserialize)]
pub struct Ldap {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub start_tls: bool,
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    pub user_dn_template: Option<String>,
    pub base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    pub principal_attribute: Option<String>,
    #[serde(default = "yes")]
    pub trim_username: bool,
    #[serde(default = "yes")]
    pub lowercase_username: bool,
    #[serde(default)]
    pub strip_domain: bool,
    pub connect_timeout: Option<String>,
    pub operation_timeout: Option<String>,
    pub pool_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct Logout {
    pub follow_service_redirects: bool,
}

#[derive(Debug, Deserialize)]
pub struct Validation {
    pub attributes_on_v2: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, OneOrMany>,
}

#[derive(Debug, Deserialize)]
pub struct Service {
    pub id: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub pattern: String,
    #[serde(default)]
    pub evaluation_order: i32,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub attributes: Vec<String>,
    pub proxy_callback: Option<String>,
    #[serde(default)]
    pub accept_proxy_tickets: bool,
    pub logout_type: Option<String>,
    pub logout_url: Option<String>,
    pub response_type: Option<String>,
    #[serde(default = "yes")]
    pub sso: bool,
    pub max_auth_age: Option<String>,
    pub create_cookie_on_renew: Option<bool>,
    pub theme: Option<Theme>,
}

fn yes() -> bool {
    true
}
