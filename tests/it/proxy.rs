//! Proxy authentication end to end, over real TLS: a portal validates with `pgtUrl`, its
//! HTTPS callback receives the PGT, `/proxy` trades it for proxy tickets, and back-ends
//! validate those at `/proxyValidate`, to any depth.

use std::time::Duration;

use cas_server::config::Settings;
use reqwest::StatusCode;

use crate::support::callback::{CallbackSink, TestPki, untrusted_leaf};
use crate::support::*;

/// Trusts the test CA and lets the server call the loopback callback endpoint.
pub(crate) fn trust(settings: &mut Settings, pki: &TestPki) {
    settings.http_client.extra_roots = vec![pki.ca_der()];
    settings.http_client.allow_local_urls = true;
    settings.http_client.read_timeout = Duration::from_millis(500);
}

pub(crate) struct Setup {
    pub server: TestServer,
    pub sink: CallbackSink,
    pub browser: Browser,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

async fn setup_with(configure: impl FnOnce(&mut Settings)) -> Setup {
    let pki = TestPki::new();
    let sink = CallbackSink::start(&pki.leaf(&["localhost"])).await;
    let server = TestServer::start_with(|s| {
        trust(s, &pki);
        configure(s);
    })
    .await;
    let browser = server.browser();
    Setup {
        server,
        sink,
        browser,
    }
}

/// What `/proxy` answered: the PT, or the failure code and description.
fn parse_proxy(xml: &str) -> Result<String, (String, String)> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "serviceResponse");
    assert_eq!(root.tag_name().namespace(), Some(CAS_NS));
    let outcome = root.children().find(|n| n.is_element()).unwrap();
    match outcome.tag_name().name() {
        "proxySuccess" => {
            let pt = outcome
                .children()
                .find(|n| n.has_tag_name((CAS_NS, "proxyTicket")));
            Ok(pt.and_then(|n| n.text()).expect("a proxyTicket").to_owned())
        }
        "proxyFailure" => Err((
            outcome.attribute("code").unwrap().to_owned(),
            outcome.text().unwrap_or_default().to_owned(),
        )),
        other => panic!("unexpected {other}: {xml}"),
    }
}

impl Setup {
    fn client(&self) -> CasClient {
        self.server.client()
    }

    /// Alice signs in to the portal, which validates its ticket with `pgt_url`.
    async fn portal_validates_with(&self, pgt_url: &str) -> (String, Validation) {
        let ticket = self.browser.login_for_ticket(PORTAL).await;
        let validation = self
            .client()
            .validate_with(
                "/serviceValidate",
                &[
                    ("service", PORTAL),
                    ("ticket", &ticket),
                    ("pgtUrl", pgt_url),
                ],
            )
            .await;
        (ticket, validation)
    }

    /// The portal obtains a PGT through the callback at `path`.
    async fn portal_pgt(&self, path: &str) -> String {
        let (_, validation) = self.portal_validates_with(&self.sink.url(path)).await;
        let Validation::Success {
            pgt_iou: Some(iou), ..
        } = validation
        else {
            panic!("expected a PGTIOU: {validation:?}");
        };
        let (delivered_iou, pgt) = self.sink.pgt_delivered_to(path);
        assert_eq!(
            iou, delivered_iou,
            "PCB-08: the response carries the delivered IOU"
        );
        pgt
    }

    /// Asserts that the portal validating with `pgt_url` fails with `code` and that the
    /// callback endpoint was never called; returns the ticket the attempt used.
    async fn assert_callback_refused(&self, pgt_url: &str, code: &str) -> String {
        let (ticket, validation) = self.portal_validates_with(pgt_url).await;
        assert_eq!(validation.code(), code);
        assert!(self.sink.hits().is_empty());
        ticket
    }

    /// The back-end validates the proxy ticket `pt` at `/proxyValidate`.
    async fn backend_validates(&self, pt: &str) -> Validation {
        self.client().validate("/proxyValidate", BACKEND, pt).await
    }

