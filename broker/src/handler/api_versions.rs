//! ApiVersions: what we implement, from `SUPPORTED_APIS`.
//!
//! No tagged fields are ever set: kcat's librdkafka 2.0.2 mis-skips non-empty tagged fields in
//! ApiVersions v3 responses and then fails the connection.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::SUPPORTED_APIS;

/// With SASL on, the SASL APIs come last (Kafka lists by key; clients look APIs up by key).
fn advertised(sasl: bool) -> Vec<ApiVersion> {
    let sasl_apis: &[_] = if sasl { crate::sasl::SASL_APIS } else { &[] };
    SUPPORTED_APIS
        .iter()
        .chain(sasl_apis)
        .map(|&(api_key, min, max)| {
            ApiVersion::default()
                .with_api_key(api_key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(_version: i16, _request: ApiVersionsRequest, sasl: bool) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(advertised(sasl))
}

/// KIP-511: a client that sent a newer ApiVersions than we know gets a v0 response with
/// UNSUPPORTED_VERSION and our versions, and retries with the highest version we listed.
pub fn unsupported_version_response(sasl: bool) -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(advertised(sasl)),
    )
}
