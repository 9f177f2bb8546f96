//! The validation endpoints: `/validate` (CAS 1), `/serviceValidate`, `/proxyValidate`
//! (CAS 2) and `/p3/*` (CAS 3): outcomes, error codes, single use, service matching,
//! attributes, and the exact shape of the XML, JSON and text documents.

use std::sync::Arc;
use std::time::Duration;

use cas_server::clock::Clock as _;
use cas_server::tgc::{CryptoMode, TgcCodec, TgcKeys};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Every endpoint answering in the CAS 2/3 document formats.
const XML_ENDPOINTS: [&str; 4] = [
    "/serviceValidate",
    "/proxyValidate",
    "/p3/serviceValidate",
    "/p3/proxyValidate",
];

/// A registered service (under `prefix:https://app.example.org/`) whose query holds
/// every XML special character and non-ASCII text.
const SPECIAL_SERVICE: &str = "https://app.example.org/search?q=<b>&x=\"y\"&z='w'&name=José";
/// Another URL under the same entry, equally awkward.
const OTHER_SPECIAL_SERVICE: &str = "https://app.example.org/other?a=<&b=>&c=\"'&d=Ünïcödé";

/// Alice's `note` attribute as configured: padded, with every XML special character.
const NOTE: &str = "  <b>Zoë & \"Ålice\"</b> ' ";

/// A fresh service ticket from a new browser's password login for `service`.
async fn ticket_for(server: &TestServer, service: &str) -> String {
    server.browser().login_for_ticket(service).await
}

/// A fresh ticket for `service` (as from `ticket_for`) validated once at `path`, unparsed.
async fn validate_fresh_raw(server: &TestServer, path: &str, service: &str) -> Response {
    let ticket = ticket_for(server, service).await;
    server.client().validate_raw(path, service, &ticket).await
}

/// A fresh ticket for `service` (as from `ticket_for`) validated once at `path`.
async fn validate_fresh(server: &TestServer, path: &str, service: &str) -> Validation {
    let ticket = ticket_for(server, service).await;
    server.client().validate(path, service, &ticket).await
}

/// The body parsed as JSON (panics with the body when it is not JSON).
fn json_body(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"))
}

/// FMT-05: no element whose content is text only has leading or trailing whitespace.
fn assert_no_padded_text(xml: &str) {
    let doc = roxmltree::Document::parse(xml).unwrap();
    for element in doc.descendants().filter(roxmltree::Node::is_element) {
        if element.children().all(|c| c.is_text())
            && let Some(text) = element.text()
        {
            assert_eq!(
                text,
                text.trim(),
                "FMT-05: <{}> is padded in {xml}",
                element.tag_name().name()
            );
        }
    }
}

/// The local names of the element children of `cas:authenticationSuccess`, in order.
fn success_children(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let success = doc
        .descendants()
        .find(|n| n.tag_name().name() == "authenticationSuccess")
        .expect("an authenticationSuccess element");
    success
        .children()
        .filter(roxmltree::Node::is_element)
        .map(|n| n.tag_name().name().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// CAS 1.0: /validate
// ---------------------------------------------------------------------------------------

/// V1-01, V1-06, V1-07, GEN-04, GEN-05: a valid ticket at `/validate` answers exactly
/// `yes\n<user>\n` as text/plain with HTTP 200, LF only and no attributes.
#[tokio::test]
async fn cas1_success_is_yes_and_the_username_on_two_lines() {
    let server = TestServer::start().await;

    let response = validate_fresh_raw(&server, "/validate", SERVICE).await;

    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response.content_type.starts_with("text/plain"),
        "GEN-05: {}",
        response.content_type
    );
    assert_eq!(response.raw, "yes\nalice\n");
}

/// V1-02, GEN-04: every failure at `/validate` (missing parameters, unknown ticket, wrong
/// service) is exactly `no\n\n`, with HTTP 200.
#[tokio::test]
async fn cas1_failures_are_exactly_no_and_an_empty_line() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let missing_ticket = client.get("/validate", &[("service", SERVICE)]).await;
    let missing_service = client.get("/validate", &[("ticket", &ticket)]).await;
    let unknown = client
        .validate_raw("/validate", SERVICE, "ST-doesnotexist")
        .await;
    let wrong_service = client
        .validate_raw("/validate", OTHER_SERVICE, &ticket)
        .await;

    for response in [missing_ticket, missing_service, unknown, wrong_service] {
        assert_eq!(response.status, StatusCode::OK, "GEN-04");
        assert!(response.content_type.starts_with("text/plain"));
        assert_eq!(response.raw, "no\n\n");
    }
}

/// V1-04, VAL-09: with `renew`, `/validate` refuses a ticket issued through SSO and
/// accepts one issued right after the password was typed.
#[tokio::test]
async fn cas1_renew_refuses_sso_tickets_and_accepts_fresh_ones() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.browser();
    let fresh = browser.login_for_ticket(SERVICE).await;
    let sso = browser.sso_ticket(SERVICE).await;

    let refused = client
        .get(
            "/validate",
            &[("service", SERVICE), ("ticket", &sso), ("renew", "true")],
        )
        .await;
    let accepted = client
        .get(
            "/validate",
            &[("service", SERVICE), ("ticket", &fresh), ("renew", "true")],
        )
        .await;

    assert_eq!(refused.raw, "no\n\n");
    assert_eq!(accepted.raw, "yes\nalice\n");
}

