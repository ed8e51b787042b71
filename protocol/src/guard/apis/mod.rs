//! One table file per Kafka API, named after it, each holding the `REQUEST` and `RESPONSE`
//! schemas as `kafka-protocol` 0.18 decodes them (which is not always Kafka's latest schema:
//! the crate's version ranges and fields are what matter here). The lists below are everything
//! the guard knows.
//!
//! The tables were drafted from the crate's generated `decode` functions and reviewed by hand;
//! what vouches for them is the tests, which generate bodies from each table and require the
//! crate to decode and re-encode them byte for byte.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_transactions;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
mod txn_offset_commit;

use super::schema::Message;

/// Every request schema; one per API key.
pub(crate) static REQUESTS: &[&Message] = &[
    &produce::REQUEST,
    &fetch::REQUEST,
    &list_offsets::REQUEST,
    &metadata::REQUEST,
    &offset_commit::REQUEST,
    &offset_fetch::REQUEST,
    &find_coordinator::REQUEST,
    &join_group::REQUEST,
    &heartbeat::REQUEST,
    &leave_group::REQUEST,
    &sync_group::REQUEST,
    &describe_groups::REQUEST,
    &list_groups::REQUEST,
    &sasl_handshake::REQUEST,
    &api_versions::REQUEST,
    &create_topics::REQUEST,
    &delete_topics::REQUEST,
    &delete_records::REQUEST,
    &init_producer_id::REQUEST,
    &offset_for_leader_epoch::REQUEST,
    &add_partitions_to_txn::REQUEST,
    &add_offsets_to_txn::REQUEST,
    &end_txn::REQUEST,
    &txn_offset_commit::REQUEST,
    &describe_configs::REQUEST,
    &alter_configs::REQUEST,
    &sasl_authenticate::REQUEST,
    &create_partitions::REQUEST,
    &delete_groups::REQUEST,
    &incremental_alter_configs::REQUEST,
    &offset_delete::REQUEST,
    &describe_cluster::REQUEST,
    &describe_transactions::REQUEST,
    &list_transactions::REQUEST,
];

/// Every response schema; one per API key.
pub(crate) static RESPONSES: &[&Message] = &[
    &produce::RESPONSE,
    &fetch::RESPONSE,
    &list_offsets::RESPONSE,
    &metadata::RESPONSE,
    &offset_commit::RESPONSE,
    &offset_fetch::RESPONSE,
    &find_coordinator::RESPONSE,
    &join_group::RESPONSE,
    &heartbeat::RESPONSE,
    &leave_group::RESPONSE,
    &sync_group::RESPONSE,
    &describe_groups::RESPONSE,
    &list_groups::RESPONSE,
    &sasl_handshake::RESPONSE,
    &api_versions::RESPONSE,
    &create_topics::RESPONSE,
    &delete_topics::RESPONSE,
    &delete_records::RESPONSE,
    &init_producer_id::RESPONSE,
    &offset_for_leader_epoch::RESPONSE,
    &add_partitions_to_txn::RESPONSE,
    &add_offsets_to_txn::RESPONSE,
    &end_txn::RESPONSE,
    &txn_offset_commit::RESPONSE,
    &describe_configs::RESPONSE,
    &alter_configs::RESPONSE,
    &sasl_authenticate::RESPONSE,
    &create_partitions::RESPONSE,
    &delete_groups::RESPONSE,
    &incremental_alter_configs::RESPONSE,
    &offset_delete::RESPONSE,
    &describe_cluster::RESPONSE,
    &describe_transactions::RESPONSE,
    &list_transactions::RESPONSE,
];

pub(crate) fn request(api_key: i16) -> Option<&'static Message> {
    find(REQUESTS, api_key)
}

pub(crate) fn response(api_key: i16) -> Option<&'static Message> {
    find(RESPONSES, api_key)
}

fn find(messages: &'static [&'static Message], api_key: i16) -> Option<&'static Message> {
    messages
        .iter()
        .copied()
        .find(|message| message.api_key == api_key)
}
