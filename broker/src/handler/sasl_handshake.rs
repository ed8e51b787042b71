//! SaslHandshake on a connection that is not authenticating: a PLAINTEXT listener, or a SASL
//! one after its log-in. Kafka's request handler answers ILLEGAL_SASL_STATE with no
//! mechanisms; the exchange itself lives in `crate::sasl`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

pub fn handle(_request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}
