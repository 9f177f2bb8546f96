//! The composition root: settings → registries, codec, state → router; the listener, the
//! reaper, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::StaticUsers;
use crate::clock::Clock;
use crate::config::{Settings, TgcKeySource};
use crate::crypto::random_bytes;
use crate::outbound::{self, Outbound, SloQueue};
use crate::protocol::flow::LoginFlow;
use crate::protocol::{Cas, ProtocolOptions, TicketPolicies};
use crate::services::ServiceRegistry;
use crate::tgc::{TgcCodec, TgcKeys};
use crate::tickets::reaper::{self, OnExpired};
use crate::tickets::{ExpirationPolicy, MemoryRegistry, TicketRegistry};
use crate::web::{self, AppState, CookieSettings, Inner};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Keys(String),
    #[error("{0}")]
    Outbound(String),
}

/// A bound, ready-to-run server.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    registry: Arc<dyn TicketRegistry>,
    clock: Arc<dyn Clock>,
    reaper_interval: std::time::Duration,
    on_expired: Option<OnExpired>,
    base_path: String,
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
        let keys = tgc_keys(&settings.tgc.keys)?;
        let tgc = TgcCodec::new(&keys, settings.tgc.crypto, settings.tgc.pin_to_session)
            .map_err(|e| StartupError::Keys(e.to_string()))?;
        let registry: Arc<dyn TicketRegistry> = Arc::new(MemoryRegistry::new());
        let outbound = Outbound::new(&settings.http_client).map_err(StartupError::Outbound)?;
        let slo = SloQueue::start(outbound.clone(), &settings.slo);
        let cas = Cas {
            tickets: registry.clone(),
            services: Arc::new(ServiceRegistry::new(settings.services.clone())),
            authenticator: Arc::new(StaticUsers::new(
                settings.users.clone(),
                settings.authn.max_concurrent_verifications,
            )),
            clock: clock.clone(),
            proxy_callback: outbound::callback(&outbound),
            logout_sender: slo.clone(),
            policies: TicketPolicies {
                tgt: ExpirationPolicy::sliding(
                    settings.tickets.tgt_idle_ttl,
                    settings.tickets.tgt_hard_ttl,
                ),
                service_ticket: ExpirationPolicy::fixed(settings.tickets.st_ttl),
                proxy_ticket: ExpirationPolicy::fixed(settings.tickets.pt_ttl),
            },
            options: ProtocolOptions {
                follow_service_redirects: settings.logout.follow_service_redirects,
                attributes_on_v2: settings.validation.attributes_on_v2,
                proxy_authn_enabled: settings.sso.proxy_authn_enabled,
                slo_enabled: settings.slo.enabled,
            },
        };
        let on_expired: Option<OnExpired> =
            (settings.slo.enabled && settings.slo.on_expiry).then(|| {
                let cas = cas.clone();
                Arc::new(move |sessions| cas.sessions_expired(sessions)) as OnExpired
            });
        let flow_key = settings.login.flow_key.unwrap_or_else(random_bytes);
        let flow = LoginFlow::new(
            &flow_key,
            settings.login.form_ttl,
            registry.clone(),
            clock.clone(),
        );
        let base_path = settings.server.base_path.clone();
        let state = AppState::new(Inner {
            cas,
            flow,
            tgc,
            cookie: CookieSettings {
                name: settings.tgc.name.clone(),
                path: if base_path.is_empty() {
                    "/".into()
                } else {
                    base_path.clone()
                },
                secure: settings.tgc.secure,
                same_site: settings.tgc.same_site,
            },
            trusted_proxies: settings.server.trusted_proxies.clone(),
            slo: slo.stats(),
            assets: format!("{base_path}/"),
        });
        let router = web::router(state, settings.server.request_timeout);
        let addr = settings.server.bind;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router,
            registry,
            clock,
            reaper_interval: settings.tickets.reaper_interval,
            on_expired,
            base_path,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `http://addr/base`: the URL CAS clients are configured with.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.local_addr(), self.base_path)
    }

    /// Serves until `shutdown` completes, then drains in-flight requests and stops the reaper.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let reaper = reaper::spawn(
            self.registry,
            self.clock,
            self.reaper_interval,
            self.on_expired,
            stop_rx,
        );
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        let _ = stop_tx.send(true);
        let _ = reaper.await;
        served
    }
}

fn tgc_keys(source: &TgcKeySource) -> Result<TgcKeys, StartupError> {
    match source {
        TgcKeySource::Configured(keys) => Ok(keys.clone()),
        TgcKeySource::KeyFile(path) => {
            let (keys, created) = TgcKeys::load_or_create(path).map_err(StartupError::Keys)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "generated TGC keys into a new key file (mode 0600); copy the same keys to every node"
                );
            } else {
                tracing::info!(path = %path.display(), "loaded TGC keys");
            }
            Ok(keys)
        }
        TgcKeySource::Ephemeral => {
            tracing::warn!("using ephemeral TGC keys: SSO sessions end when the server restarts");
            Ok(TgcKeys::generate())
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
