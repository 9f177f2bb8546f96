//! `/login` (§2.1, §2.2) as one sequence of steps, run by [`Cas`] and answered with one
//! [`LoginOutcome`]: what to show, or where to send the browser and how, and the cookies
//! that go with it. The web layer only translates: it never decides a protocol rule.
//!
//! A GET ([`Cas::login_get`]) resolves the service, then answers from the SSO session if
//! it can (LOGIN-04..10, 17, 18), or shows the form. A POST ([`Cas::login_post`]) runs:
//! the service (LOGINP-08), the throttle (one reservation, THR-01..05), the form token
//! (LOGINP-06), the credentials, the steps that may stand between a successful
//! authentication and the grant, then the grant (a new session and its service ticket).
//!
//! A step that needs the browser (today the warn page, LOGIN-18; designed for a second
//! factor, an access decision, a required password change) keeps its state server-side,
//! in the ticket registry so that it works across nodes, bound to the browser that began
//! it and expiring with the login form; the browser only carries its id (see [`steps`]).
//! Adding such a step touches this module and a template, not the handlers.
//!
//! The service is resolved once per request into a [`ResolvedService`] that is passed
//! along; nothing searches the registry for it again.

mod grant;
mod steps;
mod submit;

use std::net::IpAddr;
use std::time::Duration;

pub use grant::Delivery;
pub use steps::Step;

use super::throttle::Wait;
use super::{Cas, ProtocolError, ResolvedService};
use crate::services::ResponseType;

/// Who is asking, as far as `/login` needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Browser<'a> {
    pub ip: IpAddr,
    /// The TGT id carried by a valid TGC pinned to this browser, if any.
    pub session: Option<&'a str>,
    /// The browser's well-formed form-binding values (its `CASFLOW` cookies), in order:
    /// a login form only posts from the browser that loaded it (login CSRF).
    pub bindings: &'a [&'a str],
    /// LOGIN-18: the user asked to be warned before SSO (the `CASPRIVACY` cookie).
    pub warn: bool,
}

/// The protocol parameters of a GET `/login`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginRequest<'a> {
    pub service: Option<&'a str>,
    /// Set whenever the parameter is present, whatever its value (§2.1.1).
    pub renew: bool,
    pub gateway: bool,
    /// LOGIN-11..13: how the ticket is to be delivered.
    pub method: Option<&'a str>,
}

/// A POST `/login`: credentials, or the answer to a step.
#[derive(Clone, Copy, Default)]
pub struct LoginForm<'a> {
    pub service: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
    /// The form's token (LOGINP-06), or the id of the step being answered.
    pub lt: &'a str,
    /// LOGINP-07: the remember-me box was ticked.
    pub remember_me: bool,
    /// The form was shown because of `renew` (a forced login, TGC-09).
    pub renew: bool,
    /// LOGINP-05: warn before later SSO.
    pub warn: bool,
    /// The answer to a step (the warned user's Continue, LOGIN-18), not credentials.
    pub proceed: bool,
    pub method: Option<&'a str>,
}

/// Never prints the password.
impl std::fmt::Debug for LoginForm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("service", &self.service)
            .field("username", &self.username)
            .field("password", &"***")
            .field("remember_me", &self.remember_me)
            .field("renew", &self.renew)
            .field("warn", &self.warn)
            .field("proceed", &self.proceed)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// What `/login` answers.
#[derive(Debug)]
pub struct LoginOutcome<'a> {
    pub view: LoginView<'a>,
    /// A new SSO session: the TGC to set (TGC-01), persistent for remember-me (TGC-05).
    pub session: Option<NewSession>,
    /// LOGINP-05: set (`true`) or clear (`false`) the warn cookie.
    pub warn_cookie: Option<bool>,
    /// A form-binding value to set: the browser had none.
    pub binding: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub tgt_id: String,
    /// The lifetime of a remember-me session.
    pub remember_me: Option<Duration>,
}