/// V1-05, TKT-03: a ticket validates once at `/validate`; the second call says `no`.
#[tokio::test]
async fn cas1_tickets_are_single_use() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;
    let query = [("service", SERVICE), ("ticket", ticket.as_str())];

    let first = client.get("/validate", &query).await;
    let second = client.get("/validate", &query).await;

    assert_eq!(first.raw, "yes\nalice\n");
    assert_eq!(second.raw, "no\n\n");
}

/// V1-06, VAL-16: CAS 1.0 never carries attributes, even with v3 attributes switched on
/// for the CAS 2 endpoints.
#[tokio::test]
async fn cas1_never_carries_attributes() {
    let server = TestServer::start_with(|s| s.validation.attributes_on_v2 = true).await;

    let response = validate_fresh_raw(&server, "/validate", SERVICE).await;

    assert_eq!(response.raw, "yes\nalice\n");
    assert!(!response.raw.contains("alice@example.org"));
}

// ---------------------------------------------------------------------------------------
// CAS 2.0: /serviceValidate, /proxyValidate
// ---------------------------------------------------------------------------------------

/// VAL-01, FMT-11, GEN-04, GEN-05: a valid ticket for its service gives
/// `cas:authenticationSuccess` with only `cas:user`, as UTF-8 XML with HTTP 200.
#[tokio::test]
async fn service_validate_succeeds_with_only_the_user() {
    let server = TestServer::start().await;

    let response = validate_fresh_raw(&server, "/serviceValidate", SERVICE).await;

    assert_eq!(response.status, StatusCode::OK);
    let content_type = response.content_type.to_ascii_lowercase();
    assert!(
        (content_type.starts_with("application/xml") || content_type.starts_with("text/xml"))
            && content_type.contains("charset=utf-8"),
        "GEN-05: {content_type}"
    );
    let validation = parse_validation(&response.raw);
    assert_eq!(
        validation,
        Validation::Success {
            user: "alice".to_owned(),
            attributes: None,
            pgt_iou: None,
            proxies: None,
        }
    );
    assert_eq!(success_children(&response.raw), vec!["user"], "FMT-11");
}

/// VAL-02, VAL-14: a missing `service`, a missing `ticket`, or both, give INVALID_REQUEST
/// with an explanation, on every CAS 2/3 endpoint.
#[tokio::test]
async fn missing_service_or_ticket_is_an_invalid_request() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    for path in XML_ENDPOINTS {
        for query in [
            vec![("service", SERVICE)],
            vec![("ticket", ticket.as_str())],
            vec![],
        ] {
            let validation = client.validate_with(path, &query).await;

            assert_eq!(validation.code(), "INVALID_REQUEST", "{path} {query:?}");
            let description = validation.description();
            assert!(!description.trim().is_empty(), "VAL-14");
        }
    }
}

/// GEN-01: parameter names are case-sensitive: `Service` and `TICKET` are not the
/// protocol's parameters, so the request lacks them.
#[tokio::test]
async fn validation_parameter_names_are_case_sensitive() {
    let server = TestServer::start().await;
    let ticket = ticket_for(&server, SERVICE).await;

    let validation = server
        .client()
        .validate_with(
            "/serviceValidate",
            &[("Service", SERVICE), ("TICKET", &ticket)],
        )
        .await;

    assert_eq!(validation.code(), "INVALID_REQUEST");
}

/// A protocol parameter given twice is refused as INVALID_REQUEST, whichever copy would
/// have matched (no parameter-pollution ambiguity).
#[tokio::test]
async fn a_repeated_validation_parameter_is_an_invalid_request() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let two_services = client
        .validate_with(
            "/serviceValidate",
            &[
                ("service", SERVICE),
                ("service", OTHER_SERVICE),
                ("ticket", &ticket),
            ],
        )
        .await;
    let two_tickets = client
        .validate_with(
            "/p3/serviceValidate",
            &[
                ("service", SERVICE),
                ("ticket", &ticket),
                ("ticket", &ticket),
            ],
        )
        .await;
    let two_cas1 = client
        .get(
            "/validate",
            &[
                ("service", SERVICE),
                ("ticket", &ticket),
                ("ticket", &ticket),
            ],
        )
        .await;

    assert_eq!(two_services.code(), "INVALID_REQUEST");
    assert_eq!(two_tickets.code(), "INVALID_REQUEST");
    assert_eq!(two_cas1.raw, "no\n\n");
}

/// VAL-03, VAL-14: an unknown ticket gives INVALID_TICKET with a description naming it.
#[tokio::test]
async fn an_unknown_ticket_is_invalid() {
    let server = TestServer::start().await;

    let validation = server
        .client()
        .validate("/serviceValidate", SERVICE, "ST-0000000000000000000000000")
        .await;

    assert_eq!(validation.code(), "INVALID_TICKET");
    let description = validation.description();
    assert!(
        description.contains("ST-0000000000000000000000000"),
        "{description}"
    );
}

/// VAL-03, VAL-05, TKT-03: a ticket validates once; the second attempt is INVALID_TICKET.
#[tokio::test]
async fn a_ticket_validates_only_once() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let first = client.validate("/serviceValidate", SERVICE, &ticket).await;
    let second = client.validate("/serviceValidate", SERVICE, &ticket).await;

    assert_eq!(first.user(), "alice");
    assert_eq!(second.code(), "INVALID_TICKET");
}