    async fn proxy(&self, pgt: &str, target: &str) -> Result<String, (String, String)> {
        let response = self
            .client()
            .get("/proxy", &[("pgt", pgt), ("targetService", target)])
            .await;
        assert_eq!(response.status, StatusCode::OK, "GEN-04");
        assert!(response.content_type.starts_with("application/xml"));
        parse_proxy(&response.raw)
    }
}

/// What a user's proxy chain holds: the portal's PGT, the back-end's PGT (obtained
/// through the portal) and a proxy ticket from the portal not validated yet.
pub(crate) struct Chain {
    portal_pgt: String,
    backend_pgt: String,
    pending_pt: String,
}

impl Setup {
    /// Alice signs in to the portal, which proxies to the back-end, which proxies on.
    pub(crate) async fn chain(&self) -> Chain {
        let portal_pgt = self.portal_pgt("/cb/portal").await;
        let pt = self.proxy(&portal_pgt, BACKEND).await.unwrap();
        let step = self
            .client()
            .validate_with(
                "/proxyValidate",
                &[
                    ("service", BACKEND),
                    ("ticket", &pt),
                    ("pgtUrl", &self.sink.url("/cb/backend")),
                ],
            )
            .await;
        assert_eq!(step.user(), "alice");
        let (_, backend_pgt) = self.sink.pgt_delivered_to("/cb/backend");
        let pending_pt = self.proxy(&portal_pgt, BACKEND).await.unwrap();
        Chain {
            portal_pgt,
            backend_pgt,
            pending_pt,
        }
    }

    /// The same store and callback endpoint, served by `server` (a restarted or second
    /// node), for the same browser.
    pub(crate) fn served_by(self, server: TestServer) -> Self {
        Self {
            browser: self.browser.on(&server),
            server,
            sink: self.sink,
        }
    }

    /// With the portal withdrawn, everything that went through it is refused with
    /// UNAUTHORIZED_SERVICE, naming no service; the back-end's own tickets still work.
    pub(crate) async fn assert_chain_refused(&self, chain: &Chain) {
        let (code, text) = self.proxy(&chain.portal_pgt, BACKEND).await.unwrap_err();
        assert_eq!(code, "UNAUTHORIZED_SERVICE", "{text}");
        assert!(!text.contains("portal.example.org"), "{text}");
        let pending = self.backend_validates(&chain.pending_pt).await;
        assert_eq!(pending.code(), "UNAUTHORIZED_SERVICE");
        assert!(!pending.description().contains("portal.example.org"));
        let (code, _) = self.proxy(&chain.backend_pgt, DATABASE).await.unwrap_err();
        assert_eq!(
            code, "UNAUTHORIZED_SERVICE",
            "the chain went through the portal"
        );
    }
}

/// A change of the registry, named.
pub(crate) type Change = (&'static str, fn(&mut Settings));

/// The ways an operator withdraws the portal from proxying.
pub(crate) const WITHDRAWALS: [Change; 3] = [
    ("disabled", |s| service_mut(s, 4).enabled = false),
    ("removed", |s| s.services.retain(|r| r.id != 4)),
    ("no longer proxying", |s| {
        service_mut(s, 4).proxy_callback = None
    }),
];

/// Security review (issue 13, item 4): a service disabled or removed from the registry,
/// or no longer allowed to proxy, loses its PGTs, and so does every chain that went
/// through it, at `/proxy` and at validation. The registry changes across a restart that
/// keeps the tickets (the memory store's snapshot; `redis.rs` does it with two nodes).
#[tokio::test]
async fn a_service_withdrawn_from_the_registry_loses_its_proxy_granting_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("tickets.snapshot");
    let keys = cas_server::tgc::TgcKeys::generate();
    let key = cas_server::crypto::random_bytes::<32>();
    let same_store = |s: &mut Settings| {
        s.tgc.keys = cas_server::config::TgcKeySource::Configured(vec![keys.clone()]);
        s.login.flow_keys = vec![cas_server::crypto::Secret::new(key)];
        s.tickets.key = Some(cas_server::crypto::Secret::new(key));
        s.tickets.snapshot_file = Some(snapshot.clone());
    };
    for (how, withdraw) in WITHDRAWALS {
        let before = setup_with(same_store).await;
        let chain = before.chain().await;
        assert!(
            before.proxy(&chain.portal_pgt, BACKEND).await.is_ok(),
            "{how}: works before"
        );
        let Setup {
            server,
            sink,
            browser,
        } = before;
        server.stop().await;
        let server = TestServer::start_with(|s| {
            same_store(s);
            withdraw(s);
        })
        .await;
        let after = Setup {
            browser: browser.on(&server),
            server,
            sink,
        };

        after.assert_chain_refused(&chain).await;
    }
}

