//! A plain-HTTP loopback application that records what CAS sends it: back-channel
//! logout POSTs (and anything else). `/…/slow…` paths answer only after 30 s, `/…/lag…`
//! paths after 100 ms.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub content_type: String,
    /// The decoded `logoutRequest` form field, if the body had one.
    pub logout_request: Option<String>,
    /// A form field `name` of the body (a ticket delivered by method=POST).
    pub form: Vec<(String, String)>,
    pub query: String,
}

type Log = Arc<Mutex<Vec<Received>>>;

pub struct Receiver {
    pub port: u16,
    log: Log,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let log: Log = Arc::default();
        let app = Router::new().fallback(record).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            port,
            log,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until at least `n` requests arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..250 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn record(
    State(log): State<Log>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Html<&'static str> {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let logout_request = form
        .iter()
        .find(|(k, _)| k == "logoutRequest")
        .map(|(_, v)| v.clone());
    let path = uri.path().to_owned();
    log.lock().unwrap().push(Received {
        method,
        path: path.clone(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        logout_request,
        form,
        query: uri.query().unwrap_or_default().to_owned(),
    });
    if path.contains("/slow") {
        tokio::time::sleep(Duration::from_secs(30)).await;
    } else if path.contains("/lag") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    axum::response::Html(
        "<!DOCTYPE html><html lang=\"en\"><title>App</title><p id=\"app\">application page</p></html>",
    )
}