/// VAL-05: a ticket consumed by `/validate` is gone for `/serviceValidate` too.
#[tokio::test]
async fn a_ticket_consumed_by_cas1_fails_at_service_validate() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let cas1 = client.validate_raw("/validate", SERVICE, &ticket).await;
    let cas2 = client.validate("/serviceValidate", SERVICE, &ticket).await;

    assert_eq!(cas1.raw, "yes\nalice\n");
    assert_eq!(cas2.code(), "INVALID_TICKET");
}

/// VAL-04, TKT-03, VAL-14: a ticket presented with another service gives INVALID_SERVICE
/// naming the service supplied but never the one the ticket was issued for (security
/// review, issue 13: a stray ticket must not reveal where its user was going), and is
/// destroyed: the right service afterwards gets INVALID_TICKET.
#[tokio::test]
async fn a_wrong_service_is_invalid_and_consumes_the_ticket() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let wrong = client
        .validate("/serviceValidate", EXACT_SERVICE, &ticket)
        .await;
    let right = client.validate("/serviceValidate", SERVICE, &ticket).await;

    assert_eq!(wrong.code(), "INVALID_SERVICE");
    let description = wrong.description();
    assert!(
        !description.contains("app.example.org") && description.contains(EXACT_SERVICE),
        "{description}"
    );
    assert_eq!(right.code(), "INVALID_TICKET");
}

/// SVC-11, VAL-04: a ticket issued for one URL never validates for another URL of the
/// same registry entry; the comparison is with the exact service, not the pattern.
#[tokio::test]
async fn a_ticket_is_bound_to_its_url_not_to_its_registry_entry() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, "https://app.example.org/a").await;

    let other = client
        .validate("/serviceValidate", "https://app.example.org/b", &ticket)
        .await;
    let own = client
        .validate("/serviceValidate", "https://app.example.org/a", &ticket)
        .await;

    assert_eq!(other.code(), "INVALID_SERVICE");
    assert_eq!(
        own.code(),
        "INVALID_TICKET",
        "the failed attempt consumed it"
    );
}

/// VAL-15, CC-01, CC-03, CC-05, GEN-02: the service matches after one URL-decode of each
/// side, without the fragment, ignoring case.
#[tokio::test]
async fn service_comparison_ignores_case_encoding_and_fragment() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    // SERVICE is `https://app.example.org/cas/login?next=%2Fhome&b=2`.
    for equivalent in [
        SERVICE,
        "HTTPS://APP.EXAMPLE.ORG/CAS/LOGIN?NEXT=%2FHOME&B=2",
        "https://app.example.org/cas/login?next=/home&b=2",
        "https://app.example.org/cas/login?next=%2fhome&b=%32",
        "https://app.example.org/cas/login?next=%2Fhome&b=2#fragment",
    ] {
        let ticket = browser.sso_ticket(SERVICE).await;

        let validation = client
            .validate("/serviceValidate", equivalent, &ticket)
            .await;

        assert_eq!(validation.user(), "alice", "{equivalent}");
    }
}

/// VAL-15, CC-02, CC-04, GEN-02: a trailing slash, `www.`, query order and a second level
/// of encoding are all significant: INVALID_SERVICE.
#[tokio::test]
async fn service_comparison_keeps_trailing_slash_host_query_order_and_double_encoding() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    for (issued, presented) in [
        ("https://app.example.org/x", "https://app.example.org/x/"),
        ("https://app.example.org/x/", "https://app.example.org/x"),
        ("https://app.example.org/x", "https://www.app.example.org/x"),
        (
            SERVICE,
            "https://app.example.org/cas/login?b=2&next=%2Fhome",
        ),
        (
            SERVICE,
            "https://app.example.org/cas/login?next=%252Fhome&b=2",
        ),
    ] {
        let ticket = browser.sso_ticket(issued).await;

        let validation = client
            .validate("/serviceValidate", presented, &ticket)
            .await;

        assert_eq!(
            validation.code(),
            "INVALID_SERVICE",
            "{issued} vs {presented}"
        );
    }
}

/// VAL-07, FMT-24: `format` is `XML` or `JSON` in any case; anything else is an
/// INVALID_REQUEST rendered as XML.
#[tokio::test]
async fn the_format_parameter_selects_xml_or_json_and_refuses_others() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let ask = async |format: &str| {
        let ticket = browser.sso_ticket(SERVICE).await;
        client
            .get(
                "/serviceValidate",
                &[
                    ("service", SERVICE),
                    ("ticket", &ticket),
                    ("format", format),
                ],
            )
            .await
    };

    let upper_json = ask("JSON").await;
    let lower_json = ask("json").await;
    let explicit_xml = ask("xml").await;
    let html = ask("HTML").await;

    for json in [upper_json, lower_json] {
        assert!(json.content_type.starts_with("application/json"));
        assert_eq!(
            json_body(&json.raw)["serviceResponse"]["authenticationSuccess"]["user"],
            "alice"
        );
    }
    assert!(explicit_xml.content_type.contains("xml"));
    assert_eq!(parse_validation(&explicit_xml.raw).user(), "alice");
    assert_eq!(html.status, StatusCode::OK);
    assert!(html.content_type.contains("xml"), "{}", html.content_type);
    assert_eq!(parse_validation(&html.raw).code(), "INVALID_REQUEST");
}

