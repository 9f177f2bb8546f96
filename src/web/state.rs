//! The state every handler shares: one `Arc`, cloned per request.

use std::ops::Deref;
use std::sync::Arc;

use ipnet::IpNet;

use super::cookies::CookieSettings;
use super::params::Limits;
use super::security::HeaderPolicy;
use crate::outbound::SloStats;
use crate::protocol::Cas;
use crate::protocol::flow::LoginFlow;
use crate::tgc::TgcCodec;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub cas: Cas,
    pub flow: LoginFlow,
    pub tgc: TgcCodec,
    pub cookie: CookieSettings,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Single-logout counters, reported by `/health`.
    pub slo: Arc<SloStats>,
    /// Base path plus `/`: the prefix of every link and asset.
    pub assets: String,
    /// The request filter's limits.
    pub limits: Limits,
    /// Security headers and transport rules.
    pub headers: HeaderPolicy,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
