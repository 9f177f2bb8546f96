//! The composition root: settings → registries, codec, state → router; the listener, the
//! reaper, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::ldap::LdapSource;
use crate::auth::{Authenticator, Chain, StaticUsers, VerifierPool};
use crate::clock::Clock;
use crate::config::{SameSite, Settings, TgcKeySource, TicketStore};
use crate::crypto::random_bytes;
use crate::outbound::{self, Outbound, SloQueue};
use crate::protocol::flow::LoginFlow;
use crate::protocol::throttle::{LoginThrottle, Throttle, ThrottlePolicy};
use crate::protocol::{Cas, ProtocolOptions, TicketPolicies};
use crate::services::ServiceRegistry;
use crate::tgc::{TgcCodec, TgcKeys};
use crate::tickets::reaper::{self, Listeners, OnExpired};
use crate::tickets::{
    AttemptStore, ExpirationPolicy, MemoryRegistry, RedisRegistry, SnapshotFile, TicketRegistry,
};
use crate::web::{
    self, AppState, CasListener, Catalogues, ConnectionLimits, ConnectionStats, CookieSettings,
    HeaderPolicy, InFlight, Inner, Limits, Overrides, PeerAddr, Slots, TrustedProxies,
};

/// Why the server cannot start. Each variant keeps its cause; `main` prints the chain.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the TGC keys cannot be used")]
    TgcKeys(#[source] crate::tgc::KeyFileError),
    #[error("the TGC codec cannot be built")]
    Codec(#[source] crate::tgc::EncodeError),
    #[error(
        "tgc: with tickets.store = \"redis\" every node needs the same TGC keys, and the key file {0} does not exist; generate keys once (`cas-server keygen`), then put them in the configuration or that file on every node"
    )]
    SharedKeyFileMissing(std::path::PathBuf),
    #[error(
        "tgc: with tickets.store = \"redis\" the TGC keys must be configured, identical on every node"
    )]
    SharedKeysMissing,
    #[error("tickets.key: the Redis store needs a registry key")]
    RegistryKeyMissing,
    #[error("the Redis ticket store cannot be set up")]
    Redis(#[source] crate::tickets::RedisSetupError),
    #[error(
        "tickets.redis: Redis' maxmemory-policy is {0}, which may evict live sessions under memory pressure; set it to noeviction (or tickets.redis.eviction = \"warn\" to start anyway)"
    )]
    EvictingRedis(String),
    #[error("the outbound HTTP client cannot be built")]
    Outbound(#[source] crate::outbound::ClientSetupError),
    #[error("an authentication source cannot be set up")]
    Source(#[source] Box<crate::auth::SourceError>),
    #[error("the pages cannot be set up")]
    Pages(#[source] web::PagesError),
    #[error("cannot start the password verifier threads")]
    Verifiers(#[source] std::io::Error),
}

/// A bound, ready-to-run server.
pub struct App {
    listener: CasListener,
    local_addr: SocketAddr,
    scheme: &'static str,
    /// The plain-HTTP listener that redirects to HTTPS, and the certificate it names.
    redirect: Option<(CasListener, crate::config::Tls)>,
    router: axum::Router,
    registry: Arc<dyn TicketRegistry>,
    /// The in-memory store and where to save it at shutdown, if snapshots are on.
    snapshot: Option<(Arc<MemoryRegistry>, SnapshotFile)>,
    clock: Arc<dyn Clock>,
    reaper_interval: std::time::Duration,
    /// Who hears of the sessions a sweep ended.
    listeners: Listeners,
    base_path: String,
    /// The single-logout queue, drained at shutdown within `slo_grace`.
    slo: Arc<SloQueue>,
    slo_grace: std::time::Duration,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.local_addr())
            .field("base_path", &self.base_path)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds everything and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let shared = matches!(settings.tickets.store, TicketStore::Redis(_));
        let keys = tgc_keys(&settings.tgc.keys, shared)?;
        let tgc = TgcCodec::new(&keys, settings.tgc.crypto, settings.tgc.pin_to_session)
            .map_err(StartupError::Codec)?;
        let Registries {
            tickets: registry,
            snapshot,
            attempts,
            redis,
        } = ticket_registry(&settings, &clock)?;
        if let (Some(redis), TicketStore::Redis(options)) = (&redis, &settings.tickets.store) {
            check_eviction(redis, options.refuse_eviction).await?;
        }
        let outbound = Outbound::new(&settings.http_client).map_err(StartupError::Outbound)?;
        let slo = SloQueue::start(outbound.clone(), &settings.slo);
        let mut flow_keys: Vec<[u8; 32]> = settings
            .login
            .flow_keys
            .iter()
            .map(|k| *k.expose())
            .collect();
        if flow_keys.is_empty() {
            flow_keys.push(random_bytes());
        }
        let flow = LoginFlow::new(
            &flow_keys,
            settings.login.form_ttl,
            registry.clone(),
            clock.clone(),
        );
        let cas = Cas {
            tickets: registry.clone(),
            services: Arc::new(ServiceRegistry::new(settings.services.clone())),
            authenticator: authenticator(&settings)?,
            clock: clock.clone(),
            proxy_callback: outbound::callback(&outbound),
            logout_sender: slo.clone(),
            throttle: settings.throttle.enabled.then(|| {
                let policy = ThrottlePolicy {
                    threshold: settings.throttle.threshold,
                    ip_threshold: settings.throttle.ip_threshold,
                    window: settings.throttle.window,
                    ip_delay: settings.throttle.ip_delay,
                    max_entries: settings.throttle.max_entries,
                };
                Arc::new(match attempts {
                    Some(store) => LoginThrottle::Shared { policy, store },
                    None => LoginThrottle::Local(Throttle::new(policy)),
                })
            }),
            policies: TicketPolicies {
                tgt: ExpirationPolicy::sliding(
                    settings.tickets.tgt_idle_ttl,
                    settings.tickets.tgt_hard_ttl,
                ),
                service_ticket: ExpirationPolicy::fixed(settings.tickets.st_ttl),
                proxy_ticket: ExpirationPolicy::fixed(settings.tickets.pt_ttl),
            },
            flow,
            options: ProtocolOptions {
                follow_service_redirects: settings.logout.follow_service_redirects,
                attributes_on_v2: settings.validation.attributes_on_v2,
                proxy_authn_enabled: settings.sso.proxy_authn_enabled,
                slo_enabled: settings.slo.enabled,
                create_cookie_on_renew: settings.sso.create_cookie_on_renew,
                allow_missing_service: settings.sso.allow_missing_service,
                required_service_pattern: settings.sso.required_service_pattern.clone(),
                remember_me: settings.sso.remember_me,
            },
        };
        let listeners = Listeners {
            expired: (settings.slo.enabled && settings.slo.on_expiry).then(|| {
                let cas = cas.clone();
                Arc::new(move |sessions| cas.sessions_expired(sessions)) as OnExpired
            }),
            orphaned_logouts: settings.slo.enabled.then(|| {
                let cas = cas.clone();
                Arc::new(move |sessions| cas.sessions_logged_out(sessions)) as OnExpired
            }),
        };
        let base_path = settings.server.base_path.clone();
        let cookie = |name: &str| CookieSettings {
            name: name.to_owned(),
            path: if base_path.is_empty() {
                "/".into()
            } else {
                base_path.clone()
            },
            secure: settings.tgc.secure,
            same_site: settings.tgc.same_site,
        };
        let overrides = match &settings.ui.templates_dir {
            Some(dir) => Some(Overrides::load(dir).map_err(StartupError::Pages)?),
            None => None,
        };
        let csp = settings
            .http_headers
            .content_security_policy
            .then(|| HeaderPolicy::default_csp(&settings.http_headers.frame_ancestors));
        let headers = HeaderPolicy {
            hsts: settings
                .http_headers
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            frame_options: settings.http_headers.frame_options
                && settings.http_headers.frame_ancestors.is_empty(),
            content_type_options: settings.http_headers.content_type_options,
            referrer_policy: settings.http_headers.referrer_policy,
            csp: csp.clone(),
            csp_header: csp.as_deref().and_then(|v| HeaderValue::from_str(v).ok()),
            max_header_bytes: settings.server.max_header_bytes,
            tls: settings.server.tls.is_some(),
        };
        let error_headers: Arc<str> = headers.static_lines().into();
        let connections = Arc::new(ConnectionStats::default());
        let state = AppState::new(Inner {
            warn_cookie: cookie("CASPRIVACY"),
            // The login-CSRF binding must never travel on a cross-site POST, whatever
            // the SSO cookie needs (`same_site = "none"` for framed logins).
            flow_cookie: CookieSettings {
                same_site: match settings.tgc.same_site {
                    SameSite::Strict => SameSite::Strict,
                    SameSite::Lax | SameSite::None => SameSite::Lax,
                },
                // With Secure, the `__Host-` prefix: browsers then refuse the cookie from
                // a sibling domain or a plain-HTTP page, so no one can plant a binding
                // value they know (which would reopen login CSRF).
                ..if settings.tgc.secure {
                    CookieSettings {
                        path: "/".into(),
                        ..cookie("__Host-CASFLOW")
                    }
                } else {
                    cookie("CASFLOW")
                }
            },
            catalogues: Catalogues::builtin(&settings.ui.default_locale)
                .map_err(StartupError::Pages)?,
            theme: settings.ui.theme.clone(),
            overrides,
            cas,
            tgc,
            cookie: cookie(&settings.tgc.name),
            trusted_proxies: TrustedProxies(settings.server.trusted_proxies.clone()),
            in_flight: InFlight::new(settings.server.max_connections_per_client),
            slo: slo.stats(),
            connections: connections.clone(),
            assets: format!("{base_path}/"),
            limits: Limits {
                ticket: settings.request_filter.max_ticket_length,
                url: settings.request_filter.max_url_length,
                username: settings.request_filter.max_username_length,
                other: settings.request_filter.max_value_length,
                body: settings.server.max_body_bytes,
            },
            headers,
        });
        let router = web::router(state, settings.server.request_timeout);
        let addr = settings.server.bind;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = tcp
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let tls = settings.server.tls.as_ref().map(|t| t.config.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Idle connections close well after any request could have finished; a request's
        // head gets as long as the request itself would.
        let limits = ConnectionLimits {
            idle: (settings.server.request_timeout * 2).max(std::time::Duration::from_secs(1)),
            head: settings.server.request_timeout,
            error_headers,
        };
        let slots = |stats| {
            Slots::new(
                settings.server.max_connections,
                settings.server.max_connections_per_client,
                settings.server.trusted_proxies.clone(),
                stats,
            )
        };
        let listener = CasListener::new(tcp, tls, slots(connections), limits.clone())
            .map_err(|source| StartupError::Bind { addr, source })?;
        // The redirect listener gets the same connection caps and idle timeout: an idle
        // client on port 80 must not hold descriptors the HTTPS listener needs.
        let redirect = match (settings.server.http_redirect_bind, &settings.server.tls) {
            (Some(addr), Some(tls)) => {
                let tcp = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?;
                let plain = HeaderPolicy {
                    frame_options: true,
                    content_type_options: true,
                    referrer_policy: true,
                    csp: Some("default-src 'none'; frame-ancestors 'none'".into()),
                    ..HeaderPolicy::default()
                };
                let limits = ConnectionLimits {
                    error_headers: plain.static_lines().into(),
                    ..limits
                };
                let listener = CasListener::new(tcp, None, slots(Arc::default()), limits)
                    .map_err(|source| StartupError::Bind { addr, source })?;
                Some((listener, tls.clone()))
            }
            _ => None,
        };
        Ok(Self {
            listener,
            local_addr,
            scheme,
            redirect,
            router,
            registry,
            snapshot,
            clock,
            reaper_interval: settings.tickets.reaper_interval,
            listeners,
            base_path,
            slo_grace: settings.slo.shutdown_grace,
            slo,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plain-HTTP listener that redirects to HTTPS, if configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect
            .as_ref()
            .and_then(|(l, _)| axum::serve::Listener::local_addr(l).ok())
    }

    /// `http(s)://addr/base`: the URL CAS clients are configured with.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.local_addr, self.base_path)
    }

    /// Serves until `shutdown` completes, then drains in-flight requests and stops the reaper.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let reaper = reaper::spawn(
            self.registry,
            self.clock.clone(),
            self.reaper_interval,
            self.listeners,
            stop_rx.clone(),
        );
        let redirect = self.redirect.map(|(listener, tls)| {
            let https_port = self.local_addr.port();
            tokio::spawn(
                axum::serve(listener, web::https_redirect(https_port, &tls))
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            )
        });
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<PeerAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx))
        .await;
        let _ = reaper.await;
        if let Some(redirect) = redirect {
            let _ = redirect.await;
        }
        // No request or sweep can queue a logout message any more.
        self.slo.drain(self.slo_grace).await;
        // After the drain: no request can add a ticket the snapshot would miss.
        if let Some((registry, file)) = &self.snapshot {
            match file.save(registry, self.clock.now()) {
                Ok(n) => {
                    tracing::info!(tickets = n, path = %file.path().display(), "saved the ticket snapshot")
                }
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::Chain(&e), "ticket snapshot not saved; sessions end with this restart")
                }
            }
        }
        served
    }
}

