//! GET and POST `/login`: translate HTTP into [`Cas::request_login`] and
//! [`Cas::submit_credentials`], and their outcomes into pages, redirects and cookies.
//!
//! [`Cas::request_login`]: crate::protocol::Cas::request_login
//! [`Cas::submit_credentials`]: crate::protocol::Cas::submit_credentials

use axum::extract::State;
use axum::http::header::{CONTENT_SECURITY_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::error::WebError;
use super::params::{CasParams, Params};
use super::redirect::found;
use super::session::current_session;
use super::state::AppState;
use super::views::{LoggedInPage, LoginPage, PostPage, WarnPage, html};
use crate::protocol::flow::FlowError;
use crate::protocol::{CredentialOutcome, LoginDecision, LoginRequest, LoginSubmission, Refusal};
use crate::services::ResponseType;
use crate::telemetry::audit;

pub async fn get_login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    CasParams(params): CasParams,
) -> Result<Response, WebError> {
    let request = LoginRequest {
        service: params.get("service"),
        renew: params.has("renew"),
        gateway: params.has("gateway"),
        warn: state.warn_cookie.present(&headers),
    };
    let session = current_session(&state, &headers, &client);
    let decision = state.cas.request_login(request, session.as_deref()).await?;
    respond(&state, &headers, &client, &params, decision)
}

