//! The CAS protocol as plain Rust: what `/login`, `/logout` and the validation endpoints
//! decide, independent of HTTP. Handlers in `web` translate requests into calls on [`Cas`]
//! and its outcomes back into responses.
//!
//! A CAS failure (`INVALID_TICKET`…) is an outcome ([`Failure`]), rendered with HTTP 200;
//! only faults of the server itself are [`ProtocolError`]s.

pub mod flow;
pub mod json;
mod login;
mod logout;
mod proxy;
mod slo;
pub mod throttle;
mod urls;
mod validate;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::services::{RegisteredService, ServiceLookup};
use crate::tickets::{ExpirationPolicy, RegistryError, TicketRegistry};

pub use login::{
    BINDING_LEN, Browser, Delivery, Form, LoginForm, LoginOutcome, LoginRefusal, LoginRequest,
    LoginView, NewSession, Notice, Refusal, Step,
};
pub use logout::LogoutOutcome;
pub use proxy::{CallbackError, NoCallbacks, ProxyCallback};
pub use slo::{LogoutMessage, LogoutSender, NoLogoutSender, front_channel_url, logout_target};
pub use urls::append_ticket;
pub use validate::{
    Document, Endpoint, Format, StandardAttributes, ValidationCall, ValidationRequest,
    ValidationSuccess, format_date, render_cas1,
};

/// The error codes of §2.5.3 plus Apereo's `UNAUTHORIZED_SERVICE` (VAL-12, VAL-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidTicketSpec,
    UnauthorizedServiceProxy,
    InvalidProxyCallback,
    InvalidTicket,
    InvalidService,
    InternalError,
    UnauthorizedService,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidTicketSpec => "INVALID_TICKET_SPEC",
            Self::UnauthorizedServiceProxy => "UNAUTHORIZED_SERVICE_PROXY",
            Self::InvalidProxyCallback => "INVALID_PROXY_CALLBACK",
            Self::InvalidTicket => "INVALID_TICKET",
            Self::InvalidService => "INVALID_SERVICE",
            Self::InternalError => "INTERNAL_ERROR",
            Self::UnauthorizedService => "UNAUTHORIZED_SERVICE",
        }
    }
}

/// A protocol failure document: a code and a human-readable description (VAL-14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub description: String,
}

impl Failure {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

/// A fault of the server, not of the request.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("authentication source unavailable")]
    AuthUnavailable(#[source] std::sync::Arc<crate::auth::SourceError>),
}

/// Ticket lifetimes (TKT-04, TKT-06, TKT-08).
#[derive(Debug, Clone, Copy)]
pub struct TicketPolicies {
    pub tgt: ExpirationPolicy,
    pub service_ticket: ExpirationPolicy,
    pub proxy_ticket: ExpirationPolicy,
}

/// Switches that change protocol behaviour.
#[derive(Debug, Clone)]
pub struct ProtocolOptions {
    /// LOGOUT-04: redirect to a registered `service` after logout.
    pub follow_service_redirects: bool,
    /// VAL-16: CAS 3 attributes on `/serviceValidate` and `/proxyValidate` too.
    pub attributes_on_v2: bool,
    /// Proxy authentication (`pgtUrl`, `/proxy`) as a whole.
    pub proxy_authn_enabled: bool,
    /// Single logout as a whole.
    pub slo_enabled: bool,
    /// TGC-09: a forced (renew) login also (re)creates the SSO session cookie.
    pub create_cookie_on_renew: bool,
    /// `/login` without a `service` may open a session.
    pub allow_missing_service: bool,
    /// Every `service` at `/login` must also match this (anchored).
    pub required_service_pattern: Option<regex::Regex>,
    /// Remember-me sessions (LOGINP-07) and their lifetime; `None` when off.
    pub remember_me: Option<Duration>,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        Self {
            follow_service_redirects: false,
            attributes_on_v2: false,
            proxy_authn_enabled: true,
            slo_enabled: true,
            create_cookie_on_renew: true,
            allow_missing_service: true,
            required_service_pattern: None,
            remember_me: None,
        }
    }
}