/// VAL-10, PCB-04, PCB-08, PCB-09, PROXY-01, PVAL-01, PVAL-02: the whole A → S flow over
/// verified TLS: the callback gets the IOU and the PGT by GET, the validation response
/// only the IOU, and the back-end validates the proxy ticket with the portal as proxy.
#[tokio::test]
async fn a_portal_obtains_a_pgt_and_a_backend_validates_its_proxy_ticket() {
    let setup = setup().await;

    let pgt = setup.portal_pgt("/cb/ok").await;
    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    let validation = setup.backend_validates(&pt).await;

    assert!(pgt.starts_with("PGT-") && pgt.len() <= 64, "{pgt}");
    assert!(pt.starts_with("PT-") && pt.len() <= 32, "{pt}");
    let Validation::Success {
        user,
        proxies,
        pgt_iou,
        ..
    } = validation
    else {
        panic!("{validation:?}");
    };
    assert_eq!(user, "alice");
    assert_eq!(proxies, Some(vec![setup.sink.url("/cb/ok")]));
    assert_eq!(pgt_iou, None);
    let hit = &setup.sink.hits()[0];
    let iou = hit.param("pgtIou").unwrap();
    assert!(iou.starts_with("PGTIOU-") && iou.len() <= 64);
    assert_ne!(
        &iou["PGTIOU-".len()..],
        &pgt["PGT-".len()..],
        "PCB-09: independent values"
    );
}

/// PCB-04: parameters are appended to a pgtUrl's own query, which is kept.
#[tokio::test]
async fn the_callback_keeps_the_pgt_urls_own_query() {
    let setup = setup().await;

    let (_, validation) = setup
        .portal_validates_with(&setup.sink.url("/cb/ok?client=portal"))
        .await;

    assert!(matches!(
        validation,
        Validation::Success {
            pgt_iou: Some(_),
            ..
        }
    ));
    let hit = &setup.sink.hits()[0];
    assert_eq!(hit.param("client"), Some("portal"));
    assert!(hit.param("pgtIou").is_some() && hit.param("pgtId").is_some());
}

/// PVAL-02, PVAL-04, FMT-10, FMT-22: a back-end validating its proxy ticket with its own
/// pgtUrl proxies on; the database sees both proxies, most recent first, in XML and JSON.
#[tokio::test]
async fn chained_proxying_lists_the_proxies_most_recent_first() {
    let setup = setup().await;
    let portal_pgt = setup.portal_pgt("/cb/portal").await;
    let pt1 = setup.proxy(&portal_pgt, BACKEND).await.unwrap();
    let backend_step = setup
        .client()
        .validate_with(
            "/p3/proxyValidate",
            &[
                ("service", BACKEND),
                ("ticket", &pt1),
                ("pgtUrl", &setup.sink.url("/cb/backend")),
            ],
        )
        .await;
    assert_eq!(backend_step.user(), "alice");
    let (_, backend_pgt) = setup.sink.pgt_delivered_to("/cb/backend");
    let expected = vec![setup.sink.url("/cb/backend"), setup.sink.url("/cb/portal")];

    let pt2 = setup.proxy(&backend_pgt, DATABASE).await.unwrap();
    let xml = setup
        .client()
        .validate("/proxyValidate", DATABASE, &pt2)
        .await;
    let pt3 = setup.proxy(&backend_pgt, DATABASE).await.unwrap();
    let json = setup
        .client()
        .get(
            "/p3/proxyValidate",
            &[("service", DATABASE), ("ticket", &pt3), ("format", "JSON")],
        )
        .await;

    let Validation::Success { proxies, .. } = xml else {
        panic!("{xml:?}")
    };
    assert_eq!(proxies, Some(expected.clone()));
    let json: serde_json::Value = serde_json::from_str(&json.raw).unwrap();
    let success = &json["serviceResponse"]["authenticationSuccess"];
    assert_eq!(success["user"], "alice");
    assert_eq!(success["proxies"], serde_json::json!(expected));
}

