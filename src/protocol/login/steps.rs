//! Steps that stand between authentication and the grant and need the browser: today the
//! warn page (LOGIN-18: the user asked to be warned before being signed in to another
//! application by SSO).
//!
//! A step's state is kept server-side, in the ticket registry (so any node can take the
//! answer), as a [`Pending`] login under an id the page carries in its `lt` field. It is
//! bound to the browser that began it (a hash of its form-binding cookie), to the SSO
//! session and the service it is for, expires with the login form (`login.form_ttl`),
//! and is taken back exactly once: an answer from another browser, a replay or a late
//! one starts the login over.
//!
//! The id of a warn step is derived from the session, the service and the browser, so a
//! page reloaded many times keeps one pending entry rather than one per load. A step
//! after a fresh password (a second factor) would use a random id: there is no session
//! yet, and each one costs a password check.

use serde::{Deserialize, Serialize};

use super::{Browser, FormFields, LoginForm, LoginOutcome, LoginRequest, LoginView, Notice};
use crate::crypto::{b64url_encode, ct_eq, sha256};
use crate::protocol::{Cas, ProtocolError, ResolvedService};

/// A step the browser is asked to take.
#[derive(Debug)]
pub enum Step<'a> {
    /// LOGIN-18: SSO is ready, but the user asked to be warned first: Continue or Cancel.
    Warn {
        service: ResolvedService<'a>,
        /// The pending login's id, for the page's `lt` field.
        token: String,
        method: Option<&'a str>,
    },
}

/// What a step keeps while the browser answers.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    step: PendingStep,
    /// The SSO session the step continues.
    session: String,
    service: String,
    /// base64url(sha256(the browser's binding value)).
    binding: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
enum PendingStep {
    Warn,
}

fn binding_hash(binding: &str) -> String {
    b64url_encode(&sha256(binding.as_bytes()))
}

impl Cas {
    /// LOGIN-18: asks the browser whether to continue to `service`, keeping what the
    /// answer needs server-side.
    pub(super) async fn warn_step<'a>(
        &'a self,
        tgt_id: &str,
        service: ResolvedService<'a>,
        browser: Browser<'a>,
        method: Option<&'a str>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        let (binding, new) = super::binding_of(browser);
        let id = format!(
            "PL-{}",
            &hex(&sha256(
                format!("{tgt_id}\0{}\0{binding}", service.url).as_bytes()
            ))[..32]
        );
        let pending = Pending {
            step: PendingStep::Warn,
            session: tgt_id.to_owned(),
            service: service.url.to_owned(),
            binding: binding_hash(&binding),
        };
        #[allow(clippy::expect_used)] // plain strings
        let value = serde_json::to_string(&pending).expect("a pending login serializes");
        let until = self.clock.now() + self.flow.ttl();
        self.tickets.put_pending(&id, value, until).await?;
        Ok(LoginOutcome {
            binding: new.then_some(binding),
            ..LoginOutcome::view(LoginView::Step(Step::Warn {
                service,
                token: id,
                method,
            }))
        })
    }

    /// The browser answered a step (LOGIN-18's Continue): the pending login is taken back
    /// once and checked against this browser, session and service, then SSO proceeds as
    /// a GET would, without the warning. Anything amiss starts the login over.
    pub(super) async fn proceed<'a>(
        &'a self,
        form: LoginForm<'a>,
        browser: Browser<'a>,
        service: Option<ResolvedService<'a>>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        let start_over = || {
            self.form(
                service,
                browser,
                FormFields {
                    notice: Some(Notice::StartOver),
                    method: form.method,
                    ..FormFields::default()
                },
            )
        };
        let now = self.clock.now();
        let Some(pending) = self
            .tickets
            .take_pending(form.lt, now)
            .await?
            .and_then(|value| serde_json::from_str::<Pending>(&value).ok())
        else {
            return Ok(start_over());
        };
        let same_browser = browser
            .bindings
            .iter()
            .any(|b| ct_eq(binding_hash(b).as_bytes(), pending.binding.as_bytes()));
        let same_session = browser
            .session
            .is_some_and(|s| ct_eq(s.as_bytes(), pending.session.as_bytes()));
        if !same_browser || !same_session || form.service != Some(pending.service.as_str()) {
            tracing::debug!(
                "a pending login was answered by another browser or for another service"
            );
            return Ok(start_over());
        }
        match pending.step {
            PendingStep::Warn => {
                let request = LoginRequest {
                    service: form.service,
                    method: form.method,
                    ..LoginRequest::default()
                };
                let browser = Browser {
                    warn: false,
                    ..browser
                };
                self.single_sign_on(service, request, browser).await
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
