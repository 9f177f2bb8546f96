//! `/validate`, `/serviceValidate`, `/proxyValidate`, `/p3/serviceValidate`,
//! `/p3/proxyValidate`: the parameters become a [`ValidationCall`], answered by
//! [`Cas::validation_document`](crate::protocol::Cas::validation_document) with HTTP 200
//! for success and failure alike (GEN-04).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::client::ClientInfo;
use super::params::{CasParams, Params, Rejected};
use super::state::AppState;
use crate::protocol::{Document, Endpoint, ValidationCall, ValidationRequest};

async fn validate(
    state: &AppState,
    client: &ClientInfo,
    endpoint: Endpoint,
    params: Result<CasParams, Rejected>,
) -> Response {
    let empty = Params::default();
    let refused = params.as_ref().err().map(ToString::to_string);
    let params = params.as_ref().map_or(&empty, |CasParams(p)| p);
    let call = ValidationCall {
        endpoint,
        request: ValidationRequest {
            service: params.get("service"),
            ticket: params.get("ticket"),
            renew: params.has("renew"),
            pgt_url: params.get("pgtUrl"),
        },
        format: params.get("format"),
        refused: refused.as_deref(),
        ip: client.ip,
    };
    document(state.cas.validation_document(call).await)
}

pub(super) fn document(document: Document) -> Response {
    ([(CONTENT_TYPE, document.content_type)], document.body).into_response()
}

macro_rules! endpoint_handler {
    ($name:ident, $endpoint:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            client: ClientInfo,
            params: Result<CasParams, Rejected>,
        ) -> Response {
            validate(&state, &client, $endpoint, params).await
        }
    };
}

endpoint_handler!(cas1_validate, Endpoint::Cas1);
endpoint_handler!(service_validate, Endpoint::ServiceValidate);
endpoint_handler!(proxy_validate, Endpoint::ProxyValidate);
endpoint_handler!(p3_service_validate, Endpoint::P3ServiceValidate);
endpoint_handler!(p3_proxy_validate, Endpoint::P3ProxyValidate);
