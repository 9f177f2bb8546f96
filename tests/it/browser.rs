//! The login flows in a real headless Chromium: what a person sees and does.

use crate::support::chrome::Chrome;
use crate::support::receiver::Receiver;
use crate::support::*;

/// The login URL of `server` for `service`, as an application redirects a person to it.
fn login_url(server: &TestServer, service: &str) -> String {
    format!("{}/login?service={}", server.base, encode(service))
}

/// The applications' receiver, a CAS server, and an English Chromium on a fresh profile
/// (returned so that it lives as long as the browser).
async fn start_apps_server_and_chrome() -> (Receiver, TestServer, tempfile::TempDir, Chrome) {
    let apps = Receiver::start().await;
    let server = TestServer::start().await;
    let profile = tempfile::tempdir().unwrap();
    let chrome = Chrome::start(profile.path(), "en").await;
    (apps, server, profile, chrome)
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Signs in to application A through the form and lands there with a ticket; reaches B
/// without seeing the form; signs out, and A asks again. Keeps a screenshot of the
/// login page under target/browser-artifacts/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_uses_two_applications_and_signs_out() {
    let (apps, server, _profile, chrome) = start_apps_server_and_chrome().await;
    let a = apps.url("/one/home");
    let b = apps.url("/two/home");

    chrome.goto(&login_url(&server, &a)).await;
    assert!(
        chrome
            .text()
            .await
            .contains("You are signing in to Loopback app one")
    );
    let shot = chrome.screenshot("login.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    chrome.sign_in("alice", PASSWORD, &[]).await;
    let landed = chrome.wait_for_url(&a).await;
    let ticket = ticket_in(&landed);
    assert_validates_as(&server, &a, &ticket, "alice").await;

    chrome.goto(&login_url(&server, &b)).await;
    let landed = chrome.wait_for_url(&b).await;
    assert!(landed.contains("ticket=ST-"), "B without a form: {landed}");

    chrome.goto(&format!("{}/logout", server.base)).await;
    assert!(chrome.text().await.contains("You have been signed out"));
    chrome.goto(&login_url(&server, &a)).await;
    assert!(chrome.has("#password").await, "signed out: the form again");
    chrome.quit().await;
}

/// Remember-me survives closing the browser; a plain session does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_me_survives_a_browser_restart_and_a_plain_session_does_not() {
    let apps = Receiver::start().await;
    let server = TestServer::start_with(|s| {
        s.sso.remember_me = Some(std::time::Duration::from_secs(14 * 86_400))
    })
    .await;
    let a = apps.url("/one/home");
    let login_a = login_url(&server, &a);

    for (remember, expect_sso) in [(true, true), (false, false)] {
        let profile = tempfile::tempdir().unwrap();
        let first = Chrome::start(profile.path(), "en").await;
        first.goto(&login_a).await;
        let boxes: &[&str] = if remember { &["rememberMe"] } else { &[] };
        first.sign_in("alice", PASSWORD, boxes).await;
        first.wait_for_url(&a).await;
        first.quit().await;

        let second = Chrome::start(profile.path(), "en").await;
        second.goto(&login_a).await;
        if expect_sso {
            let landed = second.wait_for_url(&a).await;
            assert!(landed.contains("ticket=ST-"), "remembered: {landed}");
        } else {
            assert!(
                second.has("#password").await,
                "a plain session ends with the browser"
            );
        }
        second.quit().await;
    }
}

/// "Warn me": the next application shows the interstitial; Continue goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_shows_the_interstitial_in_the_browser() {
    let (apps, server, _profile, chrome) = start_apps_server_and_chrome().await;
    let a = apps.url("/one/home");
    let b = apps.url("/two/home");

    chrome.goto(&login_url(&server, &a)).await;
    chrome.sign_in("alice", PASSWORD, &["warn"]).await;
    chrome.wait_for_url(&a).await;
    chrome.goto(&login_url(&server, &b)).await;
    assert!(
        chrome
            .text()
            .await
            .contains("You are about to be signed in to Loopback app two")
    );
    chrome.click("button[type=submit]").await;
    let landed = chrome.wait_for_url(&b).await;
    assert!(landed.contains("ticket=ST-"));
    chrome.quit().await;
}

