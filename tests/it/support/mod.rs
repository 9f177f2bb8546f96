//! The integration-test harness: the real server on an ephemeral loopback port with a
//! manual clock, a `Browser` (cookie jar, no redirect following) and a `CasClient` that
//! parses validation documents. Tests drive the server over HTTP only.
#![allow(dead_code)] // each test module uses a different part of the harness

use std::collections::HashMap;
use std::sync::Arc;

use cas_server::App;
use cas_server::clock::ManualClock;
use cas_server::config::{self, Settings, Source};
use cas_server::services::RegisteredService;
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore as _, Jar};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use tokio::sync::oneshot;

pub mod callback;
pub mod chrome;
pub mod process;
pub mod receiver;
pub mod redis;
pub mod redis_cluster;
pub mod slapd;

pub const PASSWORD: &str = "correct horse";
pub const BOB_PASSWORD: &str = "hunter2";
/// Registered through `prefix:https://app.example.org/`; its own query must survive.
pub const SERVICE: &str = "https://app.example.org/cas/login?next=%2Fhome&b=2";
/// Another URL under the same registry entry as `SERVICE` (SVC-11).
pub const OTHER_SERVICE: &str = "https://app.example.org/other";
/// Registered by an exact pattern; releases no attributes.
pub const EXACT_SERVICE: &str = "https://exact.example.org/";
pub const DISABLED_SERVICE: &str = "https://disabled.example.org/";
pub const FOREIGN_SERVICE: &str = "https://evil.example.net/";
pub const PORTAL: &str = "https://portal.example.org/app";
pub const BACKEND: &str = "https://backend.example.org/api";
pub const DATABASE: &str = "https://db.example.org/query";
pub const USER_AGENT: &str = "cas-server-tests/1.0 (Browser)";

pub const CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"
# Lets tests present another client IP through X-Forwarded-For (TGC pinning).
trusted_proxies = ["127.0.0.1", "::1"]

[tgc]
# The harness speaks plain HTTP on loopback.
secure = false

[[users]]
username = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$7iJDdl4r0xSxRGj8hZDUXA$KmYgRMhG+H6ZYmIgJVw20xver4W41x1YCS7p9u8wLyQ"
attributes = { mail = "alice@example.org", memberOf = ["staff", "faculty"], note = "  <b>Zoë & \"Ålice\"</b> ' ", "1st place" = "gold" }

[[users]]
username = "bob"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$8ycY1j9Ejg5Szru0JDMufA$VeO0QIi5aH5DDICUs8AmOi6MZvNjJlgdW//yHtB6vSA"

[[services]]
id = 1
name = "Example App"
pattern = "prefix:https://app.example.org/"
attributes = ["mail", "memberOf", "note", "1st place"]

[[services]]
id = 2
name = "Exact App"
pattern = "https://exact.example.org/"

[[services]]
id = 3
name = "Disabled App"
pattern = "https://disabled.example.org/"
enabled = false

# Proxy authentication: the portal may receive PGTs at the test callback endpoint and
# obtain proxy tickets for the backend, which may proxy on to the database API.
[[services]]
id = 4
name = "Portal"
pattern = "prefix:https://portal.example.org/"
proxy_callback = 'regex:https?://(localhost|127\.0\.0\.1):\d+/cb/.*'
attributes = ["mail"]

[[services]]
id = 5
name = "Backend"
pattern = "prefix:https://backend.example.org/"
accept_proxy_tickets = true
proxy_callback = 'regex:https://(localhost|127\.0\.0\.1):\d+/cb/.*'
attributes = ["mail"]

[[services]]
id = 6
name = "Database API"
pattern = "prefix:https://db.example.org/"
accept_proxy_tickets = true

# Single logout: applications on the loopback receiver (reachable only with
# http_client.allow_local_urls, which the SLO tests set).
[[services]]
id = 7
name = "Loopback app one"
pattern = 'regex:http://127\.0\.0\.1:\d+/one/.*'

[[services]]
id = 8
name = "Loopback app two"
pattern = 'regex:http://127\.0\.0\.1:\d+/two/.*'

[[services]]
id = 9
name = "Quiet app"
pattern = 'regex:http://127\.0\.0\.1:\d+/quiet/.*'
logout_type = "none"

