//! The part of the server's test harness (`tests/it/support`) the bench's tests need: the
//! real server in process on an ephemeral loopback port, with alice and one service.

use std::collections::HashMap;
use std::sync::Arc;

use cas_server::App;
use cas_server::clock::ManualClock;
use cas_server::config::{self, Source};
use tokio::sync::oneshot;

pub const PASSWORD: &str = "correct horse";
/// Registered through `prefix:https://app.example.org/`; its own query must survive.
pub const SERVICE: &str = "https://app.example.org/cas/login?next=%2Fhome&b=2";
pub const FOREIGN_SERVICE: &str = "https://evil.example.net/";

const CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"

[tgc]
# The harness speaks plain HTTP on loopback.
secure = false

[[users]]
username = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$7iJDdl4r0xSxRGj8hZDUXA$KmYgRMhG+H6ZYmIgJVw20xver4W41x1YCS7p9u8wLyQ"

[[services]]
id = 1
name = "Example App"
pattern = "prefix:https://app.example.org/"
"#;

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    /// `http://127.0.0.1:PORT/cas`
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        let settings = config::load_with_env(
            Source::Text {
                name: "test config",
                text: CONFIG,
            },
            &HashMap::new(),
        )
        .expect("the test configuration is valid");
        // A clock that stands still, as in the server's harness: no ticket expires mid-run.
        let app = App::build(settings, Arc::new(ManualClock::new()))
            .await
            .expect("the server starts");
        let base = app.url();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        Self {
            base,
            shutdown: Some(tx),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
