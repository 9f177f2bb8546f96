//! From a request's cookies to the TGT id of its SSO session, if it has a valid one.

use axum::http::HeaderMap;

use super::client::ClientInfo;
use super::state::AppState;

/// The TGT id carried by a valid TGC pinned to this client. Tampered, foreign or
/// mispinned cookies are "no session", logged at debug with the reason only.
pub fn current_session(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
) -> Option<String> {
    let ip = client.ip.to_string();
    for value in state.cookie.values(headers) {
        match state.tgc.decode(value, &ip, &client.user_agent) {
            Ok(tgt) => return Some(tgt),
            Err(e) => tracing::debug!(reason = %e, "ignoring ticket-granting cookie"),
        }
    }
    None
}
