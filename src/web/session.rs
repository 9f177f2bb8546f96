//! From a request's cookies to the TGT id of its SSO session, if it has a valid one.

use axum::http::HeaderMap;

use super::client::ClientInfo;
use super::state::AppState;

/// Cookie values examined per request: a browser sends one, or two when a sibling
/// domain planted another; more is an attack on the decoder, not a session.
const MAX_VALUES: usize = 4;

/// The TGT id carried by a valid TGC pinned to this client. Tampered, foreign or
/// mispinned cookies are "no session", logged at debug with the reason only.
///
/// When several valid values name different sessions, none is used: one was planted
/// (a cookie tossed from a sibling subdomain, which the browser sends beside its own),
/// and choosing either could sign the user into the attacker's account. The user signs
/// in again, and the new cookie replaces the browser's own.
pub fn current_session(
    state: &AppState,
    headers: &HeaderMap,
    client: &ClientInfo,
) -> Option<String> {
    let ip = client.ip.to_string();
    let mut found: Option<String> = None;
    for value in state.cookie.values(headers).into_iter().take(MAX_VALUES) {
        match state.tgc.decode(value, &ip, &client.user_agent) {
            Ok(tgt) => match &found {
                Some(first) if *first != tgt => {
                    tracing::warn!(
                        client = %client.ip,
                        "two valid SSO cookies name different sessions (one was planted); using neither"
                    );
                    return None;
                }
                _ => found = Some(tgt),
            },
            Err(e) => tracing::debug!(reason = %e, "ignoring ticket-granting cookie"),
        }
    }
    found
}
