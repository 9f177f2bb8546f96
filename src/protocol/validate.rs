//! `/validate` (CAS 1), `/serviceValidate`, `/proxyValidate` (CAS 2) and `/p3/*` (CAS 3).
//!
//! Every attempt consumes the ticket, success or failure (TKT-03), and the consume step is
//! the registry's atomic `redeem`, so a ticket validates at most once however many
//! requests race for it.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::{Cas, ErrorCode, Failure};
use crate::services::normalize;
use crate::telemetry::{FAULT_LOG_INTERVAL, Repeats};
use crate::tickets::{Grant, Redeemed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`
    Cas1,
    /// `/serviceValidate`
    ServiceValidate,
    /// `/proxyValidate`
    ProxyValidate,
    /// `/p3/serviceValidate`
    P3ServiceValidate,
    /// `/p3/proxyValidate`
    P3ProxyValidate,
}

impl Endpoint {
    /// PVAL-01, VAL-06, V1-03: only the proxy endpoints accept proxy tickets.
    fn accepts_proxy_tickets(self) -> bool {
        matches!(self, Self::ProxyValidate | Self::P3ProxyValidate)
    }

    fn is_cas3(self) -> bool {
        matches!(self, Self::P3ServiceValidate | Self::P3ProxyValidate)
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Cas1 => "/validate",
            Self::ServiceValidate => "/serviceValidate",
            Self::ProxyValidate => "/proxyValidate",
            Self::P3ServiceValidate => "/p3/serviceValidate",
            Self::P3ProxyValidate => "/p3/proxyValidate",
        }
    }
}

/// The response format (§2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Xml,
    Json,
}

impl Format {
    /// VAL-07: `XML` (default) or `JSON`, accepted in any case; anything else is refused.
    pub fn parse(value: Option<&str>) -> Result<Self, Failure> {
        match value {
            None => Ok(Self::Xml),
            Some(v) if v.eq_ignore_ascii_case("xml") => Ok(Self::Xml),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(_) => Err(Failure::new(
                ErrorCode::InvalidRequest,
                "unsupported format: use XML or JSON",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationRequest<'a> {
    pub service: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub renew: bool,
    /// A proxy callback URL (§2.5.4): on success, a PGT is sent there.
    pub pgt_url: Option<&'a str>,
}

/// The three attributes CAS 3 always adds (P3-02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardAttributes {
    pub authentication_date: OffsetDateTime,
    pub long_term_authentication_request_token_used: bool,
    pub is_from_new_login: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationSuccess {
    pub user: String,
    /// `Some` on CAS 3 responses: the standard attributes plus those released to the service.
    pub attributes: Option<(StandardAttributes, BTreeMap<String, Vec<String>>)>,
    pub proxy_granting_ticket: Option<String>,
    /// Most recent first (PVAL-02).
    pub proxies: Vec<String>,
}

/// A validation request as it arrived: its parameters, or why the request filter refused
/// it (answered INVALID_REQUEST in the endpoint's own format, before any ticket is
/// touched).
#[derive(Debug, Clone, Copy)]
pub struct ValidationCall<'a> {
    pub endpoint: Endpoint,
    pub request: ValidationRequest<'a>,
    /// The `format` parameter (VAL-07); ignored by `/validate`.
    pub format: Option<&'a str>,
    pub refused: Option<&'a str>,
    pub ip: std::net::IpAddr,
}

/// A protocol document and its media type (GEN-04: always HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub content_type: &'static str,
    pub body: String,
}

impl Document {
    pub fn xml(body: String) -> Self {
        Self {
            content_type: "application/xml; charset=UTF-8",
            body,
        }
    }
}

impl Cas {
    /// A validation endpoint's whole answer: the outcome, audited, rendered as the
    /// endpoint and `format` ask (CAS 1 text, CAS 2/3 XML, or JSON).
    pub async fn validation_document(&self, call: ValidationCall<'_>) -> Document {
        let format = if call.endpoint == Endpoint::Cas1 {
            Ok(Format::Xml)
        } else {
            Format::parse(call.format)
        };
        let chosen = format.as_ref().copied().unwrap_or_default();
        let outcome = match (format, call.refused) {
            (_, Some(why)) => Err(Failure::new(ErrorCode::InvalidRequest, why)),
            (Err(failure), None) => Err(failure),
            (Ok(_), None) => self.validate(call.endpoint, call.request).await,
        };
        crate::telemetry::audit::ticket_validated(
            call.request.ticket,
            call.endpoint.path(),
            call.request.service,
            outcome
                .as_ref()
                .map(|s| s.user.as_str())
                .map_err(|f| f.code.as_str()),
            call.ip,
        );
        match (call.endpoint, chosen) {
            (Endpoint::Cas1, _) => Document {
                content_type: "text/plain; charset=UTF-8",
                body: render_cas1(&outcome),
            },
            (_, Format::Json) => Document {
                content_type: "application/json",
                body: match &outcome {
                    Ok(success) => super::json::authentication_success(success),
                    Err(failure) => super::json::authentication_failure(failure),
                },
            },
            (_, Format::Xml) => Document::xml(match &outcome {
                Ok(success) => super::xml::authentication_success(success),
                Err(failure) => super::xml::authentication_failure(failure),
            }),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = endpoint.path()))]
    pub async fn validate(
        &self,
        endpoint: Endpoint,
        req: ValidationRequest<'_>,
    ) -> Result<ValidationSuccess, Failure> {
        let (Some(service), Some(ticket)) = (req.service, req.ticket) else {
            return Err(Failure::new(
                ErrorCode::InvalidRequest,
                "'service' and 'ticket' parameters are both required",
            ));
        };
        let now = self.clock.now();
        let (redeemed, session) = self
            .tickets
            .redeem_with_session(ticket, now)
            .await
            .map_err(internal)?;
        let st = match redeemed {
            Redeemed::Valid(st) => st,
            Redeemed::Missing | Redeemed::WrongKind => {
                return Err(Failure::new(
                    ErrorCode::InvalidTicket,
                    format!("Ticket '{ticket}' not recognized"),
                ));
            }
            Redeemed::Expired(_) => {
                return Err(Failure::new(
                    ErrorCode::InvalidTicket,
                    format!("Ticket '{ticket}' has expired"),
                ));
            }
        };
        if st.grant == Grant::Proxy && !endpoint.accepts_proxy_tickets() {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                format!(
                    "Ticket '{ticket}' is a proxy ticket, which {} does not accept; use /proxyValidate",
                    endpoint.path()
                ),
            ));
        }
        // VAL-04, VAL-15: the exact service the ticket was issued for (CC-01..05).
        if normalize(&st.service) != normalize(service) {
            return Err(Failure::new(
                ErrorCode::InvalidService,
                // Never the service the ticket was issued for: a client holding a stray
                // ticket must not learn where its user was going.
                format!("Ticket '{ticket}' was not issued for the supplied service '{service}'"),
            ));
        }
        // VAL-08: renew demands a ticket issued from primary credentials.
        if req.renew && !st.from_new_login {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                format!(
                    "Ticket '{ticket}' was not issued from a new login, but renew was requested"
                ),
            ));
        }
        let Some(registered) = self.resolve_service(&st.service) else {
            return Err(Failure::new(
                ErrorCode::UnauthorizedService,
                format!("Service '{service}' is no longer authorized to use CAS"),
            ));
        };
        self.proxy_chain_authorized(&st.proxied_by)?;
        // The ticket dies with its SSO session (logout or expiry).
        let Some(tgt) = session else {
            return Err(Failure::new(
                ErrorCode::InvalidTicket,
                format!("Ticket '{ticket}' belongs to an SSO session that has ended"),
            ));
        };
        let attributes = (endpoint.is_cas3()
            || (self.options.attributes_on_v2 && endpoint != Endpoint::Cas1))
            .then(|| {
                // A user attribute never shadows one of the three standard ones.
                let released = registered
                    .attributes
                    .iter()
                    .filter(|name| {
                        !matches!(
                            name.as_str(),
                            "authenticationDate"
                                | "longTermAuthenticationRequestTokenUsed"
                                | "isFromNewLogin"
                        )
                    })
                    .filter_map(|name| {
                        tgt.principal
                            .attributes
                            .get(name)
                            .map(|values| (name.clone(), values.clone()))
                    })
                    .collect();
                let standard = StandardAttributes {
                    authentication_date: tgt.authenticated_at,
                    long_term_authentication_request_token_used: tgt.remember_me,
                    is_from_new_login: st.from_new_login,
                };
                (standard, released)
            });
        let proxy_granting_ticket = match req.pgt_url {
            Some(pgt_url) => Some(
                self.grant_proxy_granting_ticket(registered, &st, pgt_url)
                    .await?,
            ),
            None => None,
        };
        Ok(ValidationSuccess {
            user: tgt.principal.id.clone(),
            attributes,
            proxy_granting_ticket,
            proxies: st.proxies,
        })
    }
}

pub(super) fn internal(e: crate::tickets::RegistryError) -> Failure {
    static REPEATS: Repeats = Repeats::new(FAULT_LOG_INTERVAL);
    if let Some(left_out) = REPEATS.admit() {
        tracing::error!(error = %crate::telemetry::Chain(&e), left_out, "validation failed on a registry fault");
    }
    Failure::new(
        ErrorCode::InternalError,
        "The server could not complete the validation; try again later",
    )
}

/// `authenticationDate` as RFC 3339 UTC in whole seconds (FMT-12): every client's date
/// parser reads that, not all of them read nanoseconds.
pub fn format_date(date: OffsetDateTime) -> String {
    date.replace_nanosecond(0)
        .unwrap_or(date)
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// CAS 1.0 body (V1-01, V1-02, V1-07): `yes\n<user>\n` or `no\n\n`, LF only.
pub fn render_cas1(outcome: &Result<ValidationSuccess, Failure>) -> String {
    match outcome {
        Ok(success) => format!("yes\n{}\n", success.user),
        Err(_) => "no\n\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{SERVICE, cas, sign_in_for_ticket};
    use super::*;
    use crate::clock::ManualClock;

    async fn login(cas: &Cas) -> (String, String) {
        sign_in_for_ticket(cas).await
    }

    fn req<'a>(service: &'a str, ticket: &'a str, renew: bool) -> ValidationRequest<'a> {
        ValidationRequest {
            service: Some(service),
            ticket: Some(ticket),
            renew,
            pgt_url: None,
        }
    }

    #[tokio::test]
    async fn p3_releases_only_the_services_attributes_plus_standard_ones() {
        let cas = cas(ManualClock::new());
        let (_, st) = login(&cas).await;
        let ok = cas
            .validate(Endpoint::P3ServiceValidate, req(SERVICE, &st, true))
            .await
            .unwrap();
        assert_eq!(ok.user, "alice");
        let (standard, released) = ok.attributes.unwrap();
        assert!(standard.is_from_new_login);
        assert!(!standard.long_term_authentication_request_token_used);
        assert_eq!(released.keys().collect::<Vec<_>>(), vec!["mail"]);
    }

    #[tokio::test]
    async fn v2_has_no_attributes_and_tickets_are_single_use() {
        let cas = cas(ManualClock::new());
        let (_, st) = login(&cas).await;
        let ok = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &st, false))
            .await
            .unwrap();
        assert!(ok.attributes.is_none());
        let again = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &st, false))
            .await;
        assert_eq!(again.unwrap_err().code, ErrorCode::InvalidTicket);
    }

    #[tokio::test]
    async fn wrong_service_consumes_the_ticket() {
        let cas = cas(ManualClock::new());
        let (_, st) = login(&cas).await;
        let wrong = cas
            .validate(
                Endpoint::ServiceValidate,
                req("https://app.example.org/other", &st, false),
            )
            .await;
        assert_eq!(wrong.unwrap_err().code, ErrorCode::InvalidService);
        let right = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &st, false))
            .await;
        assert_eq!(right.unwrap_err().code, ErrorCode::InvalidTicket);
    }

    #[tokio::test]
    async fn renew_refuses_sso_tickets_and_expiry_is_enforced() {
        let clock = ManualClock::new();
        let cas = cas(clock.clone());
        let (tgt, _) = login(&cas).await;
        let ticket = super::super::testing::sso_ticket(&cas, &tgt, SERVICE)
            .await
            .expect("SSO");
        let r = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &ticket, true))
            .await;
        assert_eq!(r.unwrap_err().code, ErrorCode::InvalidTicket);

        let (_, st) = login(&cas).await;
        clock.advance(Duration::from_secs(10));
        let r = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &st, false))
            .await;
        assert!(r.unwrap_err().description.contains("expired"));
    }

    #[tokio::test]
    async fn missing_parameters_and_foreign_kinds_are_refused() {
        let cas = cas(ManualClock::new());
        let (tgt, _) = login(&cas).await;
        let r = cas
            .validate(Endpoint::ServiceValidate, ValidationRequest::default())
            .await;
        assert_eq!(r.unwrap_err().code, ErrorCode::InvalidRequest);
        let r = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &tgt, false))
            .await;
        assert_eq!(r.unwrap_err().code, ErrorCode::InvalidTicket);
        assert!(
            cas.tickets
                .get_tgt(&tgt, cas.clock.now())
                .await
                .unwrap()
                .is_some()
        );
    }

    /// VAL-12: a valid ticket whose service has since left the registry is refused.
    #[tokio::test]
    async fn a_service_no_longer_registered_is_unauthorized() {
        let mut cas = cas(ManualClock::new());
        let (_, st) = login(&cas).await;
        cas.services = std::sync::Arc::new(crate::services::ServiceRegistry::default());
        let r = cas
            .validate(Endpoint::ServiceValidate, req(SERVICE, &st, false))
            .await;
        assert_eq!(r.unwrap_err().code, ErrorCode::UnauthorizedService);
    }

    #[test]
    fn cas1_bodies_are_exact() {
        let ok = ValidationSuccess {
            user: "alice".into(),
            attributes: None,
            proxy_granting_ticket: None,
            proxies: vec![],
        };
        assert_eq!(render_cas1(&Ok(ok)), "yes\nalice\n");
        assert_eq!(
            render_cas1(&Err(Failure::new(ErrorCode::InvalidTicket, "x"))),
            "no\n\n"
        );
    }
}