/// method=POST: the page posts the ticket to the application by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_post_delivers_the_ticket_by_form_post() {
    let (apps, server, _profile, chrome) = start_apps_server_and_chrome().await;
    let a = apps.url("/one/posted");

    chrome
        .goto(&format!(
            "{}/login?method=POST&service={}",
            server.base,
            encode(&a)
        ))
        .await;
    chrome.sign_in("alice", PASSWORD, &[]).await;
    chrome.wait_for_url(&a).await;

    let posts: Vec<_> = apps
        .received()
        .into_iter()
        .filter(|r| r.method == reqwest::Method::POST && r.path == "/one/posted")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let ticket = posts[0]
        .form
        .iter()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.clone())
        .expect("a ticket field");
    assert!(!posts[0].query.contains("ticket"), "not in the URL");
    assert_validates_as(&server, &a, &ticket, "alice").await;
    chrome.quit().await;
}

/// A browser set to French gets French pages; the page passes in-browser accessibility
/// checks (language, labels, contrast of the rendered button and text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_french_browser_gets_french_pages_that_pass_accessibility_checks() {
    let server = TestServer::start().await;
    let profile = tempfile::tempdir().unwrap();
    let chrome = Chrome::start(profile.path(), "fr").await;

    chrome.goto(&format!("{}/login", server.base)).await;
    let text = chrome.text().await;
    assert!(
        text.contains("Connexion") && text.contains("Mot de passe"),
        "{text}"
    );

    let report = chrome
        .client
        .execute(
            r#"
            const problems = [];
            if (!document.documentElement.lang) problems.push("no lang");
            for (const input of document.querySelectorAll("input:not([type=hidden])")) {
                if (!input.id || !document.querySelector(`label[for="${input.id}"]`)) problems.push("unlabelled " + input.name);
            }
            const rgb = c => c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
            const lum = c => { const [r, g, b] = rgb(c).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
            const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
            const button = getComputedStyle(document.querySelector("button"));
            if (ratio(button.color, button.backgroundColor) < 4.5) problems.push("button contrast");
            const card = getComputedStyle(document.querySelector("main"));
            const label = getComputedStyle(document.querySelector("label"));
            if (ratio(label.color, card.backgroundColor) < 4.5) problems.push("label contrast");
            return problems;
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(report, serde_json::json!([]), "accessibility problems");
    chrome.quit().await;
}

/// Two nodes on one Redis, as behind a load balancer: Chromium signs in on node A, is
/// recognised by node B without a form, and signing out on B signs it out of A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_moves_between_two_nodes_sharing_one_redis() {
    let apps = Receiver::start().await;
    let redis = crate::support::redis::RedisServer::start(false).await;
    let keys = ClusterKeys::generate();
    let node = || keys.redis_settings(&redis.url(), "cas-browser:");
    let a = TestServer::start_settings(node()).await;
    let b = TestServer::start_settings(node()).await;
    let profile = tempfile::tempdir().unwrap();
    let chrome = Chrome::start(profile.path(), "en").await;
    let one = apps.url("/one/home");
    let two = apps.url("/two/home");

    chrome.goto(&login_url(&a, &one)).await;
    chrome.sign_in("alice", PASSWORD, &[]).await;
    let landed = chrome.wait_for_url(&one).await;
    assert_validates_as(&b, &one, &ticket_in(&landed), "alice").await;

    chrome.goto(&login_url(&b, &two)).await;
    let landed = chrome.wait_for_url(&two).await;
    assert_validates_as(&a, &two, &ticket_in(&landed), "alice").await;

    chrome.goto(&format!("{}/logout", b.base)).await;
    assert!(chrome.text().await.contains("You have been signed out"));
    chrome.goto(&login_url(&a, &one)).await;
    assert!(chrome.has("#password").await, "signed out on A too");
    chrome.quit().await;
}
