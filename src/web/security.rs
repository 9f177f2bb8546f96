//! Security headers and transport rules applied to every response.
//!
//! The static headers (`X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy`,
//! the default `Content-Security-Policy`) leave a handler's own value alone (the logout
//! page widens `frame-src` for front-channel logout). `Strict-Transport-Security`
//! depends on the request: it is only sent over HTTPS, native or reported by a trusted
//! proxy. Oversized header sections are refused here.

use axum::Router;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, EXPIRES, PRAGMA, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use crate::config::Tls;

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

    /// The headers of every answer, as `name: value\r\n` lines, for the answers the HTTP
    /// library writes by itself (a malformed or oversized request), which no middleware
    /// sees. HSTS is included when served over native TLS.
    pub fn static_lines(&self) -> String {
        let mut lines = String::from(
            "cache-control: no-store\r\npragma: no-cache\r\nexpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
        );
        let mut add = |on: bool, name: &str, value: &str| {
            if on {
                lines.push_str(&format!("{name}: {value}\r\n"));
            }
        };
        add(self.frame_options, "x-frame-options", "DENY");
        add(
            self.content_type_options,
            "x-content-type-options",
            "nosniff",
        );
        add(self.referrer_policy, "referrer-policy", "no-referrer");
        if let Some(csp) = &self.csp {
            add(true, "content-security-policy", csp);
        }
        if let Some(hsts) = self.hsts.as_ref().and_then(|v| v.to_str().ok()) {
            add(self.tls, "strict-transport-security", hsts);
        }
        lines
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

impl HeaderPolicy {
    /// Widens the page's policy for the frames of front-channel logout: each of `urls`
    /// is loaded in a frame, so its origin must be allowed.
    pub fn allow_frames(&self, headers: &mut HeaderMap, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let origins: Vec<String> = urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
            .collect();
        if let Some(csp) = self.csp_with_frames(&origins)
            && let Ok(value) = HeaderValue::from_str(&csp)
        {
            headers.insert(CONTENT_SECURITY_POLICY, value);
        }
    }
}

impl HeaderPolicy {
    /// Adds no-store and the security headers a response does not set itself.
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
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
        default(self.frame_options, X_FRAME_OPTIONS, &DENY);
        default(self.content_type_options, X_CONTENT_TYPE_OPTIONS, &NOSNIFF);
        default(self.referrer_policy, REFERRER_POLICY, &NO_REFERRER);
        if let Some(csp) = &self.csp_header {
            default(true, CONTENT_SECURITY_POLICY, csp);
        }
        if https && let Some(hsts) = &self.hsts {
            headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

const DENY: HeaderValue = HeaderValue::from_static("DENY");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");

/// The router of the plain-HTTP listener: every request is sent to the same path over
/// HTTPS on `https_port`, at a host the certificate names exactly. The `Host` header is
/// only believed when it is one of those names; anything else goes to the certificate's
/// first name, so the listener is never an open redirect. Its answers carry no-store and
/// the static security headers, like every other answer.
pub fn https_redirect(https_port: u16, tls: &Tls) -> Router {
    let target = Arc::new(RedirectTarget {
        https_port,
        canonical: tls.host_names().into_iter().next(),
        tls: tls.clone(),
    });
    Router::new()
        .fallback(move |req: Request| {
            let target = target.clone();
            async move { target.redirect(&req) }
        })
        .layer(middleware::map_response(plain_headers))
}

struct RedirectTarget {
    https_port: u16,
    canonical: Option<String>,
    tls: Tls,
}

impl RedirectTarget {
    fn redirect(&self, req: &Request) -> Response {
        let asked = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(host_without_port)
            .filter(|host| self.tls.names_exactly(host));
        let Some(host) = asked.or(self.canonical.as_deref()) else {
            return (StatusCode::BAD_REQUEST, "Use HTTPS").into_response();
        };
        let port = if self.https_port == 443 {
            String::new()
        } else {
            format!(":{}", self.https_port)
        };
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
            Ok(location) => (
                StatusCode::MOVED_PERMANENTLY,
                [(axum::http::header::LOCATION, location)],
            )
                .into_response(),
            Err(_) => (StatusCode::BAD_REQUEST, "Bad request").into_response(),
        }
    }
}

/// `name` or `[v6]` from a `Host` value, without its port.
fn host_without_port(host: &str) -> Option<&str> {
    let name = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    (!name.is_empty()).then_some(name)
}

/// What every answer the server shapes outside the CAS routes carries: nothing may be
/// cached, sniffed, framed or sent on as a referrer.
async fn plain_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    headers.insert(X_FRAME_OPTIONS, DENY);
    headers.insert(REFERRER_POLICY, NO_REFERRER);
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}