/// VAL-08, TKT-03: `renew` with a ticket issued through SSO gives INVALID_TICKET, and the
/// ticket is consumed by the refusal.
#[tokio::test]
async fn renew_refuses_an_sso_ticket_and_consumes_it() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let sso = browser.sso_ticket(SERVICE).await;

    let renewed = client
        .validate_with(
            "/serviceValidate",
            &[("service", SERVICE), ("ticket", &sso), ("renew", "true")],
        )
        .await;
    let plain = client.validate("/serviceValidate", SERVICE, &sso).await;

    assert_eq!(renewed.code(), "INVALID_TICKET");
    let description = renewed.description();
    assert!(description.contains("renew"), "{description}");
    assert_eq!(plain.code(), "INVALID_TICKET", "the refusal consumed it");
}

/// VAL-13, TKT-03: a `pgtUrl` is refused with UNAUTHORIZED_SERVICE_PROXY (no service may
/// proxy yet), without a PGTIOU, and the ticket is consumed by the failure.
#[tokio::test]
async fn a_proxy_callback_request_is_refused_and_consumes_the_ticket() {
    let server = TestServer::start().await;
    let client = server.client();
    let ticket = ticket_for(&server, SERVICE).await;

    let with_callback = client
        .get(
            "/serviceValidate",
            &[
                ("service", SERVICE),
                ("ticket", &ticket),
                ("pgtUrl", "https://app.example.org/pgtCallback"),
            ],
        )
        .await;
    let without = client.validate("/serviceValidate", SERVICE, &ticket).await;

    assert_eq!(
        parse_validation(&with_callback.raw).code(),
        "UNAUTHORIZED_SERVICE_PROXY"
    );
    assert!(!with_callback.raw.contains("PGTIOU"), "CC-13");
    assert_eq!(without.code(), "INVALID_TICKET");
}

/// VAL-13, VAL-14, FMT-14: every failure code the server can be made to emit over HTTP
/// is one of the spec's, rendered as `cas:authenticationFailure code="…"` with a
/// non-empty description.
#[tokio::test]
async fn failure_documents_carry_a_spec_code_and_a_description() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let pgt_ticket = browser.sso_ticket(SERVICE).await;
    let wrong_ticket = browser.sso_ticket(SERVICE).await;

    let cases = [
        (
            "INVALID_REQUEST",
            client
                .get("/serviceValidate", &[("service", SERVICE)])
                .await,
        ),
        (
            "INVALID_TICKET",
            client
                .validate_raw("/serviceValidate", SERVICE, "ST-unknown")
                .await,
        ),
        (
            "INVALID_SERVICE",
            client
                .validate_raw("/serviceValidate", OTHER_SERVICE, &wrong_ticket)
                .await,
        ),
        (
            "UNAUTHORIZED_SERVICE_PROXY",
            client
                .get(
                    "/serviceValidate",
                    &[
                        ("service", SERVICE),
                        ("ticket", &pgt_ticket),
                        ("pgtUrl", "https://app.example.org/cb"),
                    ],
                )
                .await,
        ),
    ];

    for (code, response) in cases {
        assert_eq!(response.status, StatusCode::OK, "GEN-04");
        assert!(
            response
                .raw
                .contains(&format!("<cas:authenticationFailure code=\"{code}\">")),
            "FMT-14: {}",
            response.raw
        );
        let Validation::Failure {
            code: parsed,
            description,
        } = parse_validation(&response.raw)
        else {
            panic!("expected a failure: {}", response.raw);
        };
        assert_eq!(parsed, code);
        assert!(!description.trim().is_empty(), "VAL-14: {code}");
        assert_no_padded_text(&response.raw);
    }
}

/// TKT-04, VAL-03: a ticket not validated within its lifetime (10 s by default) is
/// INVALID_TICKET with a description saying it expired; one validated in time works.
#[tokio::test]
async fn an_expired_ticket_is_invalid_and_says_so() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let in_time = browser.sso_ticket(SERVICE).await;
    let late = browser.sso_ticket(SERVICE).await;

    server.clock.advance(Duration::from_secs(9));
    let before = client.validate("/serviceValidate", SERVICE, &in_time).await;
    server.clock.advance(Duration::from_secs(1));
    let after = client.validate("/serviceValidate", SERVICE, &late).await;

    assert_eq!(before.user(), "alice");
    assert_eq!(after.code(), "INVALID_TICKET");
    let description = after.description();
    assert!(
        description.to_lowercase().contains("expired"),
        "{description}"
    );
}

/// TKT-04: the ticket lifetime follows `tickets.st_ttl`.
#[tokio::test]
async fn the_ticket_lifetime_follows_the_configuration() {
    let server = TestServer::start_with(|s| s.tickets.st_ttl = Duration::from_secs(60)).await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let in_time = browser.sso_ticket(SERVICE).await;
    let late = browser.sso_ticket(SERVICE).await;

    server.clock.advance(Duration::from_secs(30));
    let before = client.validate("/serviceValidate", SERVICE, &in_time).await;
    server.clock.advance(Duration::from_secs(31));
    let after = client.validate("/serviceValidate", SERVICE, &late).await;

    assert_eq!(before.user(), "alice");
    assert_eq!(after.code(), "INVALID_TICKET");
}

