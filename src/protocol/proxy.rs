//! Proxy authentication (§2.5.4, §2.7): handing a PGT to a service's `pgtUrl`, and
//! trading a PGT for proxy tickets at `/proxy`.
//!
//! The protocol decides *whether* and *what* to send; how it travels (TLS, timeouts,
//! address checks) belongs to the [`ProxyCallback`] implementation in `outbound`.

use async_trait::async_trait;

use super::urls::append_query;
use super::{Cas, ErrorCode, Failure};
use crate::services::RegisteredService;
use crate::tickets::{ProxyGrantingTicket, ServiceTicket, new_pgt_iou};

/// Longest proxy chain a PGT may carry; real deployments use one or two levels.
pub const MAX_PROXY_CHAIN: usize = 8;

/// Delivers `pgtIou`/`pgtId` to a callback URL (PCB-04). `Ok` only for HTTP 200 (PCB-05).
#[async_trait]
pub trait ProxyCallback: Send + Sync + std::fmt::Debug {
    /// `url` already carries both parameters; the error is for logs and must not
    /// carry the URL (it holds the PGT).
    async fn deliver(&self, url: &str) -> Result<(), CallbackError>;
}

/// Why a callback was not delivered; the cause is the transport's own.
#[derive(Debug, thiserror::Error)]
#[error("the proxy callback was not delivered")]
pub struct CallbackError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// No transport: callbacks cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("outbound calls are not configured")]
pub struct NoTransport;

/// Refuses every callback: for deployments and tests without an outbound client.
#[derive(Debug, Default)]
pub struct NoCallbacks;

#[async_trait]
impl ProxyCallback for NoCallbacks {
    async fn deliver(&self, _url: &str) -> Result<(), CallbackError> {
        Err(CallbackError(Box::new(NoTransport)))
    }
}