/// PROXY-05: a PGT is multi-use; each call gives a different, valid proxy ticket.
#[tokio::test]
async fn a_pgt_can_be_used_again_and_again() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;

    let first = setup.proxy(&pgt, BACKEND).await.unwrap();
    let second = setup.proxy(&pgt, BACKEND).await.unwrap();

    assert_ne!(first, second);
    for pt in [first, second] {
        assert_eq!(setup.backend_validates(&pt).await.user(), "alice");
    }
}

/// PCB-01: the callback must be https; an http pgtUrl gets no PGT even where the policy
/// pattern would allow it, and the ticket is consumed (PCB-07).
#[tokio::test]
async fn an_http_callback_is_refused() {
    let setup = setup().await;
    let http_url = format!("http://localhost:{}/cb/ok", setup.sink.port);

    let ticket = setup
        .assert_callback_refused(&http_url, "INVALID_PROXY_CALLBACK")
        .await;

    let again = setup
        .client()
        .validate("/serviceValidate", PORTAL, &ticket)
        .await;
    assert_eq!(again.code(), "INVALID_TICKET", "PCB-07: consumed");
}

/// PCB-03, PCB-06, PCB-07: a callback whose certificate no trusted CA signed gets no
/// PGT: the validation fails, without a PGTIOU, and the ticket is gone.
#[tokio::test]
async fn a_callback_with_an_untrusted_certificate_gets_no_pgt() {
    let setup = setup().await;
    let rogue = CallbackSink::start(&untrusted_leaf(&["localhost"])).await;

    let (ticket, validation) = setup.portal_validates_with(&rogue.url("/cb/ok")).await;

    assert_eq!(validation.code(), "INVALID_PROXY_CALLBACK");
    assert!(
        rogue.hits().is_empty(),
        "no request goes past a failed handshake"
    );
    let again = setup
        .client()
        .validate("/serviceValidate", PORTAL, &ticket)
        .await;
    assert_eq!(again.code(), "INVALID_TICKET");
}

/// PCB-03: the certificate must name the host: a certificate for `localhost` is refused
/// when the pgtUrl says `127.0.0.1`.
#[tokio::test]
async fn a_callback_whose_certificate_names_another_host_gets_no_pgt() {
    let setup = setup().await;

    setup
        .assert_callback_refused(&setup.sink.ip_url("/cb/ok"), "INVALID_PROXY_CALLBACK")
        .await;
}

/// PCB-05, PCB-06, CC-13: only HTTP 200 counts; a 404, a 500 or a redirect (never
/// followed) fails the validation with no PGTIOU, and the PGT that was sent is dead.
#[tokio::test]
async fn a_callback_that_does_not_answer_200_gets_no_pgt() {
    let setup = setup().await;

    for path in ["/cb/missing", "/cb/error", "/cb/redirect"] {
        let (_, validation) = setup.portal_validates_with(&setup.sink.url(path)).await;

        assert_eq!(validation.code(), "INVALID_PROXY_CALLBACK", "{path}");
        let (_, pgt) = setup.sink.pgt_delivered_to(path);
        let refused = setup.proxy(&pgt, BACKEND).await.unwrap_err();
        assert_eq!(refused.0, "INVALID_TICKET", "{path}: the PGT was withdrawn");
    }
    assert!(
        setup.sink.hits().iter().all(|h| h.path != "/cb/ok"),
        "the redirect was not followed"
    );
}

/// PCB-06, PCB-11: a callback that does not answer within the read timeout fails the
/// validation; the validation itself returns promptly.
#[tokio::test]
async fn a_callback_that_times_out_gets_no_pgt() {
    let setup = setup().await;

    let started = std::time::Instant::now();
    let (_, validation) = setup
        .portal_validates_with(&setup.sink.url("/cb/slow"))
        .await;

    assert_eq!(validation.code(), "INVALID_PROXY_CALLBACK");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the configured timeouts"
    );
}