/// TKT-09: the SSO session's TGT id presented as a service ticket is INVALID_TICKET, and
/// the attempt does not destroy the session.
#[tokio::test]
async fn a_tgt_id_is_not_a_service_ticket_and_survives_the_attempt() {
    let keys = TgcKeys::generate();
    let server = TestServer::start_with(|s| {
        s.tgc.keys = cas_server::config::TgcKeySource::Configured(vec![keys.clone()]);
        s.tgc.crypto = CryptoMode::EncryptAndSign;
    })
    .await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let codec = TgcCodec::new(&[keys], CryptoMode::EncryptAndSign, false).unwrap();
    let tgt_id = codec
        .decode(&browser.tgc().unwrap(), "127.0.0.1", USER_AGENT)
        .unwrap();
    assert!(tgt_id.starts_with("TGT-"), "{tgt_id}");

    let validation = client.validate("/serviceValidate", SERVICE, &tgt_id).await;
    let proxy = client.validate("/proxyValidate", SERVICE, &tgt_id).await;

    assert_eq!(validation.code(), "INVALID_TICKET");
    assert_eq!(proxy.code(), "INVALID_TICKET");
    let ticket = browser.sso_ticket(SERVICE).await;
    assert_eq!(
        client
            .validate("/serviceValidate", SERVICE, &ticket)
            .await
            .user(),
        "alice",
        "the session still grants tickets"
    );
}

/// TKT-03: fifty concurrent validations of one ticket: exactly one succeeds, every other
/// attempt is INVALID_TICKET.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_validations_of_one_ticket_succeed_exactly_once() {
    let server = TestServer::start().await;
    let client = Arc::new(server.client());
    let ticket = ticket_for(&server, SERVICE).await;

    let handles: Vec<_> = (0..50)
        .map(|_| {
            let client = Arc::clone(&client);
            let ticket = ticket.clone();
            tokio::spawn(async move { client.validate("/serviceValidate", SERVICE, &ticket).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }

    let successes = outcomes
        .iter()
        .filter(|v| matches!(v, Validation::Success { .. }))
        .count();
    assert_eq!(successes, 1, "{outcomes:?}");
    for outcome in outcomes
        .iter()
        .filter(|v| matches!(v, Validation::Failure { .. }))
    {
        assert_eq!(outcome.code(), "INVALID_TICKET");
    }
}

/// VAL-16: by default `/serviceValidate` and `/proxyValidate` carry no attributes.
#[tokio::test]
async fn cas2_endpoints_carry_no_attributes_by_default() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    for path in ["/serviceValidate", "/proxyValidate"] {
        let ticket = browser.sso_ticket(SERVICE).await;

        let response = client.validate_raw(path, SERVICE, &ticket).await;

        let Validation::Success { attributes, .. } = parse_validation(&response.raw) else {
            panic!("expected success: {}", response.raw);
        };
        assert_eq!(attributes, None, "{path}");
        assert!(!response.raw.contains("alice@example.org"), "{path}");
    }
}

/// VAL-16: with `validation.attributes_on_v2`, `/serviceValidate` and `/proxyValidate`
/// carry the CAS 3 attributes.
#[tokio::test]
async fn cas2_endpoints_carry_attributes_when_switched_on() {
    let server = TestServer::start_with(|s| s.validation.attributes_on_v2 = true).await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    for path in ["/serviceValidate", "/proxyValidate"] {
        let ticket = browser.sso_ticket(SERVICE).await;

        let validation = client.validate(path, SERVICE, &ticket).await;

        assert_eq!(validation.user(), "alice");
        assert_eq!(validation.attribute("mail"), vec!["alice@example.org"]);
        assert_eq!(validation.attribute("memberOf"), vec!["staff", "faculty"]);
        assert_eq!(validation.attribute("isFromNewLogin"), vec!["false"]);
    }
}

/// PVAL-01, PVAL-03, CC-14: a service ticket validates at `/proxyValidate` and
/// `/p3/proxyValidate`, and the success has no `cas:proxies`.
#[tokio::test]
async fn proxy_validate_accepts_service_tickets_without_proxies() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    for path in ["/proxyValidate", "/p3/proxyValidate"] {
        let ticket = browser.sso_ticket(SERVICE).await;

        let response = client.validate_raw(path, SERVICE, &ticket).await;

        let Validation::Success {
            user,
            proxies,
            pgt_iou,
            ..
        } = parse_validation(&response.raw)
        else {
            panic!("expected success at {path}: {}", response.raw);
        };
        assert_eq!(user, "alice");
        assert_eq!(proxies, None, "PVAL-03 at {path}");
        assert_eq!(pgt_iou, None);
        assert!(!response.raw.contains("proxies"), "{}", response.raw);
    }
}

// ---------------------------------------------------------------------------------------
// CAS 3.0: /p3/*
// ---------------------------------------------------------------------------------------