/// The CAS server's protocol core.
#[derive(Debug, Clone)]
pub struct Cas {
    pub tickets: Arc<dyn TicketRegistry>,
    pub services: Arc<dyn ServiceLookup>,
    pub authenticator: Arc<dyn Authenticator>,
    pub clock: Arc<dyn Clock>,
    /// How PGTs reach `pgtUrl`s.
    pub proxy_callback: Arc<dyn ProxyCallback>,
    /// Where back-channel logout messages go.
    pub logout_sender: Arc<dyn LogoutSender>,
    /// Failed-login throttling; `None` when turned off.
    pub throttle: Option<Arc<throttle::LoginThrottle>>,
    /// Login form tokens (LOGINP-06).
    pub flow: flow::LoginFlow,
    pub policies: TicketPolicies,
    pub options: ProtocolOptions,
}

/// A `service` URL as the request gave it, with the registry entry responsible for it:
/// looked up once per request and passed along, never searched for again.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedService<'a> {
    pub url: &'a str,
    pub entry: &'a RegisteredService,
}

impl Cas {
    /// The enabled registry entry for `service`. A URL carrying control characters is
    /// never a service: it could only be an attempt at header or log injection.
    pub fn resolve_service(&self, service: &str) -> Option<&RegisteredService> {
        if service.is_empty() || service.chars().any(char::is_control) {
            return None;
        }
        self.services.find(service)
    }

    /// [`Cas::resolve_service`], keeping the URL with its entry.
    pub fn resolve<'a>(&'a self, url: &'a str) -> Option<ResolvedService<'a>> {
        self.resolve_service(url)
            .map(|entry| ResolvedService { url, entry })
    }

    pub fn service_ticket_ttl(&self) -> Duration {
        self.policies.service_ticket.hard
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A `Cas` over in-memory parts and a manual clock, for the protocol's unit tests.
    use std::collections::BTreeMap;

    use super::*;
    use crate::auth::{StaticUsers, UserRecord, hash_password};
    use crate::clock::ManualClock;
    use crate::services::{RegisteredService, ServicePattern, ServiceRegistry};
    use crate::tickets::MemoryRegistry;

    pub const SERVICE: &str = "https://app.example.org/cas?x=1";
    pub const IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A browser's form-binding value, as its `CASFLOW` cookie carries it.
    pub const BINDING: &str = "TestBindingTestBinding";

    /// A browser at [`IP`] with the [`BINDING`] cookie and, if given, a session.
    pub fn browser(session: Option<&str>) -> Browser<'_> {
        Browser {
            ip: IP,
            session,
            bindings: &[BINDING],
            warn: false,
        }
    }

    /// A fresh form token for `service`, as the form this browser loaded carries it.
    pub async fn form_token(cas: &Cas, service: Option<&str>) -> String {
        let request = LoginRequest {
            service,
            renew: true,
            ..LoginRequest::default()
        };
        let outcome = cas.login_get(request, browser(None)).await.unwrap();
        let LoginView::Form(form) = outcome.view else {
            panic!("no form: {outcome:?}");
        };
        form.lt
    }

    /// Alice signs in with her password (for `service`, if any): her session's TGT id and,
    /// with a service, the redirect URL and its service ticket.
    pub async fn sign_in(cas: &Cas, service: Option<&str>) -> (String, Option<(String, String)>) {
        let lt = form_token(cas, service).await;
        let form = LoginForm {
            service,
            username: "alice",
            password: "pw",
            lt: &lt,
            ..LoginForm::default()
        };
        let outcome = cas.login_post(form, browser(None)).await.unwrap();
        let tgt_id = outcome
            .session
            .as_ref()
            .map(|s| s.tgt_id.clone())
            .unwrap_or_else(|| panic!("login failed: {outcome:?}"));
        let redirect = match outcome.view {
            LoginView::Deliver(d) => Some((d.location, d.ticket)),
            _ => None,
        };
        (tgt_id, redirect)
    }

