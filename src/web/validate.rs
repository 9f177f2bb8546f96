//! `/validate`, `/serviceValidate`, `/proxyValidate`, `/p3/serviceValidate`,
//! `/p3/proxyValidate`: success and failure documents alike are HTTP 200 (GEN-04).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::error::WebError;
use super::params::{CasParams, Params};
use super::state::AppState;
use crate::protocol::{
    Endpoint, ErrorCode, Failure, Format, ValidationRequest, json, render_cas1, xml,
};
use crate::telemetry::audit;

const VALIDATION_PARAMS: &[&str] = &["service", "ticket", "renew", "format", "pgtUrl"];

/// `params` is `None` when the request itself could not be read (oversized or non-UTF-8
/// body): that is answered with INVALID_REQUEST in the endpoint's own format.
pub async fn validate(
    state: &AppState,
    client: &ClientInfo,
    endpoint: Endpoint,
    params: Option<&Params>,
) -> Response {
    let empty = Params::default();
    let unreadable = params.is_none();
    let params = params.unwrap_or(&empty);
    let ticket = params.get("ticket");
    let service = params.get("service");
    let format = if endpoint == Endpoint::Cas1 {
        Ok(Format::Xml)
    } else {
        Format::parse(params.get("format"))
    };
    let chosen = format.as_ref().copied().unwrap_or_default();
    let outcome = match (format, params.repeated(VALIDATION_PARAMS)) {
        (Err(failure), _) => Err(failure),
        (Ok(_), _) if unreadable => Err(Failure::new(
            ErrorCode::InvalidRequest,
            "the request could not be read",
        )),
        (Ok(_), Some(name)) => Err(Failure::new(
            ErrorCode::InvalidRequest,
            format!("parameter '{name}' was given more than once"),
        )),
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
            params: Result<CasParams, WebError>,
        ) -> Response {
            let params = params.ok().map(|CasParams(p)| p);
            validate(&state, &client, $endpoint, params.as_ref()).await
        }
    };
}

endpoint_handler!(cas1_validate, Endpoint::Cas1);
endpoint_handler!(service_validate, Endpoint::ServiceValidate);
endpoint_handler!(proxy_validate, Endpoint::ProxyValidate);
endpoint_handler!(p3_service_validate, Endpoint::P3ServiceValidate);
endpoint_handler!(p3_proxy_validate, Endpoint::P3ProxyValidate);
