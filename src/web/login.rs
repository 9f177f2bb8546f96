//! GET and POST `/login`: translate HTTP into [`Cas::request_login`] and
//! [`Cas::submit_credentials`], and their outcomes into pages, redirects and cookies.
//!
//! [`Cas::request_login`]: crate::protocol::Cas::request_login
//! [`Cas::submit_credentials`]: crate::protocol::Cas::submit_credentials

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::error::WebError;
use super::params::CasParams;
use super::redirect::found;
use super::session::current_session;
use super::state::AppState;
use super::views::{LoggedInPage, LoginPage, html};
use crate::protocol::flow::FlowError;
use crate::protocol::{CredentialOutcome, LoginDecision, LoginRequest, Refusal};
use crate::telemetry::audit;

pub async fn get_login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let service = params.get("service");
    let request = LoginRequest {
        service,
        renew: params.has("renew"),
        gateway: params.has("gateway"),
    };
    let session = current_session(&state, &headers, &client);
    match state.cas.request_login(request, session.as_deref()).await? {
        LoginDecision::UnknownService => Err(WebError::UnknownService),
        LoginDecision::ShowForm => Ok(login_form(&state, service, "", None, StatusCode::OK)),
        LoginDecision::Redirect {
            location,
            ticket,
            user,
        } => {
            audit::ticket_issued(&ticket, &user, service.unwrap_or_default(), client.ip);
            found(&location)
        }
        LoginDecision::GatewayRedirect { location } => found(&location),
        LoginDecision::LoggedIn { principal } => Ok(html(
            StatusCode::OK,
            &LoggedInPage {
                assets: &state.assets,
                user: &principal.id,
            },
        )),
    }
}

pub async fn post_login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let service = params.get("service");
    // LOGINP-08 before anything else: no form, no credentials check, for a foreign service.
    if service.is_some_and(|s| state.cas.resolve_service(s).is_none()) {
        return Err(WebError::UnknownService);
    }
    let username = params.get("username").unwrap_or_default().trim();
    let password = params.get("password").unwrap_or_default();
    // THR-03: a blocked attempt costs no password check and consumes nothing.
    if let Some(retry_after) = state.cas.login_blocked(client.ip, username) {
        audit::login_throttled(username, client.ip);
        return Err(WebError::Throttled { retry_after });
    }
    let flow = state
        .flow
        .redeem(params.get("lt").unwrap_or_default(), service)
        .await
        .map_err(|e| WebError::Unavailable(e.to_string()))?;
    if let Err(e) = flow {
        // THR-04: a refused form counts as a failed attempt.
        state.cas.login_failed(client.ip, username);
        audit::login_failed(username, service, client.ip, &e.to_string());
        let message = match e {
            FlowError::Expired => "The sign-in form expired. Please enter your credentials again.",
            FlowError::Invalid | FlowError::Replayed => {
                "The sign-in form was not valid or was already used. Please enter your credentials again."
            }
        };
        return Ok(login_form(
            &state,
            service,
            username,
            Some(message),
            StatusCode::BAD_REQUEST,
        ));
    }
    if username.is_empty() || password.is_empty() {
        return Ok(login_form(
            &state,
            service,
            username,
            Some("Enter your username and password."),
            StatusCode::BAD_REQUEST,
        ));
    }
    let previous = current_session(&state, &headers, &client);
    match state
        .cas
        .submit_credentials(service, username, password, previous.as_deref(), client.ip)
        .await?
    {
        CredentialOutcome::UnknownService => Err(WebError::UnknownService),
        CredentialOutcome::Throttled { retry_after } => {
            audit::login_throttled(username, client.ip);
            Err(WebError::Throttled { retry_after })
        }
        CredentialOutcome::Rejected(refusal) => {
            audit::login_failed(username, service, client.ip, refusal.as_str());
            let message = match refusal {
                Refusal::InvalidCredentials => "The username or password is not correct.",
                Refusal::AccountLocked => {
                    "Your account is locked. Contact your help desk, or wait and try again later."
                }
                Refusal::AccountDisabled => "Your account is disabled. Contact your help desk.",
                Refusal::PasswordExpired => {
                    "Your password has expired. Change it with your organisation's password service, then sign in again."
                }
                Refusal::AccountExpired => "Your account has expired. Contact your help desk.",
            };
            Ok(login_form(
                &state,
                service,
                username,
                Some(message),
                StatusCode::UNAUTHORIZED,
            ))
        }
        CredentialOutcome::Success {
            tgt_id,
            principal,
            redirect,
        } => {
            audit::login_succeeded(&principal.id, service, client.ip);
            let cookie = state
                .tgc
                .encode(&tgt_id, &client.ip.to_string(), &client.user_agent)
                .map_err(|e| WebError::Internal(e.to_string()))?;
            let mut response = match redirect {
                Some((location, ticket)) => {
                    audit::ticket_issued(
                        &ticket,
                        &principal.id,
                        service.unwrap_or_default(),
                        client.ip,
                    );
                    found(&location)?
                }
                None => html(
                    StatusCode::OK,
                    &LoggedInPage {
                        assets: &state.assets,
                        user: &principal.id,
                    },
                ),
            };
            let set_cookie = state
                .cookie
                .set(&cookie)
                .parse()
                .map_err(|_| WebError::Internal("cookie value is not a valid header".into()))?;
            response.headers_mut().append(SET_COOKIE, set_cookie);
            Ok(response)
        }
    }
}

/// The credential form with a fresh single-use flow token.
fn login_form(
    state: &AppState,
    service: Option<&str>,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let service_name = service
        .and_then(|s| state.cas.resolve_service(s))
        .map(|s| s.name.as_str());
    html(
        status,
        &LoginPage {
            assets: &state.assets,
            service,
            service_name,
            lt: state.flow.issue(service),
            username,
            error,
        },
    )
    .into_response()
}
