//! GET `/logout` (§2.3).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
    // The frames of front-channel logout need their origins allowed by the page's policy.
    if !outcome.front_channel.is_empty() {
        let origins: Vec<String> = outcome
            .front_channel
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
            .collect();
        if let Some(csp) = state.headers.csp_with_frames(&origins)
            && let Ok(value) = HeaderValue::from_str(&csp)
        {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
    // LOGOUT-01: always clear the cookie, even one we could not read.
    super::login_answer::append_cookie(&mut response, &state.cookie.clear())?;
    Ok(response)
}
