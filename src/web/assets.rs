//! Static files compiled into the binary, so the server stands alone.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const CSS: &str = include_str!("../../static/cas.css");

pub async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
}

/// `static/theme/<service id>.css` or `default.css`: the theme's accent colour, as a
/// stylesheet so that pages need no inline styles (the CSP forbids them).
pub async fn theme_css(
    axum::extract::State(state): axum::extract::State<super::state::AppState>,
    // A path that does not decode (invalid UTF-8) is simply not a theme: the 404 page,
    // not axum's plain-text rejection.
    file: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> axum::response::Response {
    let file = file.map(|axum::extract::Path(f)| f).unwrap_or_default();
    let key = file.strip_suffix(".css").unwrap_or_default();
    let theme = if key == "default" {
        Some(&state.theme)
    } else {
        key.parse::<u32>()
            .ok()
            .and_then(|id| state.cas.services.by_id(id))
            .and_then(|s| s.theme.as_ref())
    };
    match theme.and_then(|t| t.accent_colour.as_deref()) {
        // Checked at load: exactly `#` and six hex digits.
        Some(colour) => (
            [
                (CONTENT_TYPE, "text/css; charset=utf-8"),
                (CACHE_CONTROL, "public, max-age=3600"),
            ],
            format!(":root {{ --accent: {colour}; }}\n"),
        )
            .into_response(),
        None => super::error::WebError::NotFound.into_response(),
    }
}