#[derive(Debug)]
pub enum LoginView<'a> {
    /// The credential form (LOGIN-01, LOGIN-06, LOGIN-09, LOGIN-10).
    Form(Form<'a>),
    /// A step between authentication and grant asks the browser.
    Step(Step<'a>),
    /// LOGIN-05: a session, no service.
    SignedIn { user: String },
    /// LOGIN-04, LOGINP-01: to the service with its ticket, as the delivery says.
    Deliver(Delivery<'a>),
    /// LOGIN-07: gateway without single sign-on: back to the service, no ticket.
    Gateway { location: &'a str },
    /// Refused before any credential is looked at.
    Refused(LoginRefusal),
}

/// The credential form, with what it carries through the POST.
#[derive(Debug)]
pub struct Form<'a> {
    /// Echoed exactly as received (LOGIN-02), with its entry (the page names it).
    pub service: Option<ResolvedService<'a>>,
    pub lt: String,
    pub username: &'a str,
    pub notice: Option<Notice>,
    /// A forced login stays forced through the POST.
    pub renew: bool,
    /// A known delivery method, carried through the POST.
    pub method: Option<&'a str>,
    /// The remember-me box is offered.
    pub remember_me: bool,
}

/// Why the form is shown again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    MissingCredentials,
    FormExpired,
    FormInvalid,
    /// LOGINP-04: the credentials were refused, for this reason.
    Rejected(Refusal),
    /// A step's answer could not be used (expired, replayed, or from another browser):
    /// the login starts over.
    StartOver,
}

/// Why credentials were refused; shown to the user (LOGINP-04 recommends a reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong password or unknown user: never distinguished.
    InvalidCredentials,
    AccountLocked,
    AccountDisabled,
    PasswordExpired,
    AccountExpired,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid credentials",
            Self::AccountLocked => "account locked",
            Self::AccountDisabled => "account disabled",
            Self::PasswordExpired => "password expired",
            Self::AccountExpired => "account expired",
        }
    }
}

/// Why `/login` answers with an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// LOGIN-03, LOGINP-08: not a registered, enabled service. No ticket, no redirect.
    UnknownService,
    /// `sso.allow_missing_service = false` and no service was given.
    ServiceRequired,
    /// THR-03: too many recent failures; the password was not checked.
    Throttled(Wait),
}

impl<'a> LoginOutcome<'a> {
    fn view(view: LoginView<'a>) -> Self {
        Self {
            view,
            session: None,
            warn_cookie: None,
            binding: None,
        }
    }

    fn refused(refusal: LoginRefusal) -> Self {
        Self::view(LoginView::Refused(refusal))
    }
}

/// What the form shows besides its service.
#[derive(Debug, Clone, Copy, Default)]
struct FormFields<'a> {
    username: &'a str,
    notice: Option<Notice>,
    renew: bool,
    method: Option<&'a str>,
}

