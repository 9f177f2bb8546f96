//! The login sequence through its outcome type: each path, the pending step, and the
//! promise of one registry lookup and one throttle reservation per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::super::testing::{IP, SERVICE, browser, cas, form_token, sign_in};
use super::*;
use crate::clock::ManualClock;
use crate::protocol::throttle::{LoginThrottle, ThrottlePolicy};
use crate::services::{RegisteredService, ServiceLookup};
use crate::tickets::{AttemptOp, AttemptRules, AttemptStore, AttemptWait, RegistryError};

fn get(service: Option<&str>, renew: bool, gateway: bool) -> LoginRequest<'_> {
    LoginRequest {
        service,
        renew,
        gateway,
        method: None,
    }
}

fn is_form(outcome: &LoginOutcome<'_>) -> bool {
    matches!(outcome.view, LoginView::Form(_))
}

/// LOGIN-01..10 as outcomes, with and without a session.
#[tokio::test]
async fn login_matrix_follows_the_checklist() {
    let cas = cas(ManualClock::new());
    let none = browser(None);
    // No session.
    for request in [
        get(None, false, false),
        get(Some(SERVICE), false, false),
        get(None, false, true),
        get(Some(SERVICE), true, true),
    ] {
        assert!(
            is_form(&cas.login_get(request, none).await.unwrap()),
            "{request:?}"
        );
    }
    assert!(matches!(
        cas.login_get(get(Some(SERVICE), false, true), none).await.unwrap().view,
        LoginView::Gateway { location } if location == SERVICE
    ));
    assert!(matches!(
        cas.login_get(get(Some("https://evil.example/"), false, true), none)
            .await
            .unwrap()
            .view,
        LoginView::Refused(LoginRefusal::UnknownService)
    ));
    // With a session.
    let (tgt_id, redirect) = sign_in(&cas, Some(SERVICE)).await;
    assert!(
        redirect
            .unwrap()
            .0
            .starts_with("https://app.example.org/cas?x=1&ticket=ST-")
    );
    let signed_in = browser(Some(&tgt_id));
    for request in [
        get(Some(SERVICE), false, false),
        get(Some(SERVICE), false, true),
    ] {
        let outcome = cas.login_get(request, signed_in).await.unwrap();
        let LoginView::Deliver(delivery) = outcome.view else {
            panic!("{outcome:?}");
        };
        assert_eq!(delivery.how, ResponseType::Redirect);
        assert!(delivery.location.ends_with(&delivery.ticket));
        assert!(outcome.session.is_none(), "SSO sets no new cookie");
    }
    for request in [
        get(Some(SERVICE), true, false),
        get(Some(SERVICE), true, true),
    ] {
        assert!(is_form(&cas.login_get(request, signed_in).await.unwrap()));
    }
    assert!(matches!(
        cas.login_get(get(None, false, false), signed_in).await.unwrap().view,
        LoginView::SignedIn { user } if user == "alice"
    ));
}

/// The form carries a token bound to the browser; a browser without a binding gets one.
#[tokio::test]
async fn the_form_binds_itself_to_the_browser() {
    let cas = cas(ManualClock::new());
    let known = cas
        .login_get(get(Some(SERVICE), false, false), browser(None))
        .await
        .unwrap();
    assert_eq!(known.binding, None, "the browser's own binding is used");
    let unbound = Browser {
        bindings: &[],
        ..browser(None)
    };
    let fresh = cas
        .login_get(get(Some(SERVICE), false, false), unbound)
        .await
        .unwrap();
    let binding = fresh.binding.expect("a new binding to set");
    assert_eq!(binding.len(), BINDING_LEN);
    let LoginView::Form(form) = fresh.view else {
        panic!("a form");
    };
    assert!(
        form.service
            .is_some_and(|s| s.url == SERVICE && s.entry.id == 1)
    );
    assert!(!form.lt.is_empty());
}

