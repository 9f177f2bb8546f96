//! HTTP: the CAS routes, their handlers and the layers around them. Handlers translate
//! requests into protocol calls and outcomes into responses; the rules live in `protocol`.

mod assets;
mod client;
mod cookies;
mod envelope;
mod error;
mod health;
mod i18n;
mod login;
mod login_answer;
mod logout;
mod params;
mod proxy;
mod redirect;
mod security;
mod session;
mod state;
mod transport;
mod validate;
mod views;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use client::{InFlight, TrustedProxies};
pub use cookies::CookieSettings;
pub use error::WebError;
pub use i18n::PagesError;
pub use i18n::{Catalogues, locales};
pub use params::Limits;
pub use security::{HeaderPolicy, https_redirect};
pub use state::{AppState, Inner};
pub use transport::{CasListener, ConnectionLimits, ConnectionStats, PeerAddr, Slots};
pub use views::Overrides;

/// Every CAS route, in one table.
pub fn router(state: AppState, request_timeout: std::time::Duration) -> Router {
    let base = state.assets.trim_end_matches('/').to_owned();
    // Full paths rather than `nest`: a nested router strips the prefix and routes again
    // on every request.
    let at = |path: &str| format!("{base}{path}");
    let app = Router::new()
        .route(&at("/login"), get(login::get_login).post(login::post_login))
        .route(&at("/logout"), get(logout::get_logout))
        .route(
            &at("/validate"),
            get(validate::cas1_validate).post(validate::cas1_validate),
        )
        .route(
            &at("/serviceValidate"),
            get(validate::service_validate).post(validate::service_validate),
        )
        .route(
            &at("/proxyValidate"),
            get(validate::proxy_validate).post(validate::proxy_validate),
        )
        .route(
            &at("/p3/serviceValidate"),
            get(validate::p3_service_validate).post(validate::p3_service_validate),
        )
        .route(
            &at("/p3/proxyValidate"),
            get(validate::p3_proxy_validate).post(validate::p3_proxy_validate),
        )
        .route(&at("/proxy"), get(proxy::get_proxy).post(proxy::get_proxy))
        .route(&at("/health"), get(health::health))
        .route(&at("/static/cas.css"), get(assets::css))
        .route(&at("/static/theme/{file}"), get(assets::theme_css))
        .route(&at("/"), get(to_login));
    // `{base}` itself, as well as `{base}/`.
    let app = if base.is_empty() {
        app
    } else {
        app.route(&base, get(to_login))
    };
    app.fallback(not_found)
        // A bug in a handler answers the error page (through the envelope, with every
        // header), never a reset connection, and never the panic message.
        .layer(CatchPanicLayer::custom(|_| {
            WebError::internal("a request handler panicked").into_response()
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // Outside the timeout, so that a 408 gets the security headers and no-store too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            envelope::envelope,
        ))
        .with_state(state)
        // The span names the route, never the URI: query strings carry tickets.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            // Debug level: at the default `info` no span is built at all on the hot path.
            tracing::debug_span!("request", method = %req.method(), route)
        }))
}

async fn to_login(State(state): State<AppState>) -> Response {
    redirect::found(&format!("{}login", state.assets)).unwrap_or_else(IntoResponse::into_response)
}

async fn not_found() -> WebError {
    WebError::NotFound
}