/// P3-01: the `/p3` endpoints apply the same checks and codes as their CAS 2 twins:
/// INVALID_REQUEST, INVALID_TICKET, INVALID_SERVICE with the ticket consumed, and
/// INVALID_TICKET for a renew violation.
#[tokio::test]
async fn p3_endpoints_apply_the_same_checks_and_codes() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    for path in ["/p3/serviceValidate", "/p3/proxyValidate"] {
        let wrong = browser.sso_ticket(SERVICE).await;
        let renew = browser.sso_ticket(SERVICE).await;
        let good = browser.sso_ticket(SERVICE).await;

        let missing = client.validate_with(path, &[("service", SERVICE)]).await;
        let unknown = client.validate(path, SERVICE, "ST-unknown").await;
        let wrong_service = client.validate(path, OTHER_SERVICE, &wrong).await;
        let after_wrong = client.validate(path, SERVICE, &wrong).await;
        let renew_violation = client
            .validate_with(
                path,
                &[("service", SERVICE), ("ticket", &renew), ("renew", "true")],
            )
            .await;
        let success = client.validate(path, SERVICE, &good).await;
        let replay = client.validate(path, SERVICE, &good).await;

        assert_eq!(missing.code(), "INVALID_REQUEST", "{path}");
        assert_eq!(unknown.code(), "INVALID_TICKET", "{path}");
        assert_eq!(wrong_service.code(), "INVALID_SERVICE", "{path}");
        assert_eq!(after_wrong.code(), "INVALID_TICKET", "{path}");
        assert_eq!(renew_violation.code(), "INVALID_TICKET", "{path}");
        assert_eq!(success.user(), "alice", "{path}");
        assert_eq!(replay.code(), "INVALID_TICKET", "{path}");
    }
}

