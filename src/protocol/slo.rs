//! Single logout (§2.3.3, SLO-01..12): when an SSO session ends, every service that got a
//! ticket under it is told, by a back-channel POST from the server or a front-channel
//! request from the user's browser, as each service's policy says.
//!
//! Back-channel messages are handed to a [`LogoutSender`], which must never block: the
//! logout response does not wait for services (SLO-04).

use base64::Engine as _;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use std::io::Write as _;

use super::urls::append_query;
use super::{Cas, format_date, xml};
use crate::crypto::random_base62;
use crate::services::{LogoutType, RegisteredService};
use crate::tickets::{Added, LogoutTarget, TicketGrantingTicket};

/// One back-channel notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutMessage {
    pub url: String,
    /// The LogoutRequest XML (SLO-03), sent as the `logoutRequest` form field.
    pub logout_request: String,
}

/// Takes back-channel messages for delivery. `send` returns at once: it queues, or
/// drops with a warning when the queue is full; it never waits on the network.
pub trait LogoutSender: Send + Sync + std::fmt::Debug {
    fn send(&self, message: LogoutMessage);

    /// A session's history was full of distinct applications and forgot `service`,
    /// which will not be told when the session ends: counted beside the messages.
    fn forgotten(&self, _service: &str) {}
}

/// Sends nothing (single logout off, or unit tests).
#[derive(Debug, Default)]
pub struct NoLogoutSender;

impl LogoutSender for NoLogoutSender {
    fn send(&self, _message: LogoutMessage) {}
}

/// Where a ticket issued for `service` under `registered` is to be logged out (SLO-07).
pub fn logout_target(registered: &RegisteredService, service: &str) -> LogoutTarget {
    let url = || {
        registered
            .logout
            .url
            .clone()
            .unwrap_or_else(|| service.to_owned())
    };
    match registered.logout.kind {
        LogoutType::BackChannel => LogoutTarget::BackChannel { url: url() },
        LogoutType::FrontChannel => LogoutTarget::FrontChannel { url: url() },
        LogoutType::None => LogoutTarget::None,
    }
}

/// SLO-09, SLO-11: `url?SAMLRequest=<base64(zlib(xml))>&RelayState=<relay>`; zlib-wrapped
/// deflate and standard base64, as Java's `Deflater` and the Java client expect.
pub fn front_channel_url(url: &str, logout_request: &str, relay_state: &str) -> String {
    let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = zlib.write_all(logout_request.as_bytes());
    let deflated = zlib.finish().unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    let saml_request: String = form_urlencoded::byte_serialize(encoded.as_bytes()).collect();
    append_query(
        url,
        &[("SAMLRequest", &saml_request), ("RelayState", relay_state)],
    )
}

impl Cas {
    /// Whether a new ticket was stored; an application its session's history had to
    /// forget (single logout would skip it) is logged and counted.
    pub(super) fn stored_for_logout(&self, added: Added) -> bool {
        if let Added::Forgot(entry) = &added {
            tracing::warn!(
                service = %entry.service,
                "an SSO session holds tickets for more distinct applications than its single-logout history keeps; the oldest will not be told of the logout"
            );
            self.logout_sender.forgotten(&entry.service);
        }
        added.stored()
    }

    /// Notifies the services of an ended session: queues the back-channel messages and
    /// returns the front-channel URLs for the logout page to load.
    pub fn single_logout(&self, tgt: &TicketGrantingTicket) -> Vec<String> {
        if !self.options.slo_enabled {
            return Vec::new();
        }
        let instant = format_date(self.clock.now());
        let mut front_channel = Vec::new();
        for issued in &tgt.issued {
            let request = || {
                xml::logout_request(
                    &format!("LR-{}", random_base62(29)),
                    &instant,
                    &tgt.principal.id,
                    &issued.ticket_id,
                )
            };
            match &issued.logout {
                LogoutTarget::BackChannel { url } => self.logout_sender.send(LogoutMessage {
                    url: url.clone(),
                    logout_request: request(),
                }),
                LogoutTarget::FrontChannel { url } => {
                    let relay = format!("LR-{}", random_base62(20));
                    front_channel.push(front_channel_url(url, &request(), &relay));
                }
                LogoutTarget::None => {}
            }
        }
        front_channel
    }

    /// Single logout for sessions a logout ended whose answer was lost on the way (a
    /// stalled store ran the removal after the request had given up): the back channel
    /// only, as the browser has gone.
    pub fn sessions_logged_out(&self, sessions: Vec<TicketGrantingTicket>) {
        for tgt in &sessions {
            tracing::warn!(user = %tgt.principal.id, "a logout's answer was lost in a store fault; sending its single logout now");
            self.single_logout(tgt);
        }
    }

