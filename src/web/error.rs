//! The only place where an error becomes an HTTP response.
//!
//! Handlers return [`WebError`]; its `IntoResponse` only records the error in the response
//! extensions, and the one middleware every response crosses (`envelope.rs`), which
//! knows the base path and the language, logs it and renders the page from here. The
//! client sees a fixed message, never the cause.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::i18n::Messages;
use super::views::{Chrome, ErrorPage, html};
use crate::protocol::ProtocolError;
use crate::protocol::throttle::Wait;
use crate::telemetry::{FAULT_LOG_INTERVAL, Repeats};

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A malformed request: repeated or missing parameters, bad encoding.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// LOGIN-03: not a registered, enabled service.
    #[error("service not authorized")]
    UnknownService,
    /// `sso.allow_missing_service = false` and no service was given.
    #[error("a service is required")]
    ServiceRequired,
    /// A dependency (authentication source, ticket store) is down.
    #[error("temporarily unavailable")]
    Unavailable(#[source] ProtocolError),
    /// A fault of this server.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("not found")]
    NotFound,
    /// THR-03: too many failed logins of this name (423), or of many names from this
    /// address, which is slowed (429).
    #[error("login throttled")]
    Throttled(Wait),
}

impl From<ProtocolError> for WebError {
    fn from(e: ProtocolError) -> Self {
        Self::Unavailable(e)
    }
}

impl WebError {
    /// A fault of this server, with its cause (or a description when there is none).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }
}

/// Marker carried from `into_response` to the middleware.
#[derive(Debug, Clone)]
struct Rendered(std::sync::Arc<WebError>);

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownService => StatusCode::FORBIDDEN,
            Self::ServiceRequired => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Throttled(Wait::Blocked(_)) => StatusCode::LOCKED,
            Self::Throttled(Wait::Slowed(_)) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn page<'t>(&'t self, t: &'t Messages) -> (&'t str, &'t str) {
        match self {
            Self::BadRequest(why) => (&t.bad_request_title, why.as_str()),
            Self::UnknownService => (&t.unauthorized_service_title, &t.unauthorized_service_text),
            Self::ServiceRequired => (&t.service_required_title, &t.service_required_text),
            Self::Unavailable(_) => (&t.unavailable_title, &t.unavailable_text),
            Self::Internal(_) => (&t.internal_title, &t.internal_text),
            Self::NotFound => (&t.not_found_title, &t.not_found_text),
            Self::Throttled(Wait::Blocked(_)) => (&t.throttled_title, &t.throttled_text),
            Self::Throttled(Wait::Slowed(_)) => (&t.slowed_title, &t.slowed_text),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response
            .extensions_mut()
            .insert(Rendered(std::sync::Arc::new(self)));
        response
    }
}

/// Replaces a [`WebError`] marker with its logged, rendered page (`chrome` gives the
/// request's language and look; only called for an error); any other response passes
/// untouched.
pub fn render<'c>(response: Response, chrome: impl FnOnce() -> Chrome<'c>) -> Response {
    let Some(Rendered(error)) = response.extensions().get::<Rendered>().cloned() else {
        return response;
    };
    // The one place a request's error is logged, with its whole cause chain; the client
    // sees only the page.
    let chain = crate::telemetry::Chain(&*error);
    match &*error {
        WebError::Internal(_) => tracing::error!(error = %chain, "request failed"),
        // A store or source that is down fails every request until it is back.
        WebError::Unavailable(_) => {
            static REPEATS: Repeats = Repeats::new(FAULT_LOG_INTERVAL);
            if let Some(left_out) = REPEATS.admit() {
                tracing::warn!(error = %chain, left_out, "request failed (a dependency is unavailable)");
            }
        }
        _ => tracing::debug!(error = %chain, "request refused"),
    }
    let c = chrome();
    let (title, message) = error.page(c.t);
    let mut page = html(error.status(), &ErrorPage { c, title, message });
    if let WebError::Throttled(wait) = &*error {
        // Whole seconds, rounded up: a client retrying at once would only be slowed again.
        let seconds = wait.retry_after().as_millis().div_ceil(1000).max(1);
        page.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(u64::try_from(seconds).unwrap_or(u64::MAX)),
        );
    }
    page
}
