//! `/login` as credential requestor (GET, §2.1) and acceptor (POST, §2.2).

use super::slo::logout_target;
use std::net::IpAddr;

use super::{Cas, ProtocolError};
use crate::auth::AuthError;
use crate::tickets::{LogoutTarget, Principal, ServiceTicket, TicketGrantingTicket};

/// The protocol parameters of a GET `/login`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginRequest<'a> {
    pub service: Option<&'a str>,
    /// Set whenever the parameter is present, whatever its value (§2.1.1).
    pub renew: bool,
    pub gateway: bool,
}

#[derive(Debug)]
pub enum LoginDecision {
    /// LOGIN-03: not a registered, enabled service. No ticket, no redirect.
    UnknownService,
    /// LOGIN-01, LOGIN-06, LOGIN-09, LOGIN-10: ask for credentials.
    ShowForm,
    /// LOGIN-04, LOGIN-08: SSO; `location` carries the new service ticket.
    Redirect {
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
    /// LOGINP-04: the credentials were refused, for this reason.
    Rejected(Refusal),
    /// THR-03: too many recent failures; the password was not checked.
    Throttled { retry_after: std::time::Duration },
    /// LOGINP-01..03: the new SSO session and, with a service, where to send the browser.
    Success {
        tgt_id: String,
        principal: Principal,
        redirect: Option<(String, String)>,
    },
}

impl Cas {
    /// GET `/login`. `session` is the TGT id from a valid TGC, if any.
    #[tracing::instrument(skip_all, fields(renew = req.renew, gateway = req.gateway))]
    pub async fn request_login(
        &self,
        req: LoginRequest<'_>,
        session: Option<&str>,
    ) -> Result<LoginDecision, ProtocolError> {
        if let Some(service) = req.service
            && self.resolve_service(service).is_none()
        {
            return Ok(LoginDecision::UnknownService);
        }
        // LOGIN-10: renew wins over gateway.
        if req.renew {
            return Ok(LoginDecision::ShowForm);
        }
        let now = self.clock.now();
        let tgt = match session {
            Some(id) => self.tickets.get_tgt(id, now).await?,
            None => None,
        };
        match (tgt, req.service) {
            (Some(tgt), Some(service)) => {
                match self.grant_service_ticket(&tgt.id, service, false).await? {
                    Some((location, ticket)) => Ok(LoginDecision::Redirect {
                        location,
                        ticket,
                        user: tgt.principal.id,
                    }),
                    // The session ended between the lookup and the grant.
                    None => Ok(LoginDecision::ShowForm),
                }
            }
            (Some(tgt), None) => Ok(LoginDecision::LoggedIn {
                principal: tgt.principal,
            }),
            (None, Some(service)) if req.gateway => Ok(LoginDecision::GatewayRedirect {
                location: service.to_owned(),
            }),
            (None, _) => Ok(LoginDecision::ShowForm),
        }
    }

    /// THR-01..03: how long `username` from `ip` must wait before trying again, if the
    /// recent failures went past the threshold.
    pub fn login_blocked(&self, ip: IpAddr, username: &str) -> Option<std::time::Duration> {
        self.throttle
            .as_ref()
            .and_then(|t| t.blocked(ip, username, self.clock.now()))
    }

    /// Counts a failed attempt that never reached the password check (a bad form token,
    /// THR-04).
    pub fn login_failed(&self, ip: IpAddr, username: &str) {
        if let Some(t) = &self.throttle {
            t.record_failure(ip, username, self.clock.now());
        }
    }

    /// POST `/login` with credentials from `ip`. `previous` is the TGT of an existing
    /// session, which a fresh login replaces.
    #[tracing::instrument(skip_all)]
    pub async fn submit_credentials(
        &self,
        service: Option<&str>,
        username: &str,
        password: &str,
        previous: Option<&str>,
        ip: IpAddr,
    ) -> Result<CredentialOutcome, ProtocolError> {
        if let Some(service) = service
            && self.resolve_service(service).is_none()
        {
            return Ok(CredentialOutcome::UnknownService);
        }
        if let Some(retry_after) = self.login_blocked(ip, username) {
            return Ok(CredentialOutcome::Throttled { retry_after });
        }
        let principal = match self.authenticator.authenticate(username, password).await {
            Ok(p) => p,
            Err(AuthError::Unavailable(e)) => return Err(ProtocolError::AuthUnavailable(e)),
            Err(refused) => {
                self.login_failed(ip, username);
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
            t.record_success(ip, username);
        }
        // The replaced session ends here: its services are told over the back channel
        // (there is no logout page to drive the front channel).
        if let Some(old) = previous
            && let Some(old) = self.tickets.remove_tgt(old).await?
        {
            self.single_logout(&old);
        }
        let tgt = TicketGrantingTicket::new(
            principal.clone(),
            self.clock.now(),
            self.policies.tgt,
            false,
        );
        let tgt_id = tgt.id.clone();
        self.tickets.add_tgt(tgt).await?;
        let redirect = match service {
            Some(service) => self.grant_service_ticket(&tgt_id, service, true).await?,
            None => None,
        };
        Ok(CredentialOutcome::Success {
            tgt_id,
            principal,
            redirect,
        })
    }

    /// Issues an ST for `service` under a live TGT; `(location, ticket id)` or `None` if
    /// the session is gone.
    async fn grant_service_ticket(
        &self,
        tgt_id: &str,
        service: &str,
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
        let logout = self
            .resolve_service(service)
            .map_or(LogoutTarget::None, |registered| {
                logout_target(registered, service)
            });
        if !self.tickets.add_service_ticket(ticket, logout, now).await? {
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
        let CredentialOutcome::Success {
            tgt_id, redirect, ..
        } = cas
            .submit_credentials(
                Some(SERVICE),
                "alice",
                "pw",
                None,
                super::super::testing::IP,
            )
            .await
            .unwrap()
        else {
            panic!("login failed");
        };
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
            cas.submit_credentials(None, "alice", "nope", None, super::super::testing::IP)
                .await
                .unwrap(),
            CredentialOutcome::Rejected(Refusal::InvalidCredentials)
        ));
        assert!(matches!(
            cas.submit_credentials(
                Some("https://app.example.org/\r\nSet-Cookie: x"),
                "alice",
                "pw",
                None,
                super::super::testing::IP
            )
            .await
            .unwrap(),
            CredentialOutcome::UnknownService
        ));
    }
}
