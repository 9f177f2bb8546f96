//! The ceiling: a "CAS server" that answers the SSO cycle with constant responses and
//! keeps no state at all. Whatever it reaches on this machine, with this driver, is the
//! most any CAS server could.

use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// The ticket every redirect carries (ST- plus 29 characters, like a real one).
pub const NULL_TICKET: &str = "ST-00000000000000000000000000000";
pub const NULL_USER: &str = "casuser";

const FORM: &str = r#"<!DOCTYPE html><html lang="en"><form method="post" action="/cas/login"><input name="username"><input type="password" name="password"><input type="hidden" name="service" value="http://localhost/app"></form></html>"#;

fn service(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.into_owned())
}

async fn login(RawQuery(query): RawQuery, headers: axum::http::HeaderMap) -> Response {
    let session = headers.contains_key(axum::http::header::COOKIE);
    match service(query.as_deref()) {
        Some(s) if session => (
            StatusCode::FOUND,
            [(LOCATION, format!("{s}?ticket={NULL_TICKET}"))],
        )
            .into_response(),
        _ => ([(CONTENT_TYPE, "text/html")], FORM).into_response(),
    }
}

async fn post_login(body: String) -> Response {
    let headers = [(SET_COOKIE, "TGC=null; Path=/cas; HttpOnly".to_owned())];
    match service(Some(&body)) {
        Some(s) => (
            StatusCode::FOUND,
            headers,
            [(LOCATION, format!("{s}?ticket={NULL_TICKET}"))],
        )
            .into_response(),
        None => (headers, "signed in").into_response(),
    }
}

async fn validate() -> Response {
    (
        [(CONTENT_TYPE, "application/xml; charset=UTF-8")],
        format!(
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n  <cas:authenticationSuccess>\n    <cas:user>{NULL_USER}</cas:user>\n  </cas:authenticationSuccess>\n</cas:serviceResponse>\n"
        ),
    )
        .into_response()
}

/// Serves the null server on `listener` under `/cas` until the process ends.
pub async fn serve_null(listener: TcpListener) -> std::io::Result<()> {
    let app = Router::new()
        .route("/cas/login", get(login).post(post_login))
        .route("/cas/serviceValidate", get(validate));
    axum::serve(listener, app).await
}
