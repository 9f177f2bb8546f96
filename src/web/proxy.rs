//! GET `/proxy` (§2.7): a proxy ticket for a PGT holder. XML only (PROXY-08), HTTP 200
//! for success and failure alike (GEN-04).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::error::WebError;
use super::params::CasParams;
use super::state::AppState;
use crate::protocol::{ErrorCode, Failure, xml};
use crate::telemetry::audit;

pub async fn get_proxy(
    State(state): State<AppState>,
    client: ClientInfo,
    params: Result<CasParams, WebError>,
) -> Response {
    let outcome = match params {
        Err(_) => Err(Failure::new(
            ErrorCode::InvalidRequest,
            "the request could not be read",
        )),
        Ok(CasParams(params)) => match params.repeated(&["pgt", "targetService"]) {
            Some(name) => Err(Failure::new(
                ErrorCode::InvalidRequest,
                format!("parameter '{name}' was given more than once"),
            )),
            None => {
                let target = params.get("targetService");
                let outcome = state.cas.proxy(params.get("pgt"), target).await;
                audit::proxy_ticket_issued(
                    outcome.as_deref().map_err(|f| f.code.as_str()),
                    target,
                    client.ip,
                );
                outcome
            }
        },
    };
    let body = match &outcome {
        Ok(ticket) => xml::proxy_success(ticket),
        Err(failure) => xml::proxy_failure(failure),
    };
    ([(CONTENT_TYPE, "application/xml; charset=UTF-8")], body).into_response()
}
