//! `GET /health`: UP while the ticket store answers and takes writes, DOWN (503)
//! otherwise, for load balancers; with the authentication sources' reachability and the
//! counters an operator watches.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::state::AppState;

pub async fn health(State(state): State<AppState>) -> Response {
    let registry = state.cas.tickets.check().await;
    let registry_ok = registry.is_ok();
    // Out of memory or a replica: Redis answers, but no one can log in.
    let refuses_writes = matches!(
        registry,
        Err(crate::tickets::RegistryError::RefusesWrites(_))
    );
    let directories: Vec<_> = state
        .cas
        .authenticator
        .health()
        .await
        .into_iter()
        .map(|d| serde_json::json!({ "name": d.name, "reachable": d.reachable }))
        .collect();
    let status = if registry_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = report(&state, registry_ok, refuses_writes, directories);
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The JSON body: store and directories, connection and single-logout counters.
fn report(
    state: &AppState,
    registry_ok: bool,
    refuses_writes: bool,
    directories: Vec<serde_json::Value>,
) -> serde_json::Value {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({
        "status": if registry_ok { "UP" } else { "DOWN" },
        "version": env!("CARGO_PKG_VERSION"),
        "tickets": {
            "store": state.cas.tickets.store(),
            "reachable": registry_ok || refuses_writes,
            "writable": registry_ok,
        },
        "directories": directories,
        "connections": {
            "open": load(&state.connections.open),
            "refused": load(&state.connections.refused),
            "reclaimed": load(&state.connections.reclaimed),
        },
        "single_logout": {
            "sent": load(&state.slo.sent),
            "failed": load(&state.slo.failed),
            "dropped": load(&state.slo.dropped),
            "forgotten": load(&state.slo.forgotten),
        },
    })
}
