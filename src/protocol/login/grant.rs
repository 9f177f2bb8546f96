//! The grant, last step of every login: a new SSO session for fresh credentials, and a
//! service ticket delivered to the service the way it asked for.

use std::net::IpAddr;

use super::{Browser, LoginForm, LoginOutcome, LoginView, NewSession};
use crate::protocol::slo::logout_target;
use crate::protocol::urls::append_ticket;
use crate::protocol::{Cas, ProtocolError, ResolvedService};
use crate::services::ResponseType;
use crate::telemetry::audit;
use crate::tickets::{ExpirationPolicy, Principal, ServiceTicket, TicketGrantingTicket};

/// A service ticket on its way to the service (LOGIN-11..14, SVC-09).
#[derive(Debug)]
pub struct Delivery<'a> {
    pub service: ResolvedService<'a>,
    pub ticket: String,
    /// The service URL with the ticket added (LOGIN-16).
    pub location: String,
    /// `method`, or else the service's `response_type`; an unknown method redirects.
    pub how: ResponseType,
}

/// The delivery of ticket `id` to `service`: `method`, or else the service's own way.
fn delivery<'a>(id: String, service: ResolvedService<'a>, method: Option<&str>) -> Delivery<'a> {
    Delivery {
        location: append_ticket(service.url, &id),
        ticket: id,
        how: method
            .and_then(ResponseType::from_method)
            .unwrap_or(service.entry.response_type),
        service,
    }
}

/// SVC-05: whether the session's login is recent enough for `service`, which may ask
/// for one no older than its `max_auth_age`.
pub(super) fn fresh_enough(
    service: ResolvedService<'_>,
    tgt: &TicketGrantingTicket,
    now: time::OffsetDateTime,
) -> bool {
    service
        .entry
        .max_auth_age
        .is_none_or(|age| now < tgt.authenticated_at + age)
}

impl Cas {
    /// A new service ticket for `service` under the session `tgt_id`, and its time.
    fn service_ticket(
        &self,
        tgt_id: &str,
        service: ResolvedService<'_>,
        from_new_login: bool,
    ) -> (ServiceTicket, time::OffsetDateTime) {
        let now = self.clock.now();
        let ticket = ServiceTicket::new(
            tgt_id,
            service.url,
            now,
            self.policies.service_ticket,
            from_new_login,
        );
        (ticket, now)
    }

    /// Single sign-on: a service ticket for `service` under the session `tgt_id`, if that
    /// is live and fresh enough for the service, looked up and issued in one step.
    pub(super) async fn deliver_sso<'a>(
        &self,
        tgt_id: &str,
        service: ResolvedService<'a>,
        method: Option<&str>,
        ip: IpAddr,
    ) -> Result<Option<Delivery<'a>>, ProtocolError> {
        let (ticket, now) = self.service_ticket(tgt_id, service, false);
        let id = ticket.id.clone();
        let logout = logout_target(service.entry, service.url);
        let accept = |tgt: &TicketGrantingTicket| fresh_enough(service, tgt, now);
        let Some((tgt, added)) = self
            .tickets
            .issue_under_session(ticket, logout, now, &accept)
            .await?
        else {
            return Ok(None);
        };
        if !self.stored_for_logout(added) {
            return Ok(None);
        }
        audit::ticket_issued(&id, &tgt.principal.id, service.url, ip);
        Ok(Some(delivery(id, service, method)))
    }

    /// LOGINP-01..03: a new SSO session for `principal`, who has just passed every step,
    /// and with a service, its ticket.
    pub(super) async fn open_session<'a>(
        &'a self,
        principal: Principal,
        service: Option<ResolvedService<'a>>,
        form: LoginForm<'a>,
        browser: Browser<'a>,
    ) -> Result<LoginOutcome<'a>, ProtocolError> {
        // TGC-09: a forced login may be kept out of the SSO session.
        let forced = form.renew || service.is_some_and(|s| !s.entry.sso_enabled);
        let set_cookie = !forced
            || service
                .and_then(|s| s.entry.create_cookie_on_renew)
                .unwrap_or(self.options.create_cookie_on_renew);
        // The replaced session ends here: its services are told over the back channel
        // (there is no logout page to drive the front channel).
        if set_cookie
            && let Some(old) = browser.session
            && let Some(old) = self.tickets.remove_tgt(old).await?
        {
            self.single_logout(&old);
        }
        // LOGINP-07: a remembered session uses the long-term policy.
        let remember_me = self
            .options
            .remember_me
            .filter(|_| form.remember_me && set_cookie);
        let policy = match remember_me {
            Some(duration) => ExpirationPolicy::fixed(duration),
            None => self.policies.tgt,
        };
        let user = principal.id.clone();
        let tgt =
            TicketGrantingTicket::new(principal, self.clock.now(), policy, remember_me.is_some());
        let tgt_id = tgt.id.clone();
        let first = service.map(|service| {
            let (ticket, _) = self.service_ticket(&tgt_id, service, true);
            (ticket, logout_target(service.entry, service.url))
        });
        let ticket_id = first.as_ref().map(|(ticket, _)| ticket.id.clone());
        self.tickets.add_tgt_with_ticket(tgt, first).await?;
        let delivery = service.zip(ticket_id).map(|(service, id)| {
            audit::ticket_issued(&id, &user, service.url, browser.ip);
            delivery(id, service, form.method)
        });
        let view = match delivery {
            Some(delivery) => LoginView::Deliver(delivery),
            None => LoginView::SignedIn { user },
        };
        Ok(LoginOutcome {
            view,
            session: set_cookie.then_some(NewSession {
                tgt_id,
                remember_me,
            }),
            // LOGINP-05: the warn choice is remembered for the browser session.
            warn_cookie: Some(form.warn),
            binding: None,
        })
    }
}
