//! `/login` as credential requestor (GET, §2.1) and acceptor (POST, §2.2).

use super::slo::logout_target;
use std::net::IpAddr;

use super::throttle::Wait;
use super::{Cas, ProtocolError};
use crate::auth::AuthError;
use crate::services::RegisteredService;
use crate::tickets::{ExpirationPolicy, Principal, ServiceTicket, TicketGrantingTicket};

/// The protocol parameters of a GET `/login`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginRequest<'a> {
    pub service: Option<&'a str>,
    /// Set whenever the parameter is present, whatever its value (§2.1.1).
    pub renew: bool,
    pub gateway: bool,
    /// LOGIN-18: the user asked to be warned before SSO (the `CASPRIVACY` cookie).
    pub warn: bool,
}

/// A POST `/login` with credentials.
#[derive(Clone, Copy, Default)]
pub struct LoginSubmission<'a> {
    pub service: Option<&'a str>,
    pub username: &'a str,
    pub password: &'a str,
    /// LOGINP-07: the remember-me box was ticked.
    pub remember_me: bool,
    /// The form was shown because of `renew` (a forced login, TGC-09).
    pub renewed: bool,
}

/// Never prints the password.
impl std::fmt::Debug for LoginSubmission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSubmission")
            .field("service", &self.service)
            .field("username", &self.username)
            .field("password", &"***")
            .field("remember_me", &self.remember_me)
            .field("renewed", &self.renewed)
            .finish()
    }
}

#[derive(Debug)]
pub enum LoginDecision {
    /// LOGIN-03: not a registered, enabled service. No ticket, no redirect.
    UnknownService,
    /// `sso.allow_missing_service = false` and no service was given.
    ServiceRequired,
    /// LOGIN-18: SSO is possible but the user asked to be warned first.
    Warn { service: String },
    /// LOGIN-01, LOGIN-06, LOGIN-09, LOGIN-10: ask for credentials.
    ShowForm,
    /// LOGIN-04, LOGIN-08: SSO; `location` carries the new service ticket.
    Redirect {
        service: String,
        location: String,
        ticket: String,
        user: String,
    },
    /// LOGIN-07: gateway without a session: back to the service with no ticket.
    GatewayRedirect { location: String },
    /// LOGIN-05: a session but no service.
    LoggedIn { principal: Principal },
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

#[derive(Debug)]
pub enum CredentialOutcome {
    /// LOGINP-08.
    UnknownService,
    ServiceRequired,
    /// LOGINP-04: the credentials were refused, for this reason.
    Rejected(Refusal),
    /// THR-03: too many recent failures; the password was not checked.
    Throttled(Wait),
    /// LOGINP-01..03: the new SSO session and, with a service, where to send the browser.
    Success {
        tgt_id: String,
        principal: Principal,
        redirect: Option<(String, String)>,
        /// TGC-09: whether this login sets the SSO cookie.
        set_cookie: bool,
        /// TGC-05: a remember-me session's lifetime, for a persistent cookie.
        remember_me: Option<std::time::Duration>,
    },
}

impl Cas {
    /// GET `/login`. `session` is the TGT id from a valid TGC, if any.
    #[tracing::instrument(level = "debug", skip_all, fields(renew = req.renew, gateway = req.gateway))]
    pub async fn request_login(
        &self,
        req: LoginRequest<'_>,
        session: Option<&str>,
    ) -> Result<LoginDecision, ProtocolError> {
        let registered = match req.service {
            Some(service) => match self.login_service(service) {
                Some(registered) => Some(registered),
                None => return Ok(LoginDecision::UnknownService),
            },
            None if !self.options.allow_missing_service => {
                return Ok(LoginDecision::ServiceRequired);
            }
            None => None,
        };
        // LOGIN-07: a gateway request never gets the form; it goes back without a ticket
        // whenever single sign-on cannot answer it.
        let no_sso = || match (req.gateway, req.service) {
            (true, Some(service)) => LoginDecision::GatewayRedirect {
                location: service.to_owned(),
            },
            _ => LoginDecision::ShowForm,
        };
        // LOGIN-10: renew wins over gateway.
        if req.renew {
            return Ok(LoginDecision::ShowForm);
        }
        // LOGIN-17: a service may opt out of SSO.
        if registered.is_some_and(|r| !r.sso_enabled) {
            return Ok(no_sso());
        }
        let now = self.clock.now();
        let tgt = match session {
            Some(id) => self.tickets.get_tgt(id, now).await?,
            None => None,
        };
        match (tgt, req.service, registered) {
            (Some(tgt), Some(service), Some(registered)) => {
                // SVC-05: a session authenticated too long ago must log in again.
                if registered
                    .max_auth_age
                    .is_some_and(|age| now >= tgt.authenticated_at + age)
                {
                    return Ok(no_sso());
                }
                if req.warn {
                    return Ok(LoginDecision::Warn {
                        service: service.to_owned(),
                    });
                }
                // Only the ids are needed from here: holding the shared session while the
                // grant updates it would make the registry copy the whole session.
                let (tgt_id, user) = (tgt.id.clone(), tgt.principal.id.clone());
                drop(tgt);
                match self
                    .grant_service_ticket(&tgt_id, service, registered, false)
                    .await?
                {
                    Some((location, ticket)) => Ok(LoginDecision::Redirect {
                        service: service.to_owned(),
                        location,
                        ticket,
                        user,
                    }),
                    // The session ended between the lookup and the grant.
                    None => Ok(no_sso()),
                }
            }
            (Some(tgt), None, _) => Ok(LoginDecision::LoggedIn {
                principal: tgt.principal.clone(),
            }),
            _ => Ok(no_sso()),
        }
    }