/// Each way a POST can fail shows the form again with its notice; success opens a
/// session with the cookie settings the form asked for.
#[tokio::test]
async fn each_post_outcome_says_what_to_show() {
    let cas = cas(ManualClock::new());
    let post = |lt: &'static str, password: &'static str| LoginForm {
        service: Some(SERVICE),
        username: "alice",
        password,
        lt,
        ..LoginForm::default()
    };
    let notice = |outcome: LoginOutcome<'_>| match outcome.view {
        LoginView::Form(form) => form.notice,
        other => panic!("{other:?}"),
    };
    let none = browser(None);

    assert_eq!(
        notice(cas.login_post(post("x", ""), none).await.unwrap()),
        Some(Notice::MissingCredentials)
    );
    assert_eq!(
        notice(cas.login_post(post("forged", "pw"), none).await.unwrap()),
        Some(Notice::FormInvalid)
    );
    let lt: &'static str = Box::leak(form_token(&cas, Some(SERVICE)).await.into_boxed_str());
    assert_eq!(
        notice(cas.login_post(post(lt, "nope"), none).await.unwrap()),
        Some(Notice::Rejected(Refusal::InvalidCredentials))
    );
    assert_eq!(
        notice(cas.login_post(post(lt, "pw"), none).await.unwrap()),
        Some(Notice::FormInvalid),
        "a form is used once"
    );
    let lt: &'static str = Box::leak(form_token(&cas, Some(SERVICE)).await.into_boxed_str());
    let other_browser = Browser {
        bindings: &["AnotherBrowserBinding0"],
        ..none
    };
    assert_eq!(
        notice(cas.login_post(post(lt, "pw"), other_browser).await.unwrap()),
        Some(Notice::FormInvalid),
        "login CSRF"
    );
    let lt: &'static str = Box::leak(form_token(&cas, Some(SERVICE)).await.into_boxed_str());
    let success = cas
        .login_post(
            LoginForm {
                warn: true,
                method: Some("POST"),
                ..post(lt, "pw")
            },
            none,
        )
        .await
        .unwrap();
    assert!(success.session.is_some());
    assert_eq!(success.warn_cookie, Some(true));
    let LoginView::Deliver(delivery) = success.view else {
        panic!("delivered");
    };
    assert_eq!(delivery.how, ResponseType::Post, "LOGIN-11");
    assert!(matches!(
        cas.login_post(
            LoginForm {
                service: Some("https://app.example.org/\r\nSet-Cookie: x"),
                ..post("x", "pw")
            },
            none
        )
        .await
        .unwrap()
        .view,
        LoginView::Refused(LoginRefusal::UnknownService)
    ));
}

/// The warn step (LOGIN-18) through the outcome: the step page, then the answer from the
/// same browser delivers the ticket, once.
#[tokio::test]
async fn the_warn_step_is_answered_once_by_the_browser_that_began_it() {
    let cas = cas(ManualClock::new());
    let (tgt_id, _) = sign_in(&cas, None).await;
    let warned = Browser {
        warn: true,
        ..browser(Some(&tgt_id))
    };
    let outcome = cas
        .login_get(get(Some(SERVICE), false, false), warned)
        .await
        .unwrap();
    let LoginView::Step(Step::Warn { token, service, .. }) = outcome.view else {
        panic!("{outcome:?}");
    };
    assert_eq!(service.url, SERVICE);
    assert!(token.starts_with("PL-"));
    let answer = LoginForm {
        service: Some(SERVICE),
        lt: &token,
        proceed: true,
        ..LoginForm::default()
    };

    let continued = cas.login_post(answer, warned).await.unwrap();
    let replayed = cas.login_post(answer, warned).await.unwrap();

    assert!(
        matches!(continued.view, LoginView::Deliver(_)),
        "{continued:?}"
    );
    assert!(matches!(
        replayed.view,
        LoginView::Form(Form {
            notice: Some(Notice::StartOver),
            ..
        })
    ));
}

/// A pending step answered from another browser (another binding, or another session)
/// starts over; so does one answered after the form's lifetime.
#[tokio::test]
async fn a_pending_step_from_another_browser_or_too_late_starts_over() {
    let clock = ManualClock::new();
    let cas = cas(clock.clone());
    let (tgt_id, _) = sign_in(&cas, None).await;
    let (other_tgt, _) = sign_in(&cas, None).await;
    let warned = Browser {
        warn: true,
        ..browser(Some(&tgt_id))
    };
    let begin = || async {
        match cas
            .login_get(get(Some(SERVICE), false, false), warned)
            .await
            .unwrap()
            .view
        {
            LoginView::Step(Step::Warn { token, .. }) => token,
            other => panic!("{other:?}"),
        }
    };
    let answer = |token| LoginForm {
        service: Some(SERVICE),
        lt: token,
        proceed: true,
        ..LoginForm::default()
    };
    let starts_over = |outcome: LoginOutcome<'_>| {
        matches!(
            outcome.view,
            LoginView::Form(Form {
                notice: Some(Notice::StartOver),
                ..
            })
        )
    };

    let token = begin().await;
    let thief = Browser {
        bindings: &["AnotherBrowserBinding0"],
        ..warned
    };
    assert!(starts_over(
        cas.login_post(answer(&token), thief).await.unwrap()
    ));
    let token = begin().await;
    let other_session = Browser {
        session: Some(&other_tgt),
        ..warned
    };
    assert!(starts_over(
        cas.login_post(answer(&token), other_session).await.unwrap()
    ));
    let token = begin().await;
    clock.advance(Duration::from_secs(901));
    assert!(starts_over(
        cas.login_post(answer(&token), warned).await.unwrap()
    ));
}

