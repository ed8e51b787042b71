//! ApiVersions: what we implement, from `SUPPORTED_APIS`.
//!
//! No tagged fields are ever set: kcat's librdkafka 2.0.2 mis-skips non-empty tagged fields in
//! ApiVersions v3 responses and then fails the connection.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::SUPPORTED_APIS;

fn advertised() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|&(api_key, min, max)| {
            ApiVersion::default()
                .with_api_key(api_key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(_version: i16, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(advertised())
}

/// KIP-511: a client that sent a newer ApiVersions than we know gets a v0 response with
/// UNSUPPORTED_VERSION and our versions, and retries with the highest version we listed.
pub fn unsupported_version_response() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(advertised()),
    )
}