    /// The registered service for `/login`, also checked against
    /// `sso.required_service_pattern`.
    pub fn login_service(&self, service: &str) -> Option<&RegisteredService> {
        let registered = self.resolve_service(service)?;
        match &self.options.required_service_pattern {
            Some(pattern) if !pattern.is_match(service) => None,
            _ => Some(registered),
        }
    }

    /// THR-01..03: whether `username` from `ip` must wait before trying again, and why.
    pub async fn login_blocked(
        &self,
        ip: IpAddr,
        username: &str,
    ) -> Result<Option<Wait>, ProtocolError> {
        match &self.throttle {
            Some(t) => Ok(t.blocked(ip, username, self.clock.now()).await?),
            None => Ok(None),
        }
    }

    /// Counts a failed attempt that never reached the password check (a bad form token,
    /// THR-04), against the name only: such failures cost the server nothing, so they
    /// must not slow the whole address.
    pub async fn login_failed(&self, ip: IpAddr, username: &str) {
        if let Some(t) = &self.throttle {
            t.record_failure(ip, username, self.clock.now()).await;
        }
    }

    /// POST `/login` with credentials from `ip`. `previous` is the TGT of an existing
    /// session, which a fresh login replaces.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn submit_credentials(
        &self,
        sub: LoginSubmission<'_>,
        previous: Option<&str>,
        ip: IpAddr,
    ) -> Result<CredentialOutcome, ProtocolError> {
        let registered = match sub.service {
            Some(service) => match self.login_service(service) {
                Some(registered) => Some(registered),
                None => return Ok(CredentialOutcome::UnknownService),
            },
            None if !self.options.allow_missing_service => {
                return Ok(CredentialOutcome::ServiceRequired);
            }
            None => None,
        };
        // THR-03: checked and counted as a failure in one step, before the password check,
        // so that parallel guesses cannot all pass before the first failure is recorded.
        if let Some(t) = &self.throttle
            && let Err(wait) = t.begin(ip, sub.username, self.clock.now()).await?
        {
            return Ok(CredentialOutcome::Throttled(wait));
        }
        let principal = match self
            .authenticator
            .authenticate(sub.username, sub.password)
            .await
        {
            Ok(p) => p,
            Err(AuthError::Unavailable(e)) => {
                // Not the user's failure: the reserved attempt is given back.
                if let Some(t) = &self.throttle {
                    t.release(ip, sub.username, self.clock.now()).await;
                }
                return Err(ProtocolError::AuthUnavailable(e));
            }
            Err(refused) => {
                // Already counted by `begin`.
                return Ok(CredentialOutcome::Rejected(match refused {
                    AuthError::AccountLocked => Refusal::AccountLocked,
                    AuthError::AccountDisabled => Refusal::AccountDisabled,
                    AuthError::PasswordExpired => Refusal::PasswordExpired,
                    AuthError::AccountExpired => Refusal::AccountExpired,
                    _ => Refusal::InvalidCredentials,
                }));
            }
        };
        if let Some(t) = &self.throttle {
            t.succeeded(ip, sub.username, self.clock.now()).await;
        }
        // TGC-09: a forced login may be kept out of the SSO session.
        let forced = sub.renewed || registered.is_some_and(|r| !r.sso_enabled);
        let set_cookie = !forced
            || registered
                .and_then(|r| r.create_cookie_on_renew)
                .unwrap_or(self.options.create_cookie_on_renew);
        // The replaced session ends here: its services are told over the back channel
        // (there is no logout page to drive the front channel).
        if set_cookie
            && let Some(old) = previous
            && let Some(old) = self.tickets.remove_tgt(old).await?
        {
            self.single_logout(&old);
        }
        // LOGINP-07: a remembered session uses the long-term policy.
        let remember_me = self
            .options
            .remember_me
            .filter(|_| sub.remember_me && set_cookie);
        let policy = match remember_me {
            Some(duration) => ExpirationPolicy::fixed(duration),
            None => self.policies.tgt,
        };
        let tgt = TicketGrantingTicket::new(
            principal.clone(),
            self.clock.now(),
            policy,
            remember_me.is_some(),
        );
        let tgt_id = tgt.id.clone();
        self.tickets.add_tgt(tgt).await?;
        let redirect = match sub.service {
            Some(service) => match registered {
                Some(registered) => {
                    self.grant_service_ticket(&tgt_id, service, registered, true)
                        .await?
                }
                None => None,
            },
            None => None,
        };
        Ok(CredentialOutcome::Success {
            tgt_id,
            principal,
            redirect,
            set_cookie,
            remember_me,
        })
    }

