//! The state every handler shares: one `Arc`, cloned per request.

use std::ops::Deref;
use std::sync::Arc;

use axum::http::HeaderMap;

use super::client::{InFlight, TrustedProxies};
use super::cookies::CookieSettings;
use super::i18n::Catalogues;
use super::params::Limits;
use super::security::HeaderPolicy;
use super::transport::ConnectionStats;
use super::views::{Chrome, Overrides, PageTheme};
use crate::outbound::SloStats;
use crate::protocol::Cas;
use crate::services::{RegisteredService, Theme};
use crate::tgc::TgcCodec;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub cas: Cas,
    pub tgc: TgcCodec,
    pub cookie: CookieSettings,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Requests in flight per client forwarded by a trusted proxy.
    pub in_flight: InFlight,
    /// Single-logout counters, reported by `/health`.
    pub slo: Arc<SloStats>,
    /// Connection counters of the main listener, reported by `/health`.
    pub connections: Arc<ConnectionStats>,
    /// Base path plus `/`: the prefix of every link and asset.
    pub assets: String,
    /// The request filter's limits.
    pub limits: Limits,
    /// Security headers and transport rules.
    pub headers: HeaderPolicy,
    /// LOGINP-05: the `CASPRIVACY` cookie.
    pub warn_cookie: CookieSettings,
    /// The `CASFLOW` cookie binding login forms to the browser that loaded them.
    pub flow_cookie: CookieSettings,
    /// UI strings by language.
    pub catalogues: Catalogues,
    /// The look of pages without a themed service.
    pub theme: Theme,
    /// Operator templates replacing built-in pages.
    pub overrides: Option<Overrides>,
}

impl Inner {
    /// What every page shares, for this request and (if any) this service.
    pub fn chrome(&self, headers: &HeaderMap, service: Option<&RegisteredService>) -> Chrome<'_> {
        let t = self.catalogues.pick(
            headers
                .get(axum::http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        let (theme, key) =
            match service.and_then(|s| s.theme.as_ref().map(|t| (t, s.id.to_string()))) {
                Some((theme, id)) => (theme, id),
                None => (&self.theme, "default".to_owned()),
            };
        Chrome {
            t,
            assets: &self.assets,
            theme: PageTheme {
                title: theme
                    .display_name
                    .clone()
                    .unwrap_or_else(|| t.site_title.clone()),
                logo: theme.logo_url.clone(),
                css: theme
                    .accent_colour
                    .as_ref()
                    .map(|_| format!("{}static/theme/{key}.css", self.assets)),
            },
            overrides: self.overrides.as_ref(),
        }
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl AsRef<TrustedProxies> for AppState {
    fn as_ref(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
}

impl AsRef<Limits> for AppState {
    fn as_ref(&self) -> &Limits {
        &self.limits
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
