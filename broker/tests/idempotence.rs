//! Idempotent producers over the wire: InitProducerId, duplicates, gaps and fencing.

mod common;

use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

async fn producer_id(client: &mut Client) -> i64 {
    let response = client
        .call(
            4,
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    response.producer_id.0
}

#[tokio::test]
async fn each_init_producer_id_hands_out_a_new_id() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let first = producer_id(&mut client).await;
    let second = producer_id(&mut client).await;
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_transactional_id_is_refused_until_transactions_exist() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = client.call(4, request).await;
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
}

#[tokio::test]
async fn a_retried_batch_is_acknowledged_with_its_original_offset_and_stored_once() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let id = producer_id(&mut client).await;
    produce(&mut client, "t", 0, batch(2, 1)).await;
    let first = produce(&mut client, "t", 0, idempotent_batch(id, 0, 0, 3)).await;
    let second = produce(&mut client, "t", 0, idempotent_batch(id, 0, 3, 3)).await;
    let retry = produce(&mut client, "t", 0, idempotent_batch(id, 0, 0, 3)).await;
    assert_eq!((first.error_code, first.base_offset), (0, 2));
    assert_eq!((second.error_code, second.base_offset), (0, 5));
    assert_eq!(
        (retry.error_code, retry.base_offset),
        (0, 2),
        "the original offset, no error"
    );
    let data = fetch(&mut client, fetch_request("t", 0, 0)).await;
    assert_eq!(data.high_watermark, 8, "the retry was not appended again");
}

#[tokio::test]
async fn a_sequence_gap_is_out_of_order_and_appends_nothing() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let id = producer_id(&mut client).await;
    produce(&mut client, "t", 0, idempotent_batch(id, 0, 0, 2)).await;
    let gap = produce(&mut client, "t", 0, idempotent_batch(id, 0, 5, 1)).await;
    assert_eq!(
        gap.error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(
        fetch(&mut client, fetch_request("t", 0, 0))
            .await
            .high_watermark,
        2
    );
}

#[tokio::test]
async fn an_older_epoch_is_fenced_and_a_newer_one_starts_at_sequence_zero() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let id = producer_id(&mut client).await;
    produce(&mut client, "t", 0, idempotent_batch(id, 3, 0, 1)).await;
    let stale = produce(&mut client, "t", 0, idempotent_batch(id, 2, 1, 1)).await;
    assert_eq!(stale.error_code, ResponseError::InvalidProducerEpoch.code());
    let bad_start = produce(&mut client, "t", 0, idempotent_batch(id, 4, 7, 1)).await;
    assert_eq!(
        bad_start.error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let bumped = produce(&mut client, "t", 0, idempotent_batch(id, 4, 0, 1)).await;
    assert_eq!((bumped.error_code, bumped.base_offset), (0, 1));
}

#[tokio::test]
async fn sequences_are_tracked_per_partition() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "t", 2).await;
    let id = producer_id(&mut client).await;
    assert_eq!(
        produce(&mut client, "t", 0, idempotent_batch(id, 0, 0, 1))
            .await
            .error_code,
        0
    );
    assert_eq!(
        produce(&mut client, "t", 1, idempotent_batch(id, 0, 0, 1))
            .await
            .error_code,
        0
    );
    assert_eq!(
        produce(&mut client, "t", 1, idempotent_batch(id, 0, 1, 1))
            .await
            .error_code,
        0
    );
}