    /// Single logout for sessions that ended by timeout: only the back channel can be
    /// used, as no browser is waiting.
    pub fn sessions_expired(&self, sessions: Vec<TicketGrantingTicket>) {
        for tgt in &sessions {
            tracing::debug!(user = %tgt.principal.id, "SSO session expired; notifying its services");
            self.single_logout(tgt);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::Arc;

    use super::super::testing::{Collect, Recorder, SERVICE, cas, sign_in_for_ticket};
    use super::super::{Endpoint, ValidationRequest};
    use super::*;
    use crate::clock::ManualClock;
    use crate::services::{LogoutPolicy, ServicePattern};

    /// Every ticket of the session, service and proxy tickets alike, is notified once;
    /// only the ended session's tickets are.
    #[tokio::test]
    async fn logout_notifies_every_ticket_of_the_session_including_proxy_tickets() {
        let collect = Arc::new(Collect::default());
        let recorder = Arc::new(Recorder::default());
        let mut cas = cas(ManualClock::new());
        cas.logout_sender = collect.clone();
        cas.proxy_callback = recorder.clone();
        let (tgt, st) = sign_in_for_ticket(&cas).await;
        let (_, other_users_st) = sign_in_for_ticket(&cas).await;
        cas.validate(
            Endpoint::ServiceValidate,
            ValidationRequest {
                service: Some(SERVICE),
                ticket: Some(&st),
                renew: false,
                pgt_url: Some("https://app.example.org/cb/"),
            },
        )
        .await
        .unwrap();
        let callback = recorder.urls.lock().unwrap()[0].clone();
        let pgt = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "pgtId")
            .unwrap()
            .1
            .into_owned();
        let pt = cas
            .proxy(Some(&pgt), Some("https://backend.example.org/api"))
            .await
            .unwrap();

        let out = cas.logout(Some(&tgt), None).await.unwrap();

        assert!(out.front_channel.is_empty());
        let messages = collect.0.lock().unwrap().clone();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0].url, SERVICE);
        assert!(
            messages[0]
                .logout_request
                .contains(&format!("<samlp:SessionIndex>{st}</samlp:SessionIndex>"))
        );
        assert_eq!(messages[1].url, "https://backend.example.org/api");
        assert!(
            messages[1]
                .logout_request
                .contains(&format!("<samlp:SessionIndex>{pt}</samlp:SessionIndex>"))
        );
        assert!(
            messages
                .iter()
                .all(|m| !m.logout_request.contains(&other_users_st))
        );
    }

    fn service(kind: LogoutType, url: Option<&str>) -> RegisteredService {
        RegisteredService {
            id: 1,
            name: "A".into(),
            description: String::new(),
            pattern: ServicePattern::parse("prefix:https://a.example.org/").unwrap(),
            evaluation_order: 0,
            enabled: true,
            attributes: vec![],
            proxy_callback: None,
            accept_proxy_tickets: false,
            logout: LogoutPolicy {
                kind,
                url: url.map(str::to_owned),
            },
            response_type: crate::services::ResponseType::Redirect,
            sso_enabled: true,
            max_auth_age: None,
            create_cookie_on_renew: None,
            theme: None,
        }
    }

    #[test]
    fn the_target_follows_the_policy_and_defaults_to_the_service_url() {
        let s = "https://a.example.org/app?x=1";
        assert_eq!(
            logout_target(&service(LogoutType::BackChannel, None), s),
            LogoutTarget::BackChannel { url: s.into() }
        );
        assert_eq!(
            logout_target(
                &service(LogoutType::FrontChannel, Some("https://a.example.org/slo")),
                s
            ),
            LogoutTarget::FrontChannel {
                url: "https://a.example.org/slo".into()
            }
        );
        assert_eq!(
            logout_target(&service(LogoutType::None, None), s),
            LogoutTarget::None
        );
    }

    #[test]
    fn front_channel_requests_are_zlib_deflated_and_base64_encoded() {
        let url = front_channel_url(
            "https://a.example.org/slo?x=1",
            "<samlp:LogoutRequest/>",
            "LR-1",
        );
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(pairs[0], ("x".into(), "1".into()));
        assert_eq!(pairs[2], ("RelayState".into(), "LR-1".into()));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&pairs[1].1)
            .unwrap();
        let mut xml = String::new();
        flate2::read::ZlibDecoder::new(&raw[..])
            .read_to_string(&mut xml)
            .unwrap();
        assert_eq!(xml, "<samlp:LogoutRequest/>");
    }
}