[[services]]
id = 10
name = "Front-channel app"
pattern = "prefix:https://front.example.org/"
logout_type = "front_channel"
logout_url = "https://front.example.org/logout?from=cas"

[[services]]
id = 11
name = "Custom logout URL app"
pattern = 'regex:http://127\.0\.0\.1:\d+/custom/.*'
# The test points logout_url at the receiver's /custom-logout once its port is known.

[[services]]
id = 12
name = "Slow app"
pattern = 'regex:http://127\.0\.0\.1:\d+/slow/.*'
"#;

/// The test configuration, loaded exactly as an operator's file would be.
pub fn settings() -> Settings {
    config::load_with_env(
        Source::Text {
            name: "test config",
            text: CONFIG,
        },
        &HashMap::new(),
    )
    .expect("the test configuration is valid")
}

/// The test configuration with `extra` sections (which `CONFIG` must not have) and
/// `tgc_keys` (lines for `[tgc]`) added.
pub fn settings_with(tgc_keys: &str, extra: &str) -> Settings {
    let text = format!(
        "{}\n{extra}",
        CONFIG.replacen("[tgc]\n", &format!("[tgc]\n{tgc_keys}"), 1)
    );
    config::load_with_env(
        Source::Text {
            name: "test config",
            text: &text,
        },
        &HashMap::new(),
    )
    .expect("the test configuration is valid")
}

/// With `CAS_TEST_REDIS_URL` set (`redis::the_protocol_suite_passes_on_the_redis_store`
/// sets it for a second pass of this binary), servers that
/// would keep their tickets in memory use that Redis instead, each under its own key
/// prefix: the whole protocol suite then runs against the Redis store. With
/// `CAS_TEST_REDIS_CLUSTER` (node URLs, space-separated), on that Redis Cluster.
fn on_shared_redis(settings: &mut Settings) {
    use cas_server::config::{TgcKeySource, TicketStore};
    let cluster: Vec<String> = std::env::var("CAS_TEST_REDIS_CLUSTER")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let Some(url) = std::env::var("CAS_TEST_REDIS_URL")
        .ok()
        .or_else(|| cluster.first().cloned())
    else {
        return;
    };
    if !matches!(settings.tickets.store, TicketStore::Memory)
        || settings.tickets.snapshot_file.is_some()
    {
        return;
    }
    let key = || cas_server::crypto::Secret::new(cas_server::crypto::random_bytes::<32>());
    settings.tickets.store = TicketStore::Redis(Box::new(cas_server::tickets::RedisOptions {
        url: cas_server::crypto::Secret::new(url),
        username: None,
        password: None,
        ca_pem: None,
        key_prefix: format!("cas-suite-{}:", cas_server::crypto::random_base62(10)),
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(2),
        command_timeout: std::time::Duration::from_secs(2),
        encrypt: true,
        refuse_eviction: false,
        sentinel: None,
        cluster_nodes: cluster,
        min_replicas_acks: 0,
        replica_ack_timeout: std::time::Duration::from_millis(500),
    }));
    settings.tickets.key = Some(key());
    if matches!(settings.tgc.keys, TgcKeySource::Ephemeral) {
        settings.tgc.keys = TgcKeySource::Configured(vec![cas_server::tgc::TgcKeys::generate()]);
    }
    if settings.login.flow_keys.is_empty() {
        settings.login.flow_keys = vec![key()];
    }
}

/// The keys every node of a test cluster shares: TGC, login form and registry keys.
pub struct ClusterKeys {
    pub tgc: String,
    pub flow: String,
    pub registry: String,
}

impl ClusterKeys {
    pub fn generate() -> Self {
        let key = || cas_server::crypto::b64url_encode(&cas_server::crypto::random_bytes::<32>());
        Self {
            tgc: cas_server::tgc::TgcKeys::generate().to_config(),
            flow: key(),
            registry: key(),
        }
    }

    /// Settings for a node on the Redis at `url`, keys under `prefix`.
    pub fn redis_settings(&self, url: &str, prefix: &str) -> Settings {
        self.redis_settings_with(url, prefix, "")
    }