/// The registry, behind a double that counts lookups.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ServiceLookup>,
    finds: AtomicUsize,
}

impl ServiceLookup for Counting {
    fn find(&self, service: &str) -> Option<&RegisteredService> {
        self.finds.fetch_add(1, Ordering::Relaxed);
        self.inner.find(service)
    }

    fn by_id(&self, id: u32) -> Option<&RegisteredService> {
        self.inner.by_id(id)
    }
}

/// One request, one lookup of its service: a password login, an SSO login, and a warned
/// user's Continue each search the registry once.
#[tokio::test]
async fn the_service_is_looked_up_once_per_request() {
    let mut cas = cas(ManualClock::new());
    let counting = Arc::new(Counting {
        inner: cas.services.clone(),
        finds: AtomicUsize::new(0),
    });
    cas.services = counting.clone();
    let lt = form_token(&cas, Some(SERVICE)).await;
    let finds = || counting.finds.swap(0, Ordering::Relaxed);
    finds();

    let outcome = cas
        .login_post(
            LoginForm {
                service: Some(SERVICE),
                username: "alice",
                password: "pw",
                lt: &lt,
                method: Some("POST"),
                ..LoginForm::default()
            },
            browser(None),
        )
        .await
        .unwrap();
    assert!(matches!(outcome.view, LoginView::Deliver(_)));
    assert_eq!(finds(), 1, "password login");
    let tgt_id = outcome.session.unwrap().tgt_id;
    let warned = Browser {
        warn: true,
        ..browser(Some(&tgt_id))
    };
    let LoginView::Step(Step::Warn { token, .. }) = cas
        .login_get(get(Some(SERVICE), false, false), warned)
        .await
        .unwrap()
        .view
    else {
        panic!("the warn step");
    };
    assert_eq!(finds(), 1, "SSO");
    let answer = LoginForm {
        service: Some(SERVICE),
        lt: &token,
        proceed: true,
        ..LoginForm::default()
    };
    assert!(matches!(
        cas.login_post(answer, warned).await.unwrap().view,
        LoginView::Deliver(_)
    ));
    assert_eq!(finds(), 1, "Continue");
}

/// A shared attempt store that records what it is asked.
#[derive(Debug, Default)]
struct Recording(std::sync::Mutex<Vec<AttemptOp>>);

#[async_trait::async_trait]
impl AttemptStore for Recording {
    async fn attempts(
        &self,
        op: AttemptOp,
        _per_user: &str,
        _per_address: &str,
        _rules: AttemptRules,
        _now: time::OffsetDateTime,
    ) -> Result<Option<AttemptWait>, RegistryError> {
        self.0.lock().unwrap().push(op);
        Ok(None)
    }
}

/// One reservation per attempt, then its outcome: a success asks the throttle twice, a
/// wrong password once (the reservation already counted it), a refused form twice.
#[tokio::test]
async fn the_throttle_is_asked_once_per_attempt_and_once_for_its_outcome() {
    let mut cas = cas(ManualClock::new());
    let store = Arc::new(Recording::default());
    cas.throttle = Some(Arc::new(LoginThrottle::Shared {
        policy: ThrottlePolicy {
            threshold: 5,
            ip_threshold: 25,
            window: Duration::from_secs(600),
            ip_delay: Duration::from_secs(1),
            max_entries: 100,
        },
        store: store.clone(),
    }));
    let ops = || std::mem::take(&mut *store.0.lock().unwrap());
    let attempt = |lt, password| LoginForm {
        service: Some(SERVICE),
        username: "alice",
        password,
        lt,
        ..LoginForm::default()
    };

    let lt = form_token(&cas, Some(SERVICE)).await;
    cas.login_post(attempt(&lt, "pw"), browser(None))
        .await
        .unwrap();
    assert_eq!(ops(), vec![AttemptOp::Begin, AttemptOp::Succeeded]);
    let lt = form_token(&cas, Some(SERVICE)).await;
    cas.login_post(attempt(&lt, "nope"), browser(None))
        .await
        .unwrap();
    assert_eq!(ops(), vec![AttemptOp::Begin]);
    cas.login_post(attempt("forged", "pw"), browser(None))
        .await
        .unwrap();
    assert_eq!(ops(), vec![AttemptOp::Begin, AttemptOp::FormRefused]);
    assert!(IP.is_loopback());
}
