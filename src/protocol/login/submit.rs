//! POST `/login` with credentials (§2.2): service, throttle, form, credentials, the steps
//! after a successful password, grant, in that order.

use super::{Browser, FormFields, LoginForm, LoginOutcome, LoginRefusal, Notice, Refusal};
use crate::auth::AuthError;
use crate::protocol::flow::FlowError;
use crate::protocol::{Cas, ProtocolError};
use crate::telemetry::audit;

impl Cas {
    /// POST `/login`: credentials, or the answer to a step (`proceed`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn login_post<'a>(
        &'a self,
        form: LoginForm<'a>,
        browser: Browser<'a>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        // LOGINP-08 before anything else: no form, no credentials check, for a foreign
        // service.
        let service = match self.login_target(form.service) {
            Ok(service) => service,
            Err(refusal) => return Ok(LoginOutcome::refused(refusal)),
        };
        if form.proceed {
            return self.proceed(form, browser, service).await;
        }
        let (ip, username) = (browser.ip, form.username);
        let now = self.clock.now();
        // THR-03: one reservation per attempt, checked and counted as a failure in one
        // step before anything is looked at, so that parallel guesses cannot all pass
        // before the first failure is recorded; the outcome settles it below.
        if let Some(t) = &self.throttle
            && let Err(wait) = t.begin(ip, username, now).await?
        {
            audit::login_throttled(username, ip);
            return Ok(LoginOutcome::refused(LoginRefusal::Throttled(wait)));
        }
        let again = |notice| FormFields {
            username,
            notice: Some(notice),
            renew: form.renew,
            method: form.method,
        };
        if username.is_empty() || form.password.is_empty() {
            // Not an attempt at all.
            if let Some(t) = &self.throttle {
                t.release(ip, username, now).await;
            }
            return Ok(self.form(service, browser, again(Notice::MissingCredentials)));
        }
        if let Err(e) = self
            .flow
            .redeem(form.lt, form.service, browser.bindings)
            .await?
        {
            // THR-04: a refused form is a failure of the name; it cost no password check,
            // so the address gets it back (issue 13: cheap failures lock no one out).
            if let Some(t) = &self.throttle {
                t.form_refused(ip, username, now).await;
            }
            audit::login_failed(username, form.service, ip, &e.to_string());
            let notice = match e {
                FlowError::Expired => Notice::FormExpired,
                FlowError::Invalid | FlowError::Replayed => Notice::FormInvalid,
            };
            return Ok(self.form(service, browser, again(notice)));
        }
        let principal = match self
            .authenticator
            .authenticate(username, form.password)
            .await
        {
            Ok(principal) => principal,
            Err(AuthError::Unavailable(cause)) => {
                // Not the user's failure: the reserved attempt is given back.
                if let Some(t) = &self.throttle {
                    t.release(ip, username, now).await;
                }
                return Err(ProtocolError::AuthUnavailable(cause));
            }
            Err(refused) => {
                // Already counted by the reservation.
                let refusal = match refused {
                    AuthError::AccountLocked => Refusal::AccountLocked,
                    AuthError::AccountDisabled => Refusal::AccountDisabled,
                    AuthError::PasswordExpired => Refusal::PasswordExpired,
                    AuthError::AccountExpired => Refusal::AccountExpired,
                    _ => Refusal::InvalidCredentials,
                };
                audit::login_failed(username, form.service, ip, refusal.as_str());
                return Ok(self.form(service, browser, again(Notice::Rejected(refusal))));
            }
        };
        if let Some(t) = &self.throttle {
            t.succeeded(ip, username, now).await;
        }
        audit::login_succeeded(&principal.id, form.service, ip);
        // The steps that may stand between a successful password and the grant (a second
        // factor, an access decision, a required password change) go here, each keeping
        // its state with `put_pending` as the warn step does. None applies today.
        self.open_session(principal, service, form, browser).await
    }
}