/// The static users, then each LDAP source in order. Without `[[users]]` the static
/// source is left out when LDAP is there: it would spend a whole dummy verification
/// (12 ms of CPU) on every login for nothing.
fn authenticator(settings: &Settings) -> Result<Arc<dyn Authenticator>, StartupError> {
    let mut sources: Vec<Arc<dyn Authenticator>> = Vec::new();
    if !settings.users.is_empty() || settings.authn.ldap.is_empty() {
        let verifier = VerifierPool::new(
            settings.authn.max_concurrent_verifications,
            settings.authn.verification_nice,
        )
        .map_err(StartupError::Verifiers)?;
        sources.push(Arc::new(StaticUsers::new(settings.users.clone(), verifier)));
    }
    for options in &settings.authn.ldap {
        let source =
            LdapSource::new(options.clone()).map_err(|e| StartupError::Source(Box::new(e)))?;
        sources.push(Arc::new(source));
    }
    Ok(match sources.len() {
        1 => sources.remove(0),
        _ => Arc::new(Chain::new(sources)),
    })
}

/// The ticket store, and what else lives in it.
struct Registries {
    tickets: Arc<dyn TicketRegistry>,
    /// The in-memory store and where to save it at shutdown, if snapshots are on.
    snapshot: Option<(Arc<MemoryRegistry>, SnapshotFile)>,
    /// Login-attempt counters shared by the nodes, with a shared store.
    attempts: Option<Arc<dyn AttemptStore>>,
    /// The Redis store, for the checks made at startup.
    redis: Option<Arc<RedisRegistry>>,
}

