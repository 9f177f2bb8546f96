//! What every response goes through, as one middleware: each axum middleware layer
//! costs a boxed service clone and a future per request, and the six this replaces were
//! a tenth of an SSO cycle. It is where the parts of `web/` meet the shared state:
//! the request filter's header limit, the in-flight cap behind a trusted proxy, the
//! error page, the security headers.

use axum::extract::{Request, State};
use axum::http::header::{ACCEPT_LANGUAGE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::{forwarded_client, is_trusted, peer_ip};
use super::error;
use super::state::AppState;

/// In order: refuse oversized header sections, run the
/// route, render an error page from a [`super::WebError`], then add the headers.
pub async fn envelope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let policy = &state.headers;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let oversized = header_bytes > policy.max_header_bytes;
    let peer = peer_ip(req.extensions());
    let proxied = peer.filter(|peer| is_trusted(peer, &state.trusted_proxies));
    // Behind a trusted proxy, each forwarded client's requests in flight are capped as a
    // direct client's connections are (see `server.max_connections_per_client`). An
    // oversized header section is refused before its X-Forwarded-For is read.
    let entered = proxied.filter(|_| !oversized).map(|proxy| {
        let client = forwarded_client(proxy, req.headers(), &state.trusted_proxies);
        state.in_flight.enter(client)
    });
    let (https, language, response) = if oversized {
        let refused = (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request headers too large",
        )
            .into_response();
        // Native TLS is known without reading the (oversized) headers.
        (policy.tls, None, refused)
    } else if matches!(entered, Some(None)) {
        let refused = (
            StatusCode::TOO_MANY_REQUESTS,
            [(RETRY_AFTER, HeaderValue::from_static("1"))],
            "Too many requests at once from this address",
        )
            .into_response();
        (policy.tls, None, refused)
    } else {
        let https = policy.tls || (proxied.is_some() && forwarded_https(&req));
        // Only the language is needed to render an error page; keep just that.
        let language = req.headers().get(ACCEPT_LANGUAGE).cloned();
        (https, language, next.run(req).await)
    };
    let mut response = error::render(response, || {
        let mut headers = HeaderMap::new();
        if let Some(language) = language {
            headers.insert(ACCEPT_LANGUAGE, language);
        }
        // The chrome borrows the state, not these headers: it keeps only the catalogue.
        state.chrome(&headers, None)
    });
    policy.apply(response.headers_mut(), https);
    response
}

/// `X-Forwarded-Proto: https`; only asked of a trusted proxy's requests.
fn forwarded_https(req: &Request) -> bool {
    req.headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}