/// PCB-02, SVC-03: a service without a proxy policy may not proxy.
#[tokio::test]
async fn a_service_without_a_proxy_policy_gets_unauthorized_service_proxy() {
    let setup = setup().await;
    let ticket = setup.browser.login_for_ticket(SERVICE).await;

    let validation = setup
        .client()
        .validate_with(
            "/serviceValidate",
            &[
                ("service", SERVICE),
                ("ticket", &ticket),
                ("pgtUrl", &setup.sink.url("/cb/ok")),
            ],
        )
        .await;

    assert_eq!(validation.code(), "UNAUTHORIZED_SERVICE_PROXY");
    assert!(setup.sink.hits().is_empty());
}

/// PCB-02: a pgtUrl outside the service's `proxy_callback` pattern is refused unseen.
#[tokio::test]
async fn a_callback_outside_the_allowed_pattern_is_refused() {
    let setup = setup().await;

    setup
        .assert_callback_refused(
            &setup.sink.url("/elsewhere/ok"),
            "UNAUTHORIZED_SERVICE_PROXY",
        )
        .await;
}

/// Outbound safety: with `allow_local_urls` off (the default), a loopback callback is
/// refused, also when it is given by name and only DNS says it is local.
#[tokio::test]
async fn a_loopback_callback_is_refused_unless_local_urls_are_allowed() {
    let setup = setup_with(|s| s.http_client.allow_local_urls = false).await;

    for url in [setup.sink.url("/cb/ok"), setup.sink.ip_url("/cb/ok")] {
        let (_, validation) = setup.portal_validates_with(&url).await;
        assert_eq!(validation.code(), "INVALID_PROXY_CALLBACK", "{url}");
    }
    assert!(setup.sink.hits().is_empty());
}

/// LOGOUT-02, TKT-06: logging out kills every PGT of the session.
#[tokio::test]
async fn a_pgt_dies_when_the_user_logs_out() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;

    setup.browser.get("/logout", &[]).await;
    let refused = setup.proxy(&pgt, BACKEND).await.unwrap_err();

    assert_eq!(refused.0, "INVALID_TICKET");
    assert!(!refused.1.is_empty());
}

/// TKT-06: a PGT expires with its SSO session; using it does not keep the session alive.
#[tokio::test]
async fn a_pgt_dies_when_the_sso_session_expires() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;

    setup.server.clock.advance(Duration::from_secs(3600));
    assert!(
        setup.proxy(&pgt, BACKEND).await.is_ok(),
        "alive within the idle window"
    );
    setup.server.clock.advance(Duration::from_secs(3601));
    let refused = setup.proxy(&pgt, BACKEND).await.unwrap_err();

    assert_eq!(
        refused.0, "INVALID_TICKET",
        "proxy use did not slide the user's session"
    );
}

/// VAL-06, V1-03, TKT-03, P3-01: a proxy ticket is refused at /serviceValidate,
/// /p3/serviceValidate and /validate, and consumed by the attempt.
#[tokio::test]
async fn proxy_tickets_are_refused_and_consumed_by_service_validation() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;

    for path in ["/serviceValidate", "/p3/serviceValidate"] {
        let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
        let refused = setup.client().validate(path, BACKEND, &pt).await;
        assert_eq!(refused.code(), "INVALID_TICKET", "{path}");
        let gone = setup.backend_validates(&pt).await;
        assert_eq!(gone.code(), "INVALID_TICKET", "{path} consumed it");
    }
    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    let cas1 = setup.client().validate_raw("/validate", BACKEND, &pt).await;
    assert_eq!(cas1.raw, "no\n\n");
    let gone = setup.backend_validates(&pt).await;
    assert_eq!(gone.code(), "INVALID_TICKET", "/validate consumed it");
}