/// Redis' `maxmemory-policy`, read at startup: anything but `noeviction` may drop live
/// sessions under memory pressure. Unknown when Redis is down or the ACL forbids
/// `CONFIG GET` (`check-config --probe` says which); the server starts either way.
async fn check_eviction(redis: &RedisRegistry, refuse: bool) -> Result<(), StartupError> {
    match redis.eviction_policy().await {
        Some(policy) if policy == "noeviction" => Ok(()),
        Some(policy) if refuse => Err(StartupError::EvictingRedis(policy)),
        Some(policy) => {
            tracing::warn!(
                %policy,
                "ticket store: Redis' maxmemory-policy may evict live sessions, used login forms and logout histories under memory pressure; set it to noeviction (tickets.redis.eviction = \"refuse\" makes this fatal)"
            );
            Ok(())
        }
        None => {
            tracing::info!(
                "ticket store: Redis' maxmemory-policy could not be read; make sure it is noeviction"
            );
            Ok(())
        }
    }
}

/// The configured store; a snapshot, if any, is restored before the first request.
fn ticket_registry(
    settings: &Settings,
    clock: &Arc<dyn Clock>,
) -> Result<Registries, StartupError> {
    let key = settings.tickets.key.as_ref().map(|k| *k.expose());
    match (&settings.tickets.store, key) {
        (TicketStore::Redis(options), Some(key)) => {
            // Sessions outlive their deadline in Redis just long enough for the reaper
            // to tell their services, when it is asked to.
            let margin = if settings.slo.enabled && settings.slo.on_expiry {
                settings.tickets.reaper_interval * 2
            } else {
                std::time::Duration::ZERO
            };
            let registry = RedisRegistry::new(options, &key, margin, clock.clone())
                .map_err(StartupError::Redis)?;
            let registry = Arc::new(registry);
            Ok(Registries {
                tickets: registry.clone(),
                snapshot: None,
                attempts: Some(registry.clone()),
                redis: Some(registry),
            })
        }
        (TicketStore::Redis(_), None) => Err(StartupError::RegistryKeyMissing),
        (TicketStore::Memory, key) => {
            let memory = Arc::new(MemoryRegistry::new());
            let snapshot = match (&settings.tickets.snapshot_file, key) {
                (Some(path), Some(key)) => {
                    let file = SnapshotFile::new(path.clone(), &key);
                    if let Err(e) = file.check_writable() {
                        tracing::warn!(error = %crate::telemetry::Chain(&e), "the ticket snapshot will not be saved at shutdown");
                    }
                    match file.load(&memory, clock.now()) {
                        Ok(Some(n)) => {
                            tracing::info!(tickets = n, path = %path.display(), "restored the ticket snapshot")
                        }
                        Ok(None) => {
                            tracing::info!(path = %path.display(), "no ticket snapshot to restore")
                        }
                        Err(e) => {
                            tracing::warn!(error = %crate::telemetry::Chain(&e), "ticket snapshot not restored; starting with no sessions")
                        }
                    }
                    Some((memory.clone(), file))
                }
                _ => None,
            };
            Ok(Registries {
                tickets: memory,
                snapshot,
                attempts: None,
                redis: None,
            })
        }
    }
}

