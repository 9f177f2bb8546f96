//! GET and POST `/login`: the request becomes a [`Cas::login_get`] or [`Cas::login_post`]
//! call, and its outcome a response (see [`answer`]). No protocol rule is decided here.
//!
//! [`Cas::login_get`]: crate::protocol::Cas::login_get
//! [`Cas::login_post`]: crate::protocol::Cas::login_post

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::client::ClientInfo;
use super::error::WebError;
use super::login_answer::{Visitor, answer};
use super::params::CasParams;
use super::state::AppState;
use crate::protocol::{LoginForm, LoginRequest};

pub async fn get_login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let visitor = Visitor::new(&state, &headers, &client);
    let request = LoginRequest {
        service: params.get("service"),
        renew: params.has("renew"),
        gateway: params.has("gateway"),
        method: params.get("method"),
    };
    let outcome = state.cas.login_get(request, visitor.browser()).await?;
    answer(&state, &headers, &client, outcome)
}

pub async fn post_login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let visitor = Visitor::new(&state, &headers, &client);
    let form = LoginForm {
        service: params.get("service"),
        username: params.get("username").unwrap_or_default().trim(),
        password: params.get("password").unwrap_or_default(),
        lt: params.get("lt").unwrap_or_default(),
        remember_me: params.has("rememberMe"),
        renew: params.has("renew"),
        warn: params.has("warn"),
        proceed: params.has("continue"),
        method: params.get("method"),
    };
    let outcome = state.cas.login_post(form, visitor.browser()).await?;
    answer(&state, &headers, &client, outcome)
}
