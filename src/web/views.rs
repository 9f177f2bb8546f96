//! Askama page templates. `assets` is the base path with a trailing slash, so every link
//! and the stylesheet are absolute under the CAS base path.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub assets: &'a str,
    /// Echoed exactly as received (LOGIN-02).
    pub service: Option<&'a str>,
    /// The registry entry's name: users see which application they sign in to.
    pub service_name: Option<&'a str>,
    pub lt: String,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "logged_in.html")]
pub struct LoggedInPage<'a> {
    pub assets: &'a str,
    pub user: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub assets: &'a str,
    /// SLO-09: front-channel logout URLs, loaded in hidden frames.
    pub front_channel: &'a [String],
    /// Where to go once the frames had their chance (a followed `service` redirect).
    pub continue_to: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub assets: &'a str,
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders `page` with `status`; a template that fails to render becomes a bare 500.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}