impl Cas {
    /// GET `/login`.
    #[tracing::instrument(level = "debug", skip_all, fields(renew = req.renew, gateway = req.gateway))]
    pub async fn login_get<'a>(
        &'a self,
        req: LoginRequest<'a>,
        browser: Browser<'a>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        match self.login_target(req.service) {
            Ok(service) => self.single_sign_on(service, req, browser).await,
            Err(refusal) => Ok(LoginOutcome::refused(refusal)),
        }
    }

    /// A GET for a resolved service: single sign-on if the session allows it, or the form.
    async fn single_sign_on<'a>(
        &'a self,
        service: Option<ResolvedService<'a>>,
        req: LoginRequest<'a>,
        browser: Browser<'a>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        let fields = FormFields {
            renew: req.renew,
            method: req.method,
            ..FormFields::default()
        };
        // LOGIN-07: a gateway request never gets the form; it goes back without a ticket
        // whenever single sign-on cannot answer it.
        let no_sso = || match (req.gateway, service) {
            (true, Some(service)) => LoginOutcome::view(LoginView::Gateway {
                location: service.url,
            }),
            _ => self.form(service, browser, fields),
        };
        // LOGIN-10: renew wins over gateway.
        if req.renew {
            return Ok(self.form(service, browser, fields));
        }
        // LOGIN-17: a service may opt out of SSO.
        if service.is_some_and(|s| !s.entry.sso_enabled) {
            return Ok(no_sso());
        }
        let now = self.clock.now();
        let Some(session) = browser.session else {
            return Ok(no_sso());
        };
        // The usual case, a ticket for a service: looked up and issued in one step.
        let (Some(service), false) = (service, browser.warn) else {
            return self
                .look_at_session(session, service, req, browser, now, no_sso)
                .await;
        };
        match self
            .deliver_sso(session, service, req.method, browser.ip)
            .await?
        {
            Some(delivery) => Ok(LoginOutcome::view(LoginView::Deliver(delivery))),
            // No live session, or one too old for this service (SVC-05).
            None => Ok(no_sso()),
        }
    }

    /// Single sign-on without a ticket to issue at once: no service (the signed-in page),
    /// or the warn step (LOGIN-08) before the ticket.
    async fn look_at_session<'a>(
        &'a self,
        session: &str,
        service: Option<ResolvedService<'a>>,
        req: LoginRequest<'a>,
        browser: Browser<'a>,
        now: time::OffsetDateTime,
        no_sso: impl FnOnce() -> LoginOutcome<'a>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        let Some(tgt) = self.tickets.get_tgt(session, now).await? else {
            return Ok(no_sso());
        };
        let Some(service) = service else {
            return Ok(LoginOutcome::view(LoginView::SignedIn {
                user: tgt.principal.id.clone(),
            }));
        };
        if !grant::fresh_enough(service, &tgt, now) {
            return Ok(no_sso());
        }
        self.warn_step(&tgt.id, service, browser, req.method).await
    }

    /// The service of a `/login` request, resolved once: a registered, enabled entry that
    /// also matches `sso.required_service_pattern`.
    fn login_target<'a>(
        &'a self,
        service: Option<&'a str>,
    ) -> Result<Option<ResolvedService<'a>>, LoginRefusal> {
        match service {
            Some(url) => match self.resolve(url) {
                Some(resolved) if self.meets_required_pattern(url) => Ok(Some(resolved)),
                _ => Err(LoginRefusal::UnknownService),
            },
            None if !self.options.allow_missing_service => Err(LoginRefusal::ServiceRequired),
            None => Ok(None),
        }
    }

    fn meets_required_pattern(&self, url: &str) -> bool {
        self.options
            .required_service_pattern
            .as_ref()
            .is_none_or(|pattern| pattern.is_match(url))
    }

    /// The credential form with a fresh single-use token, bound to the browser (a new
    /// binding when it has none).
    fn form<'a>(
        &'a self,
        service: Option<ResolvedService<'a>>,
        browser: Browser<'a>,
        fields: FormFields<'a>,
    ) -> LoginOutcome<'a> {
        let (binding, new) = binding_of(browser);
        let lt = self.flow.issue(service.map(|s| s.url), &binding);
        LoginOutcome {
            binding: new.then_some(binding),
            ..LoginOutcome::view(LoginView::Form(Form {
                service,
                lt,
                username: fields.username,
                notice: fields.notice,
                renew: fields.renew,
                method: fields
                    .method
                    .filter(|m| ResponseType::from_method(m).is_some()),
                remember_me: self.options.remember_me.is_some(),
            }))
        }
    }
}

/// The browser's binding value, or a new one (`true`) to set.
fn binding_of(browser: Browser<'_>) -> (String, bool) {
    match browser.bindings.first() {
        Some(value) => ((*value).to_owned(), false),
        None => (crate::crypto::random_base62(BINDING_LEN), true),
    }
}

/// Length of a form-binding value (base62, about 131 bits).
pub const BINDING_LEN: usize = 22;

#[cfg(test)]
mod tests;
