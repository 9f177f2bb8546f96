//! A [`LoginOutcome`] as an HTTP response: the page or the redirect it names, with the
//! cookies it asks for (the SSO cookie, the warn cookie, the form binding).

use axum::http::header::{CONTENT_SECURITY_POLICY, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::error::WebError;
use super::i18n::Messages;
use super::redirect::found;
use super::session::current_session;
use super::state::AppState;
use super::views::{LoggedInPage, LoginPage, PostPage, WarnPage, html};
use crate::protocol::{
    BINDING_LEN, Browser, Delivery, Form, LoginOutcome, LoginRefusal, LoginView, Notice, Refusal,
    Step,
};
use crate::services::ResponseType;

/// What `/login` learns of the browser from its request, held for the call.
pub struct Visitor<'h> {
    client: &'h ClientInfo,
    session: Option<String>,
    bindings: Vec<&'h str>,
    warn: bool,
}

impl<'h> Visitor<'h> {
    pub fn new(state: &AppState, headers: &'h HeaderMap, client: &'h ClientInfo) -> Self {
        Self {
            client,
            session: current_session(state, headers, client),
            bindings: form_bindings(state, headers),
            warn: state.warn_cookie.present(headers),
        }
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser {
            ip: self.client.ip,
            session: self.session.as_deref(),
            bindings: &self.bindings,
            warn: self.warn,
        }
    }
}

/// The well-formed `CASFLOW` values the browser sent, in its order. Every one is offered:
/// a cookie planted for a parent domain or a longer path comes first in the header, and
/// must not shadow this browser's own.
fn form_bindings<'h>(state: &AppState, headers: &'h HeaderMap) -> Vec<&'h str> {
    state
        .flow_cookie
        .values(headers)
        .into_iter()
        .filter(|v| v.len() == BINDING_LEN && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect()
}

/// The response for `outcome`.
pub fn answer(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
    outcome: LoginOutcome<'_>,
) -> Result<Response, WebError> {
    let mut response = match outcome.view {
        LoginView::Refused(LoginRefusal::UnknownService) => return Err(WebError::UnknownService),
        LoginView::Refused(LoginRefusal::ServiceRequired) => {
            return Err(WebError::ServiceRequired);
        }
        LoginView::Refused(LoginRefusal::Throttled(wait)) => {
            return Err(WebError::Throttled(wait));
        }
        LoginView::Form(form) => form_page(state, headers, &form),
        LoginView::Step(Step::Warn {
            service,
            token,
            method,
        }) => html(
            StatusCode::OK,
            &WarnPage {
                c: state.chrome(headers, Some(service.entry)),
                service: service.url,
                service_name: &service.entry.name,
                lt: token,
                method,
            },
        ),
        LoginView::SignedIn { user } => html(
            StatusCode::OK,
            &LoggedInPage {
                // Only reached without a service (LOGIN-15), so no theme of one.
                c: state.chrome(headers, None),
                user: &user,
            },
        ),
        LoginView::Deliver(delivery) => deliver(state, headers, &delivery)?,
        LoginView::Gateway { location } => found(location)?,
    };
    if let Some(session) = outcome.session {
        let value = state
            .tgc
            .encode(&session.tgt_id, &client.ip.to_string(), &client.user_agent)
            .map_err(WebError::internal)?;
        let cookie = match session.remember_me {
            Some(lifetime) => state.cookie.set_persistent(&value, lifetime),
            None => state.cookie.set(&value),
        };
        append_cookie(&mut response, &cookie)?;
    }
    match outcome.warn_cookie {
        Some(true) => append_cookie(&mut response, &state.warn_cookie.set("true"))?,
        Some(false) => append_cookie(&mut response, &state.warn_cookie.clear())?,
        None => {}
    }
    if let Some(binding) = outcome.binding {
        append_cookie(&mut response, &state.flow_cookie.set(&binding))?;
    }
    Ok(response)
}

/// The credential form; its status says why it is shown again.
fn form_page(state: &AppState, headers: &HeaderMap, form: &Form<'_>) -> Response {
    let c = state.chrome(headers, form.service.map(|s| s.entry));
    let (status, error) = match form.notice {
        None => (StatusCode::OK, None),
        Some(notice) => notice_text(notice, c.t),
    };
    html(
        status,
        &LoginPage {
            service: form.service.map(|s| s.url),
            service_name: form.service.map(|s| s.entry.name.as_str()),
            lt: form.lt.clone(),
            username: form.username,
            error,
            remember_me: form.remember_me,
            renew: form.renew,
            method: form.method,
            c,
        },
    )
}

fn notice_text(notice: Notice, t: &Messages) -> (StatusCode, Option<&str>) {
    match notice {
        Notice::MissingCredentials => (StatusCode::BAD_REQUEST, Some(&t.missing_credentials)),
        Notice::FormExpired => (StatusCode::BAD_REQUEST, Some(&t.form_expired)),
        Notice::FormInvalid => (StatusCode::BAD_REQUEST, Some(&t.form_invalid)),
        Notice::StartOver => (StatusCode::BAD_REQUEST, None),
        Notice::Rejected(refusal) => (
            StatusCode::UNAUTHORIZED,
            Some(match refusal {
                Refusal::InvalidCredentials => &t.bad_credentials,
                Refusal::AccountLocked => &t.account_locked,
                Refusal::AccountDisabled => &t.account_disabled,
                Refusal::PasswordExpired => &t.password_expired,
                Refusal::AccountExpired => &t.account_expired,
            }),
        ),
    }
}

/// Sends the browser to the service with its ticket (LOGIN-11..14, SVC-09).
fn deliver(
    state: &AppState,
    headers: &HeaderMap,
    delivery: &Delivery<'_>,
) -> Result<Response, WebError> {
    match delivery.how {
        ResponseType::Redirect => found(&delivery.location),
        ResponseType::Header => {
            let bad =
                |_| WebError::BadRequest("The service URL cannot be sent in a header.".into());
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(
                HeaderName::from_static("service"),
                HeaderValue::from_bytes(delivery.service.url.as_bytes()).map_err(bad)?,
            );
            response.headers_mut().insert(
                HeaderName::from_static("ticket"),
                HeaderValue::from_str(&delivery.ticket).map_err(bad)?,
            );
            Ok(response)
        }
        ResponseType::Post => {
            let nonce = crate::crypto::random_base62(22);
            let mut response = html(
                StatusCode::OK,
                &PostPage {
                    c: state.chrome(headers, Some(delivery.service.entry)),
                    action: delivery.service.url,
                    ticket: &delivery.ticket,
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
    let value = HeaderValue::from_str(cookie).map_err(WebError::internal)?;
    response.headers_mut().append(SET_COOKIE, value);
    Ok(())
}
