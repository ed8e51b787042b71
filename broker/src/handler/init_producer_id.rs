//! InitProducerId: a fresh producer id at epoch 0 for idempotent producers. Transactional ids
//! are refused until transactions are implemented.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::server::Node;

pub fn handle(node: &Node, request: InitProducerIdRequest) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        // Not retriable on purpose: a client must learn at once that this broker has no
        // transaction coordinator rather than retry until its timeout.
        return InitProducerIdResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // Kafka hands a non-transactional producer a new id whatever id and epoch it presents.
    match node.cluster.allocate_producer_id() {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(refusal) => InitProducerIdResponse::default()
            .with_error_code(refusal.error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
