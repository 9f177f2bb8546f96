//! GET `/logout` (§2.3).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::client::ClientInfo;
use super::error::WebError;
use super::params::CasParams;
use super::redirect::found;
use super::session::current_session;
use super::state::AppState;
use super::views::{LogoutPage, html};
use crate::telemetry::audit;

pub async fn get_logout(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let session = current_session(&state, &headers, &client);
    // LOGOUT-06: `url` is deliberately never read.
    let outcome = state
        .cas
        .logout(session.as_deref(), params.get("service"))
        .await?;
    audit::logged_out(outcome.principal.as_deref(), client.ip);
    // A redirect would stop the browser before it reached the front-channel services, so
    // with any of them the page is shown and continues to the service by itself.
    let mut response = match outcome.redirect {
        Some(location) if outcome.front_channel.is_empty() => found(&location)?,
        continue_to => html(
            StatusCode::OK,
            &LogoutPage {
                c: state.chrome(&headers, None),
                front_channel: &outcome.front_channel,
                continue_to: continue_to.as_deref(),
            },
        ),
    };
    state
        .headers
        .allow_frames(response.headers_mut(), &outcome.front_channel);
    // LOGOUT-01: always clear the cookie, even one we could not read.
    super::login_answer::append_cookie(&mut response, &state.cookie.clear())?;
    Ok(response)
}
