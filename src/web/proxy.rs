//! GET `/proxy` (§2.7): a proxy ticket for a PGT holder, answered by
//! [`Cas::proxy_document`](crate::protocol::Cas::proxy_document).

use axum::extract::State;
use axum::response::Response;

use super::client::ClientInfo;
use super::params::{CasParams, Rejected};
use super::state::AppState;
use super::validate::document;

pub async fn get_proxy(
    State(state): State<AppState>,
    client: ClientInfo,
    params: Result<CasParams, Rejected>,
) -> Response {
    let answer = match &params {
        Err(rejected) => {
            let why = rejected.to_string();
            state
                .cas
                .proxy_document(None, None, Some(&why), client.ip)
                .await
        }
        Ok(CasParams(params)) => {
            let (pgt, target) = (params.get("pgt"), params.get("targetService"));
            state.cas.proxy_document(pgt, target, None, client.ip).await
        }
    };
    document(answer)
}