/// `shared`: several nodes use one ticket store, so every node must hold the same keys;
/// a key file this node would generate now could only be its own.
fn tgc_keys(source: &TgcKeySource, shared: bool) -> Result<Vec<TgcKeys>, StartupError> {
    match source {
        TgcKeySource::Configured(keys) => Ok(keys.clone()),
        TgcKeySource::KeyFile(path) if shared && !path.exists() => {
            Err(StartupError::SharedKeyFileMissing(path.clone()))
        }
        TgcKeySource::Ephemeral if shared => Err(StartupError::SharedKeysMissing),
        TgcKeySource::KeyFile(path) => {
            let (keys, created) = TgcKeys::load_or_create(path).map_err(StartupError::TgcKeys)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "generated TGC keys into a new key file (mode 0600); copy the same keys to every node"
                );
            } else {
                tracing::info!(path = %path.display(), "loaded TGC keys");
            }
            Ok(vec![keys])
        }
        TgcKeySource::Ephemeral => {
            tracing::warn!("using ephemeral TGC keys: SSO sessions end when the server restarts");
            Ok(vec![TgcKeys::generate()])
        }
    }
}

/// Completes on ctrl-c or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled: call it before announcing readiness, so that a SIGTERM sent
/// right after the announcement is a graceful shutdown rather than the default signal
/// death. Must be called inside the tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = recv(interrupt.as_mut()) => {},
            () = recv(terminate.as_mut()) => {},
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

/// The next delivery of `signal`; never, if its handler could not be installed.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
