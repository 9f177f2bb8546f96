//! GET `/proxy` (§2.7): a proxy ticket for a PGT holder. XML only (PROXY-08), HTTP 200
//! for success and failure alike (GEN-04).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::params::{CasParams, Rejected};
use super::state::AppState;
use crate::protocol::{ErrorCode, Failure, xml};
use crate::telemetry::audit;

pub async fn get_proxy(
    State(state): State<AppState>,
    client: ClientInfo,
    params: Result<CasParams, Rejected>,
) -> Response {
    let outcome = match params {
        Err(rejected) => Err(Failure::new(
            ErrorCode::InvalidRequest,
            rejected.to_string(),
        )),
        Ok(CasParams(params)) => {
            let target = params.get("targetService");
            let outcome = state.cas.proxy(params.get("pgt"), target).await;
            audit::proxy_ticket_issued(
                outcome.as_deref().map_err(|f| f.code.as_str()),
                target,
                client.ip,
            );
            outcome
        }
    };
    let body = match &outcome {
        Ok(ticket) => xml::proxy_success(ticket),
        Err(failure) => xml::proxy_failure(failure),
    };
    ([(CONTENT_TYPE, "application/xml; charset=UTF-8")], body).into_response()
}