    /// Issues an ST for `service` under a live TGT; `(location, ticket id)` or `None` if
    /// the session is gone.
    async fn grant_service_ticket(
        &self,
        tgt_id: &str,
        service: &str,
        registered: &RegisteredService,
        from_new_login: bool,
    ) -> Result<Option<(String, String)>, ProtocolError> {
        let now = self.clock.now();
        let ticket = ServiceTicket::new(
            tgt_id,
            service,
            now,
            self.policies.service_ticket,
            from_new_login,
        );
        let id = ticket.id.clone();
        let logout = logout_target(registered, service);
        let added = self.tickets.add_service_ticket(ticket, logout, now).await?;
        if !self.stored_for_logout(added) {
            return Ok(None);
        }
        Ok(Some((append_ticket(service, &id), id)))
    }
}

/// LOGIN-16: `ticket` goes before any `#fragment`, after the service's own query, which
/// is kept byte for byte and in order.
pub fn append_ticket(service: &str, ticket: &str) -> String {
    append_query(service, &[("ticket", ticket)])
}

/// Appends `name=value` pairs to `url`'s query, before any fragment, keeping what is
/// there (LOGIN-16, PCB-04). Values are ticket ids, which never need encoding (TKT-01).
pub fn append_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len() + 80);
    out.push_str(base);
    for (name, value) in pairs {
        if !out.contains('?') {
            out.push('?');
        } else if !out.ends_with('?') && !out.ends_with('&') {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{SERVICE, cas};
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn ticket_goes_before_the_fragment_and_after_the_query() {
        assert_eq!(
            append_ticket("https://a/x", "ST-1"),
            "https://a/x?ticket=ST-1"
        );
        assert_eq!(
            append_ticket("https://a/x?b=2&a=1", "ST-1"),
            "https://a/x?b=2&a=1&ticket=ST-1"
        );
        assert_eq!(
            append_ticket("https://a/x?b=2#frag?x", "ST-1"),
            "https://a/x?b=2&ticket=ST-1#frag?x"
        );
        assert_eq!(
            append_ticket("https://a/x?", "ST-1"),
            "https://a/x?ticket=ST-1"
        );
    }

    #[tokio::test]
    async fn login_matrix_follows_the_checklist() {
        let cas = cas(ManualClock::new());
        let form = |r| matches!(r, LoginDecision::ShowForm);
        let req = |service, renew, gateway| LoginRequest {
            service,
            renew,
            gateway,
            warn: false,
        };
        // No session.
        assert!(form(
            cas.request_login(req(None, false, false), None)
                .await
                .unwrap()
        ));
        assert!(form(
            cas.request_login(req(Some(SERVICE), false, false), None)
                .await
                .unwrap()
        ));
        assert!(matches!(
            cas.request_login(req(Some(SERVICE), false, true), None).await.unwrap(),
            LoginDecision::GatewayRedirect { location } if location == SERVICE
        ));
        assert!(form(
            cas.request_login(req(None, false, true), None)
                .await
                .unwrap()
        ));
        assert!(form(
            cas.request_login(req(Some(SERVICE), true, true), None)
                .await
                .unwrap()
        ));
        assert!(matches!(
            cas.request_login(req(Some("https://evil.example/"), false, true), None)
                .await
                .unwrap(),
            LoginDecision::UnknownService
        ));
        // With a session.
        let (tgt_id, redirect) = super::super::testing::sign_in(&cas, Some(SERVICE)).await;
        assert!(
            redirect
                .unwrap()
                .0
                .starts_with("https://app.example.org/cas?x=1&ticket=ST-")
        );
        let s = Some(tgt_id.as_str());
        assert!(matches!(
            cas.request_login(req(Some(SERVICE), false, false), s)
                .await
                .unwrap(),
            LoginDecision::Redirect { .. }
        ));
        assert!(matches!(
            cas.request_login(req(Some(SERVICE), false, true), s)
                .await
                .unwrap(),
            LoginDecision::Redirect { .. }
        ));
        assert!(form(
            cas.request_login(req(Some(SERVICE), true, false), s)
                .await
                .unwrap()
        ));
        assert!(form(
            cas.request_login(req(Some(SERVICE), true, true), s)
                .await
                .unwrap()
        ));
        assert!(matches!(
            cas.request_login(req(None, false, false), s).await.unwrap(),
            LoginDecision::LoggedIn { principal } if principal.id == "alice"
        ));
    }

    #[tokio::test]
    async fn bad_credentials_and_control_characters_are_refused() {
        let cas = cas(ManualClock::new());
        assert!(matches!(
            cas.submit_credentials(
                crate::protocol::LoginSubmission {
                    service: None,
                    username: "alice",
                    password: "nope",
                    ..Default::default()
                },
                None,
                super::super::testing::IP
            )
            .await
            .unwrap(),
            CredentialOutcome::Rejected(Refusal::InvalidCredentials)
        ));
        assert!(matches!(
            cas.submit_credentials(
                crate::protocol::LoginSubmission {
                    service: Some("https://app.example.org/\r\nSet-Cookie: x"),
                    username: "alice",
                    password: "pw",
                    ..Default::default()
                },
                None,
                super::super::testing::IP
            )
            .await
            .unwrap(),
            CredentialOutcome::UnknownService
        ));
    }
}