/// PVAL-05, PVAL-06: a proxy ticket is valid once, for its target only, and not after
/// its 10 s lifetime.
#[tokio::test]
async fn proxy_tickets_are_single_use_bound_to_their_target_and_short_lived() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;

    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    assert_eq!(setup.backend_validates(&pt).await.user(), "alice");
    assert_eq!(setup.backend_validates(&pt).await.code(), "INVALID_TICKET");

    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    let wrong = setup
        .client()
        .validate("/proxyValidate", DATABASE, &pt)
        .await;
    assert_eq!(wrong.code(), "INVALID_SERVICE");
    assert_eq!(setup.backend_validates(&pt).await.code(), "INVALID_TICKET");

    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    setup.server.clock.advance(Duration::from_secs(10));
    let expired = setup.backend_validates(&pt).await;
    assert_eq!(expired.code(), "INVALID_TICKET");
}

/// TKT-03: fifty concurrent validations of one proxy ticket: exactly one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_of_one_proxy_ticket_succeed_once() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;
    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = setup.client();
            let pt = pt.clone();
            tokio::spawn(async move { client.validate("/proxyValidate", BACKEND, &pt).await })
        })
        .collect();
    let mut successes = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Validation::Success { .. }) {
            successes += 1;
        }
    }

    assert_eq!(successes, 1);
}

/// PROXY-02, PROXY-03, PROXY-04, PROXY-06, FMT-30, FMT-31: `/proxy` refusals carry the
/// checklist's codes; a TGT, ST or PT id is not a PGT, and a target must be registered
/// and accept proxy tickets.
#[tokio::test]
async fn proxy_requests_are_refused_with_the_checklist_codes() {
    let setup = setup().await;
    let pgt = setup.portal_pgt("/cb/ok").await;
    let st = setup.browser.sso_ticket(SERVICE).await;
    let pt = setup.proxy(&pgt, BACKEND).await.unwrap();
    let tgt_looking = "TGT-0123456789abcdefghijklmnopqrstuvwxyzABCD";

    let missing = setup.client().get("/proxy", &[("pgt", &pgt)]).await;
    assert_eq!(parse_proxy(&missing.raw).unwrap_err().0, "INVALID_REQUEST");
    let missing = setup
        .client()
        .get("/proxy", &[("targetService", BACKEND)])
        .await;
    assert_eq!(parse_proxy(&missing.raw).unwrap_err().0, "INVALID_REQUEST");
    for not_a_pgt in ["PGT-unknown", st.as_str(), pt.as_str(), tgt_looking] {
        let refused = setup.proxy(not_a_pgt, BACKEND).await.unwrap_err();
        assert_eq!(refused.0, "INVALID_TICKET", "{not_a_pgt}");
    }
    for target in [SERVICE, FOREIGN_SERVICE, DISABLED_SERVICE] {
        let refused = setup.proxy(&pgt, target).await.unwrap_err();
        assert_eq!(refused.0, "UNAUTHORIZED_SERVICE", "{target}");
    }
    let repeated = setup
        .client()
        .get(
            "/proxy",
            &[("pgt", &pgt), ("pgt", &pgt), ("targetService", BACKEND)],
        )
        .await;
    assert_eq!(parse_proxy(&repeated.raw).unwrap_err().0, "INVALID_REQUEST");
    let ok = setup
        .client()
        .get("/proxy", &[("pgt", &pgt), ("targetService", BACKEND)])
        .await;
    assert!(
        ok.raw.starts_with(
            "<cas:serviceResponse xmlns:cas=\"http://www.yale.edu/tp/cas\">\n  <cas:proxySuccess>"
        ),
        "{}",
        ok.raw
    );
}

/// `sso.proxy_authn_enabled = false` turns the feature off: no callbacks, no proxy tickets.
#[tokio::test]
async fn the_global_switch_turns_proxy_authentication_off() {
    let setup = setup_with(|s| s.sso.proxy_authn_enabled = false).await;

    let (_, validation) = setup.portal_validates_with(&setup.sink.url("/cb/ok")).await;
    let proxy = setup.proxy("PGT-anything", BACKEND).await;

    assert_eq!(validation.code(), "UNAUTHORIZED_SERVICE_PROXY");
    assert!(setup.sink.hits().is_empty());
    assert_eq!(proxy.unwrap_err().0, "UNAUTHORIZED_SERVICE");
}