    /// `redis_settings` with more `[tickets.redis]` lines (credentials, a CA file).
    pub fn redis_settings_with(&self, url: &str, prefix: &str, redis: &str) -> Settings {
        settings_with(
            &self.tgc,
            &format!(
                "[login]\nflow_key = \"{}\"\n[tickets]\nstore = \"redis\"\nkey = \"{}\"\n[tickets.redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\nconnect_timeout = \"500ms\"\ncommand_timeout = \"500ms\"\n{redis}",
                self.flow, self.registry
            ),
        )
    }
}

/// The registry entry numbered `id` in `CONFIG`, for a test that changes one service.
pub fn service_mut(settings: &mut Settings, id: u32) -> &mut RegisteredService {
    settings
        .services
        .iter_mut()
        .find(|s| s.id == id)
        .expect("a service with that id in CONFIG")
}

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    /// `http://127.0.0.1:PORT/cas` (or `https://` when started with TLS)
    pub base: String,
    pub clock: ManualClock,
    /// The plain-HTTP redirect listener, when configured.
    pub redirect_addr: Option<std::net::SocketAddr>,
    /// The CA clients must trust when the server speaks TLS.
    ca: Option<reqwest::Certificate>,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Writes a file only its owner may read, as secrets and private keys must be.
pub fn write_private(path: &std::path::Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A server certificate for 127.0.0.1 and localhost from `pki`, loaded through the
/// configuration exactly as an operator's `[server.tls]` would be.
pub fn tls_settings(pki: &callback::TestPki) -> (cas_server::config::Tls, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let leaf = pki.leaf(&["127.0.0.1", "localhost"]);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    write_private(&key, &leaf.key_pem);
    let text = format!(
        "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let settings = config::load_with_env(
        Source::Text {
            name: "tls",
            text: &text,
        },
        &HashMap::new(),
    )
    .expect("the TLS configuration is valid");
    (settings.server.tls.expect("TLS configured"), dir)
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::launch(configure, None).await
    }

    /// Serves over HTTPS with a certificate from `pki`; the harness clients trust its CA.
    pub async fn start_tls(pki: &callback::TestPki, configure: impl FnOnce(&mut Settings)) -> Self {
        let (tls, _files) = tls_settings(pki);
        let ca = reqwest::Certificate::from_der(&pki.ca_der()).unwrap();
        Self::launch(
            |s| {
                s.server.tls = Some(tls);
                configure(s);
            },
            Some(ca),
        )
        .await
    }

    async fn launch(
        configure: impl FnOnce(&mut Settings),
        ca: Option<reqwest::Certificate>,
    ) -> Self {
        let mut settings = settings();
        configure(&mut settings);
        Self::launch_settings(settings, ca).await
    }

    /// Starts a server on exactly these settings.
    pub async fn start_settings(settings: Settings) -> Self {
        Self::launch_settings(settings, None).await
    }

    async fn launch_settings(mut settings: Settings, ca: Option<reqwest::Certificate>) -> Self {
        on_shared_redis(&mut settings);
        let clock = ManualClock::new();
        let app = App::build(settings, Arc::new(clock.clone()))
            .await
            .expect("the server starts");
        let base = app.url();
        let redirect_addr = app.redirect_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Self {
            base,
            clock,
            redirect_addr,
            ca,
            shutdown: Some(tx),
            running: Some(running),
        }
    }

    /// A graceful shutdown, as on SIGTERM, waited for to the end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            tokio::time::timeout(std::time::Duration::from_secs(30), running)
                .await
                .expect("the server stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }

    /// The port the main listener is on.
    pub fn port(&self) -> u16 {
        reqwest::Url::parse(&self.base)
            .ok()
            .and_then(|u| u.port())
            .expect("the base URL names its port")
    }

    /// A client builder that trusts this server's certificate, redirects off.
    pub fn http(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        match &self.ca {
            Some(ca) => builder.tls_certs_only([ca.clone()]),
            None => builder,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn browser(&self) -> Browser {
        Browser::with_client(&self.base, self.http(), USER_AGENT, None)
    }

    /// A new browser holding alice's SSO session, from a password login without a
    /// service. The login's response is not checked: tests about it call `login`.
    pub async fn signed_in_browser(&self) -> Browser {
        let browser = self.browser();
        browser.login(None, "alice", PASSWORD).await;
        assert!(browser.tgc().is_some(), "alice is signed in");
        browser
    }

    /// A plain GET (redirects off, this server's CA trusted) answering the HTTP response
    /// itself, for assertions on headers, status or protocol that `CasClient` drops.
    pub async fn raw_get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http()
            .build()
            .unwrap()
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    pub fn client(&self) -> CasClient {
        CasClient {
            http: self.http().build().unwrap(),
            base: self.base.clone(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A browser: keeps cookies, never follows redirects, sends a fixed User-Agent and,
/// optionally, an `X-Forwarded-For` to appear to come from another IP.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
}

impl Browser {
    pub fn new(base: &str, user_agent: &str, forwarded_for: Option<&str>) -> Self {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        Self::with_client(base, builder, user_agent, forwarded_for)
    }

    fn with_client(
        base: &str,
        builder: reqwest::ClientBuilder,
        user_agent: &str,
        forwarded_for: Option<&str>,
    ) -> Self {
        let jar = Arc::new(Jar::default());
        let mut headers = HeaderMap::new();
        if let Some(ip) = forwarded_for {
            headers.insert("x-forwarded-for", ip.parse().unwrap());
        }
        let http = builder
            .cookie_provider(jar.clone())
            .user_agent(user_agent)
            .default_headers(headers)
            .build()
            .unwrap();
        Self {
            http,
            jar,
            base: base.to_owned(),
        }
    }

    /// The same browser (cookies and all) pointed at another server: a second node
    /// behind the same load balancer.
    pub fn on(&self, server: &TestServer) -> Browser {
        Browser {
            http: self.http.clone(),
            jar: self.jar.clone(),
            base: server.base.clone(),
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_login(&self, query: &[(&str, &str)]) -> reqwest::Response {
        self.get("/login", query).await
    }

    pub async fn post_login(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.base))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Opens the form (for `service`) and returns its hidden `lt` token. With a session,
    /// the form is reached as a person would: through `renew` (LOGIN-06).
    pub async fn form_token(&self, service: Option<&str>) -> String {
        let mut query: Vec<(&str, &str)> = service.map(|s| ("service", s)).into_iter().collect();
        if self.tgc().is_some() {
            query.push(("renew", "true"));
        }
        let page = self.get_login(&query).await;
        assert_eq!(page.status(), StatusCode::OK, "the login form is shown");
        hidden_input(&page.text().await.unwrap(), "lt").expect("the form carries an lt token")
    }

    /// The GET's body as text, whatever the status (for pages the test reads).
    pub async fn get_text(&self, path: &str, query: &[(&str, &str)]) -> String {
        self.get(path, query).await.text().await.unwrap()
    }

    /// Posts the login form as a person fills it in: username, password, the form's
    /// `lt`, the service if any, then the `extra` fields (boxes such as `rememberMe`).
    pub async fn submit_login(
        &self,
        service: Option<&str>,
        username: &str,
        password: &str,
        lt: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![("username", username), ("password", password), ("lt", lt)];
        if let Some(s) = service {
            form.push(("service", s));
        }
        form.extend_from_slice(extra);
        self.post_login(&form).await
    }

    /// The whole login as a person does it: open the form, fill it, submit it.
    pub async fn login(
        &self,
        service: Option<&str>,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.login_with(service, username, password, &[]).await
    }

    /// `login`, posting the `extra` fields too (`rememberMe`, `warn`, `renew`...).
    pub async fn login_with(
        &self,
        service: Option<&str>,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let lt = self.form_token(service).await;
        self.submit_login(service, username, password, &lt, extra)
            .await
    }

    /// Logs alice in for `service` and returns the service ticket from the redirect.
    pub async fn login_for_ticket(&self, service: &str) -> String {
        self.login_for_ticket_as(service, "alice", PASSWORD).await
    }

    /// Logs `username` in for `service` and returns the service ticket.
    pub async fn login_for_ticket_as(
        &self,
        service: &str,
        username: &str,
        password: &str,
    ) -> String {
        let response = self.login(Some(service), username, password).await;
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "a successful login redirects"
        );
        ticket_in(&location(&response).expect("a Location header"))
    }

    /// SSO: asks for `service` with the session cookie and returns the new ticket.
    pub async fn sso_ticket(&self, service: &str) -> String {
        let response = self.get_login(&[("service", service)]).await;
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "SSO redirects at once"
        );
        ticket_in(&location(&response).expect("a Location header"))
    }

    /// The TGC value the jar holds for the CAS URLs, if any.
    pub fn tgc(&self) -> Option<String> {
        let url = format!("{}/login", self.base).parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("TGC="))
            .map(str::to_owned)
    }

    /// Puts a TGC value into the jar, as a thief or a tampering user would.
    pub fn set_tgc(&self, value: &str) {
        let url = format!("{}/login", self.base).parse().unwrap();
        self.jar
            .add_cookie_str(&format!("TGC={value}; Path=/cas"), &url);
    }
}

/// Asserts that `response` is the login form: no SSO session was recognised.
pub async fn assert_shows_the_form(response: reqwest::Response, why: &str) {
    assert_eq!(response.status(), StatusCode::OK, "{why}");
    assert!(location(&response).is_none(), "{why}: no redirect");
    let html = response.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{why}: {html}");
    assert!(
        !holds_a_service_ticket(&html),
        "{why}: no ticket on the page"
    );
}

/// Whether `html` carries a service ticket: `ST-` and 29 base62 characters, standing
/// alone. (A bare `ST-` can occur by chance inside a random form token.)
pub fn holds_a_service_ticket(html: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    html.match_indices("ST-").any(|(at, _)| {
        let before = html[..at].chars().next_back();
        let body: String = html[at + 3..].chars().take_while(|c| token(*c)).collect();
        !before.is_some_and(token)
            && body.len() == 29
            && body.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// Asserts that `browser`, asking for `SERVICE`, is shown the login form: whatever TGC
/// it holds (none, tampered, moved, expired, logged out) gives no SSO.
pub async fn assert_no_sso(browser: &Browser, why: &str) {
    let response = browser.get_login(&[("service", SERVICE)]).await;
    assert_shows_the_form(response, why).await;
}

/// Asserts that `ticket` validates for `service` at `/serviceValidate` as `user`.
pub async fn assert_validates_as(server: &TestServer, service: &str, ticket: &str, user: &str) {
    let validation = server
        .client()
        .validate("/serviceValidate", service, ticket)
        .await;
    assert_eq!(validation.user(), user);
}

/// Asks for `service` with the browser's cookie and checks the ticket validates as `user`.
pub async fn assert_sso_as(server: &TestServer, browser: &Browser, service: &str, user: &str) {
    let ticket = browser.sso_ticket(service).await;
    assert_validates_as(server, service, &ticket, user).await;
}

/// Every `Set-Cookie` header of `response`, in order.
pub fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Set-Cookie` header that sets or clears the TGC (asserts there is exactly one).
pub fn tgc_set_cookie(response: &reqwest::Response) -> String {
    let cookies: Vec<String> = set_cookies(response)
        .into_iter()
        .filter(|c| c.starts_with("TGC="))
        .collect();
    assert_eq!(cookies.len(), 1, "exactly one TGC Set-Cookie: {cookies:?}");
    cookies[0].clone()
}

pub fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The single `ticket` parameter of a redirect URL (asserts there is exactly one).
pub fn ticket_in(location: &str) -> String {
    let url = reqwest::Url::parse(location).expect("an absolute Location");
    let tickets: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(tickets.len(), 1, "exactly one ticket in {location}");
    tickets[0].clone()
}

/// The value of `<input ... name="NAME" value="...">`, HTML-unescaped.
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html_unescape(&html[start..end]))
}

/// The HTML entities templates emit in attribute values, decoded as a browser would.
pub fn html_unescape(text: &str) -> String {
    html_escape::decode_html_entities(text).into_owned()
}

/// A CAS client calling the validation endpoints.
pub struct CasClient {
    pub http: reqwest::Client,
    pub base: String,
}

/// A parsed response; `raw` keeps the body for extra assertions.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: String,
    pub raw: String,
}

impl CasClient {
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Response {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        Self::read(r).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        Self::read(r).await
    }

    async fn read(r: reqwest::Response) -> Response {
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Response {
            status,
            content_type,
            raw: r.text().await.unwrap(),
        }
    }

    /// The unparsed answer of `path` for `service` and `ticket`, for assertions on the
    /// exact text (CAS 1 lines, escaping, content type) that `validate` parses away.
    pub async fn validate_raw(&self, path: &str, service: &str, ticket: &str) -> Response {
        self.get(path, &[("service", service), ("ticket", ticket)])
            .await
    }

    /// Validates at `path` (e.g. `/p3/serviceValidate`) and parses the XML document.
    pub async fn validate(&self, path: &str, service: &str, ticket: &str) -> Validation {
        self.validate_with(path, &[("service", service), ("ticket", ticket)])
            .await
    }

    pub async fn validate_with(&self, path: &str, query: &[(&str, &str)]) -> Validation {
        let r = self.get(path, query).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "GEN-04: validation answers 200: {}",
            r.raw
        );
        parse_validation(&r.raw)
    }
}

pub const CAS_NS: &str = "http://www.yale.edu/tp/cas";

/// A validation document, parsed by a conforming XML parser (so it must be well-formed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    Success {
        user: String,
        /// `None` when there is no `cas:attributes` element; names without prefix.
        attributes: Option<Vec<(String, String)>>,
        pgt_iou: Option<String>,
        proxies: Option<Vec<String>>,
    },
    Failure {
        code: String,
        description: String,
    },
}

impl Validation {
    pub fn user(&self) -> &str {
        match self {
            Self::Success { user, .. } => user,
            Self::Failure { code, description } => {
                panic!("expected success, got {code}: {description}")
            }
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Failure { code, .. } => code,
            Self::Success { user, .. } => panic!("expected failure, got success for {user}"),
        }
    }

    /// The failure's description (panics on a success, like `code`).
    pub fn description(&self) -> &str {
        match self {
            Self::Failure { description, .. } => description,
            Self::Success { user, .. } => panic!("expected failure, got success for {user}"),
        }
    }

    /// The attribute element names, sorted, one entry per value.
    pub fn attribute_names(&self) -> Vec<String> {
        match self {
            Self::Success {
                attributes: Some(a),
                ..
            } => {
                let mut names: Vec<String> = a.iter().map(|(n, _)| n.clone()).collect();
                names.sort_unstable();
                names
            }
            other => panic!("no attributes in {other:?}"),
        }
    }

    /// All values of attribute `name`, in document order.
    pub fn attribute(&self, name: &str) -> Vec<String> {
        match self {
            Self::Success {
                attributes: Some(a),
                ..
            } => a
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect(),
            other => panic!("no attributes in {other:?}"),
        }
    }
}

/// Parses a `cas:serviceResponse`, checking FMT-01 (one child) and the namespace.
pub fn parse_validation(xml: &str) -> Validation {
    let doc = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "serviceResponse");
    assert_eq!(root.tag_name().namespace(), Some(CAS_NS));
    let children: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(children.len(), 1, "FMT-01: exactly one child in {xml}");
    let outcome = children[0];
    assert_eq!(outcome.tag_name().namespace(), Some(CAS_NS));
    let child = |name: &str| {
        outcome
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    };
    match outcome.tag_name().name() {
        "authenticationSuccess" => Validation::Success {
            user: child("user")
                .and_then(|n| n.text())
                .unwrap_or_default()
                .to_owned(),
            attributes: child("attributes").map(|a| {
                a.children()
                    .filter(|n| n.is_element())
                    .map(|n| {
                        (
                            n.tag_name().name().to_owned(),
                            n.text().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            }),
            pgt_iou: child("proxyGrantingTicket")
                .and_then(|n| n.text())
                .map(str::to_owned),
            proxies: child("proxies").map(|p| {
                p.children()
                    .filter(|n| n.is_element())
                    .map(|n| n.text().unwrap_or_default().to_owned())
                    .collect()
            }),
        },
        "authenticationFailure" => Validation::Failure {
            code: outcome
                .attribute("code")
                .expect("a failure has a code")
                .to_owned(),
            description: outcome.text().unwrap_or_default().to_owned(),
        },
        other => panic!("unexpected element {other} in {xml}"),
    }
}

/// Log output kept for assertions. Installed for the current thread: the test runtime
/// is single-threaded, so the servers' tasks log through it too.
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