/// Turns a GET decision (or a warned user's Continue) into a response.
fn respond(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
    params: &Params,
    decision: LoginDecision,
) -> Result<Response, WebError> {
    match decision {
        LoginDecision::UnknownService => Err(WebError::UnknownService),
        LoginDecision::ServiceRequired => Err(WebError::ServiceRequired),
        LoginDecision::ShowForm => Ok(login_form(state, headers, params, "", None, StatusCode::OK)),
        LoginDecision::Warn { service } => {
            let registered = state.cas.resolve_service(&service);
            let (binding, new) = form_binding(state, headers);
            let mut page = html(
                StatusCode::OK,
                &WarnPage {
                    c: state.chrome(headers, registered),
                    service: &service,
                    service_name: registered.map_or(service.as_str(), |r| r.name.as_str()),
                    lt: state.flow.issue(Some(&service), &binding),
                    method: params.get("method"),
                },
            );
            if new {
                append_cookie(&mut page, &state.flow_cookie.set(&binding))?;
            }
            Ok(page)
        }
        LoginDecision::Redirect {
            service,
            location,
            ticket,
            user,
        } => {
            audit::ticket_issued(&ticket, &user, &service, client.ip);
            deliver(
                state,
                headers,
                params.get("method"),
                &service,
                &location,
                &ticket,
            )
        }
        LoginDecision::GatewayRedirect { location } => found(&location),
        LoginDecision::LoggedIn { principal } => Ok(html(
            StatusCode::OK,
            &LoggedInPage {
                // Only reached without a service (LOGIN-15), so no theme of one.
                c: state.chrome(headers, None),
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
    if service.is_some_and(|s| state.cas.login_service(s).is_none()) {
        return Err(WebError::UnknownService);
    }
    if params.has("continue") {
        return continue_after_warning(&state, &headers, &client, &params).await;
    }
    let username = params.get("username").unwrap_or_default().trim();
    let password = params.get("password").unwrap_or_default();
    // THR-03: a blocked attempt costs no password check and consumes nothing.
    if let Some(wait) = state.cas.login_blocked(client.ip, username).await? {
        audit::login_throttled(username, client.ip);
        return Err(WebError::Throttled(wait));
    }
    // Checked before the form is redeemed, so empty posts cost no stored claim.
    if username.is_empty() || password.is_empty() {
        let t = state.catalogues.pick(accept_language(&headers));
        return Ok(login_form(
            &state,
            &headers,
            &params,
            username,
            Some(&t.missing_credentials),
            StatusCode::BAD_REQUEST,
        ));
    }
    if let Err(e) = redeem_form(&state, &headers, &params).await? {
        // THR-04: a refused form counts as a failed attempt.
        state.cas.login_failed(client.ip, username).await;
        audit::login_failed(username, service, client.ip, &e.to_string());
        let t = state.catalogues.pick(accept_language(&headers));
        let message = match e {
            FlowError::Expired => &t.form_expired,
            FlowError::Invalid | FlowError::Replayed => &t.form_invalid,
        };
        return Ok(login_form(
            &state,
            &headers,
            &params,
            username,
            Some(message),
            StatusCode::BAD_REQUEST,
        ));
    }
    let previous = current_session(&state, &headers, &client);
    let submission = LoginSubmission {
        service,
        username,
        password,
        remember_me: params.has("rememberMe"),
        renewed: params.has("renew"),
    };
    match state
        .cas
        .submit_credentials(submission, previous.as_deref(), client.ip)
        .await?
    {
        CredentialOutcome::UnknownService => Err(WebError::UnknownService),
        CredentialOutcome::ServiceRequired => Err(WebError::ServiceRequired),
        CredentialOutcome::Throttled(wait) => {
            audit::login_throttled(username, client.ip);
            Err(WebError::Throttled(wait))
        }
        CredentialOutcome::Rejected(refusal) => {
            audit::login_failed(username, service, client.ip, refusal.as_str());
            let t = state.catalogues.pick(accept_language(&headers));
            let message = match refusal {
                Refusal::InvalidCredentials => &t.bad_credentials,
                Refusal::AccountLocked => &t.account_locked,
                Refusal::AccountDisabled => &t.account_disabled,
                Refusal::PasswordExpired => &t.password_expired,
                Refusal::AccountExpired => &t.account_expired,
            };
            Ok(login_form(
                &state,
                &headers,
                &params,
                username,
                Some(message),
                StatusCode::UNAUTHORIZED,
            ))
        }
        CredentialOutcome::Success {
            tgt_id,
            principal,
            redirect,
            set_cookie,
            remember_me,
        } => {
            audit::login_succeeded(&principal.id, service, client.ip);
            let mut response = match (redirect, service) {
                (Some((location, ticket)), Some(service)) => {
                    audit::ticket_issued(&ticket, &principal.id, service, client.ip);
                    deliver(
                        &state,
                        &headers,
                        params.get("method"),
                        service,
                        &location,
                        &ticket,
                    )?
                }
                _ => html(
                    StatusCode::OK,
                    &LoggedInPage {
                        c: state.chrome(&headers, None),
                        user: &principal.id,
                    },
                ),
            };
            if set_cookie {
                let value = state
                    .tgc
                    .encode(&tgt_id, &client.ip.to_string(), &client.user_agent)
                    .map_err(|e| WebError::Internal(e.to_string()))?;
                let cookie = match remember_me {
                    Some(lifetime) => state.cookie.set_persistent(&value, lifetime),
                    None => state.cookie.set(&value),
                };
                append_cookie(&mut response, &cookie)?;
            }
            // LOGINP-05: the warn choice is remembered for the browser session.
            let warn = if params.has("warn") {
                state.warn_cookie.set("true")
            } else {
                state.warn_cookie.clear()
            };
            append_cookie(&mut response, &warn)?;
            Ok(response)
        }
    }
}

/// LOGIN-18: the warned user chose Continue: SSO proceeds, once, for this form.
async fn continue_after_warning(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
    params: &Params,
) -> Result<Response, WebError> {
    if redeem_form(state, headers, params).await?.is_err() {
        return Ok(login_form(
            state,
            headers,
            params,
            "",
            None,
            StatusCode::BAD_REQUEST,
        ));
    }
    let request = LoginRequest {
        service: params.get("service"),
        ..LoginRequest::default()
    };
    let session = current_session(state, headers, client);
    let decision = state.cas.request_login(request, session.as_deref()).await?;
    respond(state, headers, client, params, decision)
}

async fn redeem_form(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Result<(), FlowError>, WebError> {
    // Every well-formed value is tried: a cookie planted for a parent domain or a longer
    // path comes first in the header, and must not shadow this browser's own.
    let bindings = form_bindings(state, headers);
    state
        .flow
        .redeem(
            params.get("lt").unwrap_or_default(),
            params.get("service"),
            &bindings,
        )
        .await
        .map_err(|e| WebError::Unavailable(e.to_string()))
}

/// The browser's form-binding value (its `CASFLOW` cookie), or a new one to set.
///
/// A login form only posts from the browser that loaded it: the cookie is SameSite=Lax,
/// so a form another site submits arrives without it (login CSRF).
fn form_binding(state: &AppState, headers: &HeaderMap) -> (String, bool) {
    match form_bindings(state, headers).first() {
        Some(value) => ((*value).to_owned(), false),
        None => (crate::crypto::random_base62(FLOW_BINDING_LEN), true),
    }
}

const FLOW_BINDING_LEN: usize = 22;

/// The well-formed `CASFLOW` values the browser sent, in its order.
fn form_bindings<'h>(state: &AppState, headers: &'h HeaderMap) -> Vec<&'h str> {
    state
        .flow_cookie
        .values(headers)
        .into_iter()
        .filter(|v| v.len() == FLOW_BINDING_LEN && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect()
}

/// Sends the browser to the service with its ticket, as `method` or the service's
/// `response_type` asks (LOGIN-11..14, SVC-09); an unknown method redirects.
fn deliver(
    state: &AppState,
    headers: &HeaderMap,
    method: Option<&str>,
    service: &str,
    location: &str,
    ticket: &str,
) -> Result<Response, WebError> {
    let how = method
        .and_then(ResponseType::from_method)
        .or_else(|| state.cas.resolve_service(service).map(|r| r.response_type))
        .unwrap_or_default();
    match how {
        ResponseType::Redirect => found(location),
        ResponseType::Header => {
            let bad =
                |_| WebError::BadRequest("The service URL cannot be sent in a header.".into());
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(
                HeaderName::from_static("service"),
                HeaderValue::from_bytes(service.as_bytes()).map_err(bad)?,
            );
            response.headers_mut().insert(
                HeaderName::from_static("ticket"),
                HeaderValue::from_str(ticket).map_err(bad)?,
            );
            Ok(response)
        }
        ResponseType::Post => {
            let nonce = crate::crypto::random_base62(22);
            let mut response = html(
                StatusCode::OK,
                &PostPage {
                    c: state.chrome(headers, state.cas.resolve_service(service)),
                    action: service,
                    ticket,
                    nonce: &nonce,
                },
            );
            // The one script on any page submits this form; it runs by nonce only.
            if let Some(csp) = &state.headers.csp
                && let Ok(value) =
                    HeaderValue::from_str(&format!("{csp}; script-src 'nonce-{nonce}'"))
            {
                response
                    .headers_mut()
                    .insert(CONTENT_SECURITY_POLICY, value);
            }
            Ok(response)
        }
    }
}

pub(super) fn append_cookie(response: &mut Response, cookie: &str) -> Result<(), WebError> {
    let value = HeaderValue::from_str(cookie)
        .map_err(|_| WebError::Internal("cookie value is not a valid header".into()))?;
    response.headers_mut().append(SET_COOKIE, value);
    Ok(())
}

pub fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// The credential form with a fresh single-use flow token.
fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let service = params.get("service");
    let registered = service.and_then(|s| state.cas.resolve_service(s));
    let (binding, new) = form_binding(state, headers);
    let mut page = html(
        status,
        &LoginPage {
            c: state.chrome(headers, registered),
            service,
            service_name: registered.map(|s| s.name.as_str()),
            lt: state.flow.issue(service, &binding),
            username,
            error,
            remember_me: state.cas.options.remember_me.is_some(),
            renew: params.has("renew"),
            method: params
                .get("method")
                .filter(|m| ResponseType::from_method(m).is_some()),
        },
    );
    if new && append_cookie(&mut page, &state.flow_cookie.set(&binding)).is_err() {
        tracing::error!("could not set the form-binding cookie");
    }
    page
}