impl Cas {
    /// Grants a PGT to `pgt_url` for a validated ticket (VAL-10, PCB-01..09) and returns
    /// the PGTIOU for the response. `chain` is the validated ticket's proxy chain.
    pub(super) async fn grant_proxy_granting_ticket(
        &self,
        registered: &RegisteredService,
        ticket: &ServiceTicket,
        pgt_url: &str,
    ) -> Result<String, Failure> {
        // PCB-02: the default policy refuses; a policy names the callbacks it allows.
        let allowed = self.options.proxy_authn_enabled
            && registered
                .proxy_callback
                .as_ref()
                .is_some_and(|pattern| pattern.matches(pgt_url));
        if !allowed {
            return Err(Failure::new(
                ErrorCode::UnauthorizedServiceProxy,
                format!(
                    "Service '{}' is not allowed to use proxy callback '{pgt_url}'",
                    ticket.service
                ),
            ));
        }
        // PCB-01.
        let is_https = url::Url::parse(pgt_url).is_ok_and(|u| u.scheme() == "https");
        if !is_https || pgt_url.chars().any(char::is_control) {
            return Err(Failure::new(
                ErrorCode::InvalidProxyCallback,
                format!("The proxy callback '{pgt_url}' is not an https URL"),
            ));
        }
        // Each level stores and repeats the whole chain: a service that may proxy to
        // itself could otherwise grow it without end.
        if ticket.proxies.len() >= MAX_PROXY_CHAIN {
            return Err(Failure::new(
                ErrorCode::UnauthorizedServiceProxy,
                format!("Proxy chains are limited to {MAX_PROXY_CHAIN} proxies"),
            ));
        }
        let mut proxies = Vec::with_capacity(ticket.proxies.len() + 1);
        proxies.push(pgt_url.to_owned());
        proxies.extend(ticket.proxies.iter().cloned());
        let now = self.clock.now();
        let mut pgt = ProxyGrantingTicket::new(&ticket.tgt_id, &ticket.service, proxies, now);
        pgt.proxied_by.clone_from(&ticket.proxied_by);
        let pgt_id = pgt.id.clone();
        let iou = new_pgt_iou();
        // Stored before the call so the client may use the PGT as soon as it has it.
        if !self
            .tickets
            .add_pgt(pgt, now)
            .await
            .map_err(super::validate::internal)?
        {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                "The SSO session ended during validation",
            ));
        }
        let url = append_query(pgt_url, &[("pgtIou", &iou), ("pgtId", &pgt_id)]);
        match self.proxy_callback.deliver(&url).await {
            Ok(()) => Ok(iou),
            Err(why) => {
                tracing::warn!(pgt_url, reason = %crate::telemetry::Chain(&why), "proxy callback failed; no PGT granted");
                if let Err(e) = self.tickets.remove_pgt(&pgt_id).await {
                    tracing::error!(error = %crate::telemetry::Chain(&e), "could not withdraw the PGT of a failed callback");
                }
                // PCB-06: validation fails; the ticket is already consumed (PCB-07).
                Err(Failure::new(
                    ErrorCode::InvalidProxyCallback,
                    format!(
                        "The proxy callback '{pgt_url}' could not be reached or did not answer 200"
                    ),
                ))
            }
        }
    }

    /// VAL-12, PROXY-03: every service whose PGT a chain went through is still
    /// registered, enabled and allowed to proxy. The failure names none of them: a
    /// client learns nothing about the services a ticket passed through.
    pub(super) fn proxy_chain_authorized<'a>(
        &self,
        services: impl IntoIterator<Item = &'a String>,
    ) -> Result<(), Failure> {
        let allowed = |service: &String| {
            self.options.proxy_authn_enabled
                && self
                    .resolve_service(service)
                    .is_some_and(|r| r.proxy_callback.is_some())
        };
        if services.into_iter().all(allowed) {
            Ok(())
        } else {
            Err(Failure::new(
                ErrorCode::UnauthorizedService,
                "A service of this ticket's proxy chain is no longer authorized to proxy",
            ))
        }
    }

    /// `/proxy`'s whole answer, audited: XML only (PROXY-08), success or failure. A
    /// request the filter refused (`refused`) is INVALID_REQUEST.
    pub async fn proxy_document(
        &self,
        pgt: Option<&str>,
        target_service: Option<&str>,
        refused: Option<&str>,
        ip: std::net::IpAddr,
    ) -> super::Document {
        let outcome = match refused {
            Some(why) => Err(Failure::new(ErrorCode::InvalidRequest, why)),
            None => {
                let outcome = self.proxy(pgt, target_service).await;
                crate::telemetry::audit::proxy_ticket_issued(
                    outcome.as_deref().map_err(|f| f.code.as_str()),
                    target_service,
                    ip,
                );
                outcome
            }
        };
        super::Document::xml(match &outcome {
            Ok(ticket) => super::xml::proxy_success(ticket),
            Err(failure) => super::xml::proxy_failure(failure),
        })
    }

    /// `/proxy` (§2.7): a proxy ticket for `target_service`, from a live PGT.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn proxy(
        &self,
        pgt: Option<&str>,
        target_service: Option<&str>,
    ) -> Result<String, Failure> {
        let (Some(pgt), Some(target)) = (pgt, target_service) else {
            return Err(Failure::new(
                ErrorCode::InvalidRequest,
                "'pgt' and 'targetService' parameters are both required",
            ));
        };
        if !self.options.proxy_authn_enabled {
            return Err(Failure::new(
                ErrorCode::UnauthorizedService,
                "Proxy authentication is disabled on this server",
            ));
        }
        let now = self.clock.now();
        // PROXY-04, PROXY-06: by stored kind; a TGT, ST or PT id is "not a PGT".
        let Some(pgt) = self
            .tickets
            .get_pgt(pgt, now)
            .await
            .map_err(super::validate::internal)?
        else {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                format!("Ticket '{pgt}' is not a valid proxy-granting ticket"),
            ));
        };
        // A service removed, disabled or no longer allowed to proxy loses its PGTs with
        // it, and so does every chain that went through it.
        self.proxy_chain_authorized(std::iter::once(&pgt.service).chain(&pgt.proxied_by))?;
        // PROXY-03.
        let Some(registered) = self
            .resolve_service(target)
            .filter(|s| s.accept_proxy_tickets)
        else {
            return Err(Failure::new(
                ErrorCode::UnauthorizedService,
                format!("Service '{target}' is not authorized to receive proxy tickets"),
            ));
        };
        let logout = super::slo::logout_target(registered, target);
        let ticket = ServiceTicket::proxy(&pgt, target, now, self.policies.proxy_ticket);
        let id = ticket.id.clone();
        let added = self
            .tickets
            .add_service_ticket(ticket, logout, now)
            .await
            .map_err(super::validate::internal)?;
        if !self.stored_for_logout(added) {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                format!("The SSO session of ticket '{}' has ended", pgt.id),
            ));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{Recorder, SERVICE, cas, sign_in_for_ticket};
    use super::super::{Endpoint, ValidationRequest, ValidationSuccess};
    use super::*;
    use crate::clock::ManualClock;

    const BACKEND: &str = "https://backend.example.org/api";

    fn query_value(url: &str, name: &str) -> String {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    }

    async fn st(cas: &Cas) -> String {
        sign_in_for_ticket(cas).await.1
    }

    fn with_pgt_url<'a>(
        service: &'a str,
        ticket: &'a str,
        pgt_url: &'a str,
    ) -> ValidationRequest<'a> {
        ValidationRequest {
            service: Some(service),
            ticket: Some(ticket),
            renew: false,
            pgt_url: Some(pgt_url),
        }
    }

    /// Alice signs in to the app, which validates her ticket with `pgt_url`: the server,
    /// the recorder of its callbacks, and the validation.
    async fn granted(pgt_url: &str) -> (Cas, Arc<Recorder>, ValidationSuccess) {
        let recorder = Arc::new(Recorder::default());
        let mut cas = cas(ManualClock::new());
        cas.proxy_callback = recorder.clone();
        let st = st(&cas).await;
        let ok = cas
            .validate(
                Endpoint::ServiceValidate,
                with_pgt_url(SERVICE, &st, pgt_url),
            )
            .await
            .unwrap();
        (cas, recorder, ok)
    }

    #[tokio::test]
    async fn a_pgt_reaches_the_callback_and_buys_proxy_tickets_along_a_chain() {
        let (cas, recorder, ok) = granted("https://app.example.org/cb/?x=1").await;

        let url = recorder.urls.lock().unwrap()[0].clone();
        assert!(
            url.starts_with("https://app.example.org/cb/?x=1&pgtIou=PGTIOU-"),
            "{url}"
        );
        let iou = query_value(&url, "pgtIou");
        let pgt = query_value(&url, "pgtId");
        assert_eq!(ok.proxy_granting_ticket.as_deref(), Some(iou.as_str()));
        assert_ne!(
            iou.trim_start_matches("PGTIOU-"),
            pgt.trim_start_matches("PGT-")
        );
        // PROXY-05: multi-use.
        let pt1 = cas.proxy(Some(&pgt), Some(BACKEND)).await.unwrap();
        let pt2 = cas.proxy(Some(&pgt), Some(BACKEND)).await.unwrap();
        assert_ne!(pt1, pt2);
        assert!(pt1.starts_with("PT-"));
        // VAL-06: not at /serviceValidate, and consumed there.
        let refused = cas
            .validate(
                Endpoint::ServiceValidate,
                ValidationRequest {
                    service: Some(BACKEND),
                    ticket: Some(&pt2),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidTicket);
        let again = cas
            .validate(
                Endpoint::ProxyValidate,
                ValidationRequest {
                    service: Some(BACKEND),
                    ticket: Some(&pt2),
                    ..Default::default()
                },
            )
            .await;
        assert!(again.unwrap_err().description.contains("not recognized"));
        // Chain: the backend validates PT1 with its own callback and proxies further.
        let ok = cas
            .validate(
                Endpoint::ProxyValidate,
                with_pgt_url(BACKEND, &pt1, "https://backend.example.org/cb/"),
            )
            .await
            .unwrap();
        assert_eq!(ok.proxies, vec!["https://app.example.org/cb/?x=1"]);
        let pgt2 = query_value(&recorder.urls.lock().unwrap()[1], "pgtId");
        let pt3 = cas.proxy(Some(&pgt2), Some(BACKEND)).await.unwrap();
        let ok = cas
            .validate(
                Endpoint::P3ProxyValidate,
                ValidationRequest {
                    service: Some(BACKEND),
                    ticket: Some(&pt3),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            ok.proxies,
            vec![
                "https://backend.example.org/cb/",
                "https://app.example.org/cb/?x=1"
            ]
        );
    }

    /// A service that may proxy to itself cannot grow a chain without end.
    #[tokio::test]
    async fn proxy_chains_stop_at_their_limit() {
        let (cas, recorder, ok) = granted("https://app.example.org/cb/").await;
        assert!(ok.proxy_granting_ticket.is_some());
        let mut pgt = query_value(&recorder.urls.lock().unwrap()[0], "pgtId");
        for depth in 1..=MAX_PROXY_CHAIN {
            let pt = cas.proxy(Some(&pgt), Some(BACKEND)).await.unwrap();
            let answer = cas
                .validate(
                    Endpoint::ProxyValidate,
                    with_pgt_url(BACKEND, &pt, "https://backend.example.org/cb/"),
                )
                .await;
            if depth < MAX_PROXY_CHAIN {
                assert_eq!(answer.unwrap().proxies.len(), depth);
                pgt = query_value(recorder.urls.lock().unwrap().last().unwrap(), "pgtId");
            } else {
                assert_eq!(
                    answer.unwrap_err().code,
                    ErrorCode::UnauthorizedServiceProxy,
                    "depth {depth}"
                );
            }
        }
    }

    #[tokio::test]
    async fn refused_callbacks_give_the_checklist_codes_and_no_pgt() {
        let recorder = Arc::new(Recorder {
            fail: true,
            ..Default::default()
        });
        let mut cas = cas(ManualClock::new());
        cas.proxy_callback = recorder.clone();
        let cases = [
            (
                "https://elsewhere.example/cb/",
                ErrorCode::UnauthorizedServiceProxy,
            ),
            (
                "http://app.example.org/cb/",
                ErrorCode::UnauthorizedServiceProxy,
            ),
            (
                "https://app.example.org/cb/",
                ErrorCode::InvalidProxyCallback,
            ),
        ];
        for (pgt_url, code) in cases {
            let st = st(&cas).await;
            let r = cas
                .validate(
                    Endpoint::ServiceValidate,
                    with_pgt_url(SERVICE, &st, pgt_url),
                )
                .await;
            assert_eq!(r.unwrap_err().code, code, "{pgt_url}");
            let again = cas
                .validate(
                    Endpoint::ServiceValidate,
                    ValidationRequest {
                        service: Some(SERVICE),
                        ticket: Some(&st),
                        ..Default::default()
                    },
                )
                .await;
            assert_eq!(
                again.unwrap_err().code,
                ErrorCode::InvalidTicket,
                "PCB-07: consumed"
            );
        }
        let urls = recorder.urls.lock().unwrap().clone();
        assert_eq!(urls.len(), 1, "only the allowed https callback was tried");
        let pgt = query_value(&urls[0], "pgtId");
        let r = cas.proxy(Some(&pgt), Some(BACKEND)).await;
        assert_eq!(
            r.unwrap_err().code,
            ErrorCode::InvalidTicket,
            "the PGT of a failed callback is withdrawn"
        );
    }

    #[tokio::test]
    async fn proxy_requests_are_checked_in_order() {
        let (mut cas, recorder, _) = granted("https://app.example.org/cb/").await;
        let pgt = query_value(&recorder.urls.lock().unwrap()[0], "pgtId");

        assert_eq!(
            cas.proxy(None, Some(BACKEND)).await.unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            cas.proxy(Some(&pgt), None).await.unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            cas.proxy(Some("PGT-unknown"), Some(BACKEND))
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidTicket
        );
        assert_eq!(
            cas.proxy(Some(&pgt), Some(SERVICE)).await.unwrap_err().code,
            ErrorCode::UnauthorizedService,
            "not accepting PTs"
        );
        assert_eq!(
            cas.proxy(Some(&pgt), Some("https://evil.example/"))
                .await
                .unwrap_err()
                .code,
            ErrorCode::UnauthorizedService
        );
        cas.options.proxy_authn_enabled = false;
        assert_eq!(
            cas.proxy(Some(&pgt), Some(BACKEND)).await.unwrap_err().code,
            ErrorCode::UnauthorizedService
        );
        let st = self::st(&cas).await;
        let r = cas
            .validate(
                Endpoint::ServiceValidate,
                with_pgt_url(SERVICE, &st, "https://app.example.org/cb/"),
            )
            .await;
        assert_eq!(
            r.unwrap_err().code,
            ErrorCode::UnauthorizedServiceProxy,
            "the global switch"
        );
    }
}
