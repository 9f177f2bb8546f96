//! `/validate`, `/serviceValidate`, `/proxyValidate`, `/p3/serviceValidate`,
//! `/p3/proxyValidate`: success and failure documents alike are HTTP 200 (GEN-04).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::params::{CasParams, Params, Rejected};
use super::state::AppState;
use crate::protocol::{
    Endpoint, ErrorCode, Failure, Format, ValidationRequest, json, render_cas1, xml,
};
use crate::telemetry::audit;

/// A request the filter refused is answered INVALID_REQUEST in the endpoint's own
/// format, before any ticket is touched.
pub async fn validate(
    state: &AppState,
    client: &ClientInfo,
    endpoint: Endpoint,
    params: Result<&Params, &Rejected>,
) -> Response {
    let empty = Params::default();
    let (params, refused) = match params {
        Ok(params) => (params, None),
        Err(rejected) => (&empty, Some(rejected)),
    };
    let ticket = params.get("ticket");
    let service = params.get("service");
    let format = if endpoint == Endpoint::Cas1 {
        Ok(Format::Xml)
    } else {
        Format::parse(params.get("format"))
    };
    let chosen = format.as_ref().copied().unwrap_or_default();
    let outcome = match (format, refused) {
        (_, Some(rejected)) => Err(Failure::new(
            ErrorCode::InvalidRequest,
            rejected.to_string(),
        )),
        (Err(failure), None) => Err(failure),
        (Ok(_), None) => {
            let request = ValidationRequest {
                service,
                ticket,
                renew: params.has("renew"),
                pgt_url: params.get("pgtUrl"),
            };
            state.cas.validate(endpoint, request).await
        }
    };
    audit::ticket_validated(
        ticket,
        endpoint.path(),
        service,
        outcome
            .as_ref()
            .map(|s| s.user.as_str())
            .map_err(|f| f.code.as_str()),
        client.ip,
    );
    match (endpoint, chosen) {
        (Endpoint::Cas1, _) => (
            [(CONTENT_TYPE, "text/plain; charset=UTF-8")],
            render_cas1(&outcome),
        )
            .into_response(),
        (_, Format::Json) => (
            [(CONTENT_TYPE, "application/json")],
            match &outcome {
                Ok(success) => json::authentication_success(success),
                Err(failure) => json::authentication_failure(failure),
            },
        )
            .into_response(),
        (_, Format::Xml) => (
            [(CONTENT_TYPE, "application/xml; charset=UTF-8")],
            match &outcome {
                Ok(success) => xml::authentication_success(success),
                Err(failure) => xml::authentication_failure(failure),
            },
        )
            .into_response(),
    }
}

macro_rules! endpoint_handler {
    ($name:ident, $endpoint:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            client: ClientInfo,
            params: Result<CasParams, Rejected>,
        ) -> Response {
            let params = params.map(|CasParams(p)| p);
            validate(&state, &client, $endpoint, params.as_ref()).await
        }
    };
}

endpoint_handler!(cas1_validate, Endpoint::Cas1);
endpoint_handler!(service_validate, Endpoint::ServiceValidate);
endpoint_handler!(proxy_validate, Endpoint::ProxyValidate);
endpoint_handler!(p3_service_validate, Endpoint::P3ServiceValidate);
endpoint_handler!(p3_proxy_validate, Endpoint::P3ProxyValidate);
