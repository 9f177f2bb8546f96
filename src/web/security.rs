//! Security headers and transport rules applied to every response.
//!
//! The static headers (`X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy`,
//! the default `Content-Security-Policy`) leave a handler's own value alone (the logout
//! page widens `frame-src` for front-channel logout). `Strict-Transport-Security`
//! depends on the request: it is only sent over HTTPS, native or reported by a trusted
//! proxy. Oversized header sections are refused here.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, EXPIRES, PRAGMA, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::{is_trusted, peer_ip};
use super::state::AppState;

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
    /// `csp` as a header value, built once.
    pub csp_header: Option<HeaderValue>,
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

/// What every response goes through, as one middleware: each axum middleware layer
/// costs a boxed service clone and a future per request, and the six this replaces
/// were a tenth of an SSO cycle. In order: refuse oversized header sections, run the
/// route, render an error page from a [`super::WebError`], then add the headers.
pub async fn envelope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let policy = &state.headers;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let (https, language, response) = if header_bytes > policy.max_header_bytes {
        let refused = (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large",
        )
            .into_response();
        // Native TLS is known without reading the (oversized) headers.
        (policy.tls, None, refused)
    } else {
        let https = policy.tls || forwarded_https(&state, &req);
        // Only the language is needed to render an error page; keep just that.
        let language = req.headers().get(ACCEPT_LANGUAGE).cloned();
        (https, language, next.run(req).await)
    };
    let mut response = super::error::render(&state, language, response);
    let headers = response.headers_mut();
    // GEN-06: nothing that carries or leads to a ticket may be cached. Only the static
    // assets set their own Cache-Control.
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        headers.insert(
            EXPIRES,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
    }
    // A handler's own value wins (the logout page widens `frame-src`).
    let mut default = |on: bool, name: HeaderName, value: &HeaderValue| {
        if on && !headers.contains_key(&name) {
            headers.insert(name, value.clone());
        }
    };
    default(policy.frame_options, X_FRAME_OPTIONS, &DENY);
    default(
        policy.content_type_options,
        X_CONTENT_TYPE_OPTIONS,
        &NOSNIFF,
    );
    default(policy.referrer_policy, REFERRER_POLICY, &NO_REFERRER);
    if let Some(csp) = &policy.csp_header {
        default(true, CONTENT_SECURITY_POLICY, csp);
    }
    if https && let Some(hsts) = &policy.hsts {
        headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

const DENY: HeaderValue = HeaderValue::from_static("DENY");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");

/// `X-Forwarded-Proto: https` from a trusted proxy (never from anyone else).
fn forwarded_https(state: &AppState, req: &Request) -> bool {
    peer_ip(req.extensions()).is_some_and(|peer| is_trusted(&peer, &state.trusted_proxies))
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