/// P3-02, P3-03, P3-04, FMT-12: a ticket from a password login carries the three
/// standard attributes: the login time as RFC 3339 UTC, no long-term (remember-me)
/// session, and isFromNewLogin=true.
#[tokio::test]
async fn p3_success_carries_the_standard_attributes_for_a_fresh_login() {
    let server = TestServer::start().await;
    let logged_in_at = server.clock.now();
    let ticket = ticket_for(&server, SERVICE).await;
    server.clock.advance(Duration::from_secs(5));

    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;

    let dates = validation.attribute("authenticationDate");
    assert_eq!(dates.len(), 1);
    assert!(dates[0].ends_with('Z'), "FMT-12: {}", dates[0]);
    let date =
        time::OffsetDateTime::parse(&dates[0], &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert_eq!(
        date,
        logged_in_at.replace_nanosecond(0).unwrap(),
        "the time of the login, not of the validation"
    );
    assert_eq!(
        validation.attribute("longTermAuthenticationRequestTokenUsed"),
        vec!["false"]
    );
    assert_eq!(validation.attribute("isFromNewLogin"), vec!["true"]);
}

/// P3-04, P3-02: a ticket issued through SSO reports isFromNewLogin=false and the
/// session's original authentication date.
#[tokio::test]
async fn p3_sso_tickets_are_not_from_a_new_login() {
    let server = TestServer::start().await;
    let browser = server.browser();
    let logged_in_at = server.clock.now();
    browser.login(None, "alice", PASSWORD).await;
    server.clock.advance(Duration::from_secs(60));
    let ticket = browser.sso_ticket(SERVICE).await;

    let validation = server
        .client()
        .validate("/p3/serviceValidate", SERVICE, &ticket)
        .await;

    assert_eq!(validation.attribute("isFromNewLogin"), vec!["false"]);
    let date = time::OffsetDateTime::parse(
        &validation.attribute("authenticationDate")[0],
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(date, logged_in_at.replace_nanosecond(0).unwrap());
}

/// P3-02, P3-05, P3-06, P3-07: the service's released attributes appear, multi-valued
/// ones as repeated elements, values trimmed, names made valid XML names.
#[tokio::test]
async fn p3_releases_the_services_attributes_with_repeated_elements() {
    let server = TestServer::start().await;

    let validation = validate_fresh(&server, "/p3/proxyValidate", SERVICE).await;

    assert_eq!(validation.attribute("mail"), vec!["alice@example.org"]);
    assert_eq!(validation.attribute("memberOf"), vec!["staff", "faculty"]);
    assert_eq!(validation.attribute("note"), vec![NOTE.trim()]);
    assert_eq!(validation.attribute("_1st_place"), vec!["gold"]);
    assert_eq!(
        validation.attribute_names(),
        vec![
            "_1st_place",
            "authenticationDate",
            "isFromNewLogin",
            "longTermAuthenticationRequestTokenUsed",
            "mail",
            "memberOf",
            "memberOf",
            "note",
        ]
    );
}

/// P3-02, P3-07, CC-07: a service releasing no user attributes still gets the three
/// standard ones, and nothing of the user's.
#[tokio::test]
async fn p3_for_a_service_without_release_has_only_standard_attributes() {
    let server = TestServer::start().await;

    let validation = validate_fresh(&server, "/p3/serviceValidate", EXACT_SERVICE).await;

    assert_eq!(
        validation.attribute_names(),
        vec![
            "authenticationDate",
            "isFromNewLogin",
            "longTermAuthenticationRequestTokenUsed",
        ]
    );
}

/// P3-06, FMT-05: attribute values are trimmed and XML-escaped in the raw document
/// (`&`, `<`, `>`, `"`, `'`), and an invalid attribute name becomes a valid element name.
#[tokio::test]
async fn p3_attribute_values_are_escaped_and_trimmed_in_the_raw_xml() {
    let server = TestServer::start().await;

    let response = validate_fresh_raw(&server, "/p3/serviceValidate", SERVICE).await;

    assert!(
        response
            .raw
            .contains("<cas:note>&lt;b&gt;Zoë &amp; &quot;Ålice&quot;&lt;/b&gt; &apos;</cas:note>"),
        "{}",
        response.raw
    );
    assert!(
        response
            .raw
            .contains("<cas:_1st_place>gold</cas:_1st_place>"),
        "{}",
        response.raw
    );
    assert!(!response.raw.contains("<b>"));
    assert!(!response.raw.contains("1st place"));
    assert_no_padded_text(&response.raw);
}

// ---------------------------------------------------------------------------------------
// XML document shape
// ---------------------------------------------------------------------------------------

/// FMT-01, FMT-02, FMT-03, FMT-04, FMT-05: the document starts with
/// `<cas:serviceResponse` bound to the CAS namespace with the `cas` prefix, has no XML
/// declaration, lists `user` before `attributes`, and pads no text node.
#[tokio::test]
async fn success_documents_have_the_shape_clients_hard_code() {
    let server = TestServer::start().await;

    let response = validate_fresh_raw(&server, "/p3/serviceValidate", SERVICE).await;

    let raw = &response.raw;
    assert!(
        raw.starts_with("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">"),
        "FMT-02, FMT-03: {raw}"
    );
    assert!(!raw.contains("<?xml"), "FMT-03: {raw}");
    assert_eq!(raw.matches("xmlns").count(), 1, "one namespace binding");
    assert!(raw.contains("<cas:authenticationSuccess>"));
    assert!(raw.contains("<cas:user>alice</cas:user>"), "FMT-05: {raw}");
    assert!(raw.contains("<cas:attributes>"));
    assert!(raw.trim_end().ends_with("</cas:serviceResponse>"));
    assert_eq!(success_children(raw), vec!["user", "attributes"], "FMT-04");
    assert!(raw.find("<cas:user>").unwrap() < raw.find("<cas:attributes>").unwrap());
    assert_no_padded_text(raw);
    assert_eq!(parse_validation(raw).user(), "alice", "FMT-01");
}

/// FMT-01, FMT-02, FMT-03, FMT-14: failure documents have the same frame: the `cas`
/// prefix, no XML declaration, one `cas:authenticationFailure` with a code attribute.
#[tokio::test]
async fn failure_documents_have_the_same_frame() {
    let server = TestServer::start().await;

    for path in XML_ENDPOINTS {
        let response = server
            .client()
            .validate_raw(path, SERVICE, "ST-unknown")
            .await;

        let raw = &response.raw;
        assert!(
            raw.starts_with("<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">"),
            "{path}: {raw}"
        );
        assert!(!raw.contains("<?xml"));
        assert!(raw.contains("<cas:authenticationFailure code=\"INVALID_TICKET\">"));
        assert_no_padded_text(raw);
        assert_eq!(parse_validation(raw).code(), "INVALID_TICKET");
    }
}

/// P3-06, FMT-14, VAL-14, GEN-02: a registered service URL holding `<`, `&`, `"`, `'` and
/// non-ASCII text validates into a well-formed document, and the INVALID_SERVICE
/// description quoting two such URLs is escaped and well-formed.
#[tokio::test]
async fn xml_special_and_non_ascii_service_urls_give_well_formed_documents() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;
    let good = browser.sso_ticket(SPECIAL_SERVICE).await;
    let wrong = browser.sso_ticket(SPECIAL_SERVICE).await;

    let success = client
        .validate_raw("/p3/serviceValidate", SPECIAL_SERVICE, &good)
        .await;
    let failure = client
        .validate_raw("/serviceValidate", OTHER_SPECIAL_SERVICE, &wrong)
        .await;

    assert_eq!(parse_validation(&success.raw).user(), "alice");
    let Validation::Failure { code, description } = parse_validation(&failure.raw) else {
        panic!("expected a failure: {}", failure.raw);
    };
    assert_eq!(code, "INVALID_SERVICE");
    assert!(
        !description.contains(SPECIAL_SERVICE) && description.contains(OTHER_SPECIAL_SERVICE),
        "{description}"
    );
    assert!(
        !failure.raw.contains(SPECIAL_SERVICE),
        "escaped in the raw XML"
    );
    assert!(!failure.raw.contains("<b>") && !failure.raw.contains("a=<&"));
    assert!(
        failure
            .raw
            .contains("a=&lt;&amp;b=&gt;&amp;c=&quot;&apos;&amp;d="),
        "{}",
        failure.raw
    );
    assert!(
        !failure.raw.contains("José") && failure.raw.contains("Ünïcödé"),
        "the supplied service, escaped; never the original"
    );
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

/// FMT-20, FMT-23, FMT-24, GEN-05: `format=JSON` gives the spec's success shape on every
/// CAS 2/3 endpoint, as application/json; CAS 3 adds attributes (user attributes as
/// arrays, the standard ones as typed scalars), CAS 2 does not; no empty keys.
#[tokio::test]
async fn json_success_has_the_spec_shape_on_every_endpoint() {
    let server = TestServer::start().await;
    let client = server.client();

    for path in XML_ENDPOINTS {
        let ticket = ticket_for(&server, SERVICE).await;

        let response = client
            .get(
                path,
                &[
                    ("service", SERVICE),
                    ("ticket", &ticket),
                    ("format", "JSON"),
                ],
            )
            .await;

        assert_eq!(response.status, StatusCode::OK, "GEN-04");
        assert!(
            response.content_type.starts_with("application/json"),
            "GEN-05: {}",
            response.content_type
        );
        let body = json_body(&response.raw);
        let success = &body["serviceResponse"]["authenticationSuccess"];
        assert_eq!(success["user"], "alice", "{path}: {body}");
        assert!(success.get("proxyGrantingTicket").is_none(), "{path}");
        assert!(success.get("proxies").is_none(), "PVAL-03 at {path}");
        if path.starts_with("/p3/") {
            let attributes = &success["attributes"];
            assert_eq!(attributes["mail"], json!(["alice@example.org"]));
            assert_eq!(attributes["memberOf"], json!(["staff", "faculty"]));
            assert_eq!(attributes["note"], json!([NOTE.trim()]));
            assert_eq!(attributes["1st place"], json!(["gold"]));
            assert_eq!(attributes["isFromNewLogin"], json!(true));
            assert_eq!(
                attributes["longTermAuthenticationRequestTokenUsed"],
                json!(false)
            );
            assert!(attributes["authenticationDate"].is_string());
        } else {
            assert!(success.get("attributes").is_none(), "VAL-16 at {path}");
        }
    }
}

/// FMT-21, FMT-24, VAL-14: a JSON failure is
/// `{"serviceResponse":{"authenticationFailure":{"code":…,"description":…}}}` on every
/// CAS 2/3 endpoint.
#[tokio::test]
async fn json_failure_has_the_spec_shape_on_every_endpoint() {
    let server = TestServer::start().await;
    let client = server.client();

    for path in XML_ENDPOINTS {
        let response = client
            .get(
                path,
                &[
                    ("service", SERVICE),
                    ("ticket", "ST-unknown"),
                    ("format", "JSON"),
                ],
            )
            .await;

        assert_eq!(response.status, StatusCode::OK, "GEN-04");
        assert!(response.content_type.starts_with("application/json"));
        let body = json_body(&response.raw);
        let failure = body["serviceResponse"]["authenticationFailure"]
            .as_object()
            .unwrap_or_else(|| panic!("{path}: {body}"));
        let mut keys: Vec<&str> = failure.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["code", "description"]);
        assert_eq!(failure["code"], "INVALID_TICKET");
        assert!(
            failure["description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty())
        );
    }
}

/// FMT-21, VAL-02: INVALID_REQUEST is rendered in JSON when JSON was asked for.
#[tokio::test]
async fn json_invalid_request_is_rendered_as_json() {
    let server = TestServer::start().await;

    let response = server
        .client()
        .get("/p3/serviceValidate", &[("format", "json")])
        .await;

    assert!(response.content_type.starts_with("application/json"));
    assert_eq!(
        json_body(&response.raw)["serviceResponse"]["authenticationFailure"]["code"],
        "INVALID_REQUEST"
    );
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// GEN-06: validation responses, success and failure, on every endpoint, must not be
/// cached.
#[tokio::test]
async fn validation_responses_are_not_cacheable() {
    let server = TestServer::start().await;
    let browser = server.signed_in_browser().await;

    for path in ["/validate"].into_iter().chain(XML_ENDPOINTS) {
        let ticket = browser.sso_ticket(SERVICE).await;
        for response in [
            server
                .raw_get(path, &[("service", SERVICE), ("ticket", &ticket)])
                .await,
            server
                .raw_get(path, &[("service", SERVICE), ("ticket", &ticket)])
                .await,
        ] {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
            assert_eq!(response.headers()["pragma"], "no-cache", "{path}");
            assert!(response.headers().contains_key("expires"), "{path}");
        }
    }
}

/// GEN-08, CC-18: validation also works as a form POST, on every endpoint, with the
/// same single use; `format` may come in the form too.
#[tokio::test]
async fn validation_accepts_form_posts() {
    let server = TestServer::start().await;
    let client = server.client();
    let browser = server.signed_in_browser().await;

    let cas1_ticket = browser.sso_ticket(SERVICE).await;
    let cas1 = client
        .post(
            "/validate",
            &[("service", SERVICE), ("ticket", &cas1_ticket)],
        )
        .await;
    assert_eq!(cas1.raw, "yes\nalice\n");

    for path in XML_ENDPOINTS {
        let ticket = browser.sso_ticket(SERVICE).await;
        let form = [("service", SERVICE), ("ticket", ticket.as_str())];

        let first = client.post(path, &form).await;
        let second = client.post(path, &form).await;

        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(parse_validation(&first.raw).user(), "alice", "{path}");
        assert_eq!(parse_validation(&second.raw).code(), "INVALID_TICKET");
    }

    let json_ticket = browser.sso_ticket(SERVICE).await;
    let json = client
        .post(
            "/p3/serviceValidate",
            &[
                ("service", SERVICE),
                ("ticket", &json_ticket),
                ("format", "JSON"),
            ],
        )
        .await;
    assert_eq!(
        json_body(&json.raw)["serviceResponse"]["authenticationSuccess"]["user"],
        "alice"
    );

    // Media types are case-insensitive: a form post is one however it is spelled.
    let shouted_ticket = browser.sso_ticket(SERVICE).await;
    let shouted = client
        .http
        .post(format!("{}/serviceValidate", client.base))
        .header(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
        )
        .body(format!(
            "service={}&ticket={shouted_ticket}",
            url::form_urlencoded::byte_serialize(SERVICE.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(parse_validation(&shouted).user(), "alice", "{shouted}");
}