    /// An SSO ticket for `service` from the session `tgt_id`, if SSO answers with one.
    pub async fn sso_ticket(cas: &Cas, tgt_id: &str, service: &str) -> Option<String> {
        let request = LoginRequest {
            service: Some(service),
            ..LoginRequest::default()
        };
        match cas
            .login_get(request, browser(Some(tgt_id)))
            .await
            .unwrap()
            .view
        {
            LoginView::Deliver(d) => Some(d.ticket),
            _ => None,
        }
    }

    /// `sign_in` for [`SERVICE`]: the TGT id and the service ticket.
    pub async fn sign_in_for_ticket(cas: &Cas) -> (String, String) {
        let (tgt_id, redirect) = sign_in(cas, Some(SERVICE)).await;
        (tgt_id, redirect.expect("a service ticket").1)
    }

    /// A proxy callback that records URLs and fails when `fail` is set.
    #[derive(Debug, Default)]
    pub struct Recorder {
        pub urls: std::sync::Mutex<Vec<String>>,
        pub fail: bool,
    }

    #[async_trait::async_trait]
    impl ProxyCallback for Recorder {
        async fn deliver(&self, url: &str) -> Result<(), CallbackError> {
            self.urls.lock().unwrap().push(url.to_owned());
            if self.fail {
                Err(CallbackError(Box::new(std::io::Error::other("HTTP 500"))))
            } else {
                Ok(())
            }
        }
    }

    /// A logout sender that keeps every message.
    #[derive(Debug, Default)]
    pub struct Collect(pub std::sync::Mutex<Vec<LogoutMessage>>);

    impl LogoutSender for Collect {
        fn send(&self, message: LogoutMessage) {
            self.0.lock().unwrap().push(message);
        }
    }

    /// A `prefix:` service that releases `attributes` and takes PGT callbacks under its
    /// own `cb/`.
    fn service(
        id: u32,
        name: &str,
        prefix: &str,
        attributes: &[&str],
        accept_proxy_tickets: bool,
    ) -> RegisteredService {
        RegisteredService {
            id,
            name: name.into(),
            description: String::new(),
            pattern: ServicePattern::parse(&format!("prefix:{prefix}")).unwrap(),
            evaluation_order: 0,
            enabled: true,
            attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
            proxy_callback: Some(ServicePattern::parse(&format!("prefix:{prefix}cb/")).unwrap()),
            accept_proxy_tickets,
            logout: crate::services::LogoutPolicy::default(),
            response_type: crate::services::ResponseType::Redirect,
            sso_enabled: true,
            max_auth_age: None,
            create_cookie_on_renew: None,
            theme: None,
        }
    }

    pub fn cas(clock: ManualClock) -> Cas {
        let mut attributes = BTreeMap::new();
        attributes.insert("mail".to_owned(), vec!["alice@example.org".to_owned()]);
        attributes.insert("secret".to_owned(), vec!["not released".to_owned()]);
        let tickets: Arc<dyn crate::tickets::TicketRegistry> = Arc::new(MemoryRegistry::new());
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(clock);
        Cas {
            tickets: tickets.clone(),
            services: Arc::new(ServiceRegistry::new(vec![
                service(1, "App", "https://app.example.org/", &["mail"], false),
                service(2, "Backend", "https://backend.example.org/", &[], true),
            ])),
            authenticator: Arc::new(StaticUsers::new(
                vec![UserRecord {
                    username: "alice".into(),
                    password_hash: hash_password("pw").unwrap(),
                    attributes,
                }],
                crate::auth::VerifierPool::new(2, 0).unwrap(),
            )),
            clock: clock.clone(),
            proxy_callback: Arc::new(NoCallbacks),
            logout_sender: Arc::new(NoLogoutSender),
            throttle: None,
            flow: flow::LoginFlow::new(
                &[crate::crypto::random_bytes()],
                Duration::from_secs(900),
                tickets.clone(),
                clock.clone(),
            ),
            policies: TicketPolicies {
                tgt: ExpirationPolicy::sliding(
                    Duration::from_secs(7200),
                    Duration::from_secs(28800),
                ),
                service_ticket: ExpirationPolicy::fixed(Duration::from_secs(10)),
                proxy_ticket: ExpirationPolicy::fixed(Duration::from_secs(10)),
            },
            options: ProtocolOptions::default(),
        }
    }
}
