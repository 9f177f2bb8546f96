//! Security headers and transport rules applied to every response.
//!
//! The static headers (`X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy`,
//! the default `Content-Security-Policy`) are tower-http layers that leave a handler's
//! own value alone (the logout page widens `frame-src` for front-channel logout).
//! `Strict-Transport-Security` depends on the request: it is only sent over HTTPS,
//! native or reported by a trusted proxy. Oversized header sections are refused here.

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::util::option_layer;
use tower_http::set_header::SetResponseHeaderLayer;

use super::state::AppState;
use super::transport::PeerAddr;

/// The operator's header choices, resolved once.
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    pub hsts: Option<HeaderValue>,
    /// `DENY`, unless framing origins are allowed.
    pub frame_options: bool,
    pub content_type_options: bool,
    pub referrer_policy: bool,
    /// The default policy; `None` when turned off.
    pub csp: Option<String>,
    pub max_header_bytes: usize,
    /// Served over native TLS.
    pub tls: bool,
}

impl HeaderPolicy {
    /// `default-src 'none'` plus what the pages use: their own stylesheet and forms.
    /// No `form-action`: browsers apply it to the redirect that follows a login POST,
    /// which goes to the service.
    pub fn default_csp(frame_ancestors: &[String]) -> String {
        let ancestors = if frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            frame_ancestors.join(" ")
        };
        format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data: https:; base-uri 'none'; frame-ancestors {ancestors}"
        )
    }

    /// The page's policy, also allowing frames from `origins` (front-channel logout).
    pub fn csp_with_frames(&self, origins: &[String]) -> Option<String> {
        let base = self.csp.as_ref()?;
        if origins.is_empty() {
            return Some(base.clone());
        }
        Some(format!("{base}; frame-src {}", origins.join(" ")))
    }
}

/// Adds the static headers as tower-http layers and the request-dependent ones as a
/// middleware.
pub fn layers(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let policy = &state.headers;
    let header =
        |on: bool, name, value: &'static str| {
            option_layer(on.then(|| {
                SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
            }))
        };
    let csp = policy
        .csp
        .as_ref()
        .and_then(|csp| HeaderValue::from_str(csp).ok())
        .map(|value| SetResponseHeaderLayer::if_not_present(CONTENT_SECURITY_POLICY, value));
    router
        .layer(header(policy.frame_options, X_FRAME_OPTIONS, "DENY"))
        .layer(header(
            policy.content_type_options,
            X_CONTENT_TYPE_OPTIONS,
            "nosniff",
        ))
        .layer(header(
            policy.referrer_policy,
            REFERRER_POLICY,
            "no-referrer",
        ))
        .layer(option_layer(csp))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            transport_rules,
        ))
}

async fn transport_rules(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > state.headers.max_header_bytes {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large",
        )
            .into_response();
    }
    let https = state.headers.tls || forwarded_https(&state, &req);
    let mut response = next.run(req).await;
    if https && let Some(hsts) = &state.headers.hsts {
        response
            .headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

/// `X-Forwarded-Proto: https` from a trusted proxy (never from anyone else).
fn forwarded_https(state: &AppState, req: &Request) -> bool {
    let trusted = req.extensions().get::<ConnectInfo<PeerAddr>>().is_some_and(
        |ConnectInfo(PeerAddr(peer))| {
            state
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&peer.ip()))
        },
    );
    trusted
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The router of the plain-HTTP listener: every request is sent to the same URL over
/// HTTPS on `https_port`.
pub fn https_redirect(https_port: u16) -> Router {
    Router::new().fallback(move |req: Request| async move { to_https(&req, https_port) })
}

fn to_https(req: &Request, https_port: u16) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Keep the name, drop any port; refuse anything that is not a host name or address.
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(v6, _)| format!("[{v6}]")),
        None => host.split(':').next().map(str::to_owned),
    }
    .filter(|n| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
    });
    let Some(name) = name else {
        return (StatusCode::BAD_REQUEST, "A Host header is required").into_response();
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    match HeaderValue::from_str(&format!("https://{name}{port}{path}")) {
        Ok(location) => (
            StatusCode::MOVED_PERMANENTLY,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "Bad request").into_response(),
    }
}
