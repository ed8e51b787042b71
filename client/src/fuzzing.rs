//! The client's reading of a broker's answer, reachable from the `client_response` fuzz target
//! (`fuzz/`), which plays a hostile broker. Not part of the client's API.
//!
//! [`read_answer`] takes an answer frame to a request the client sends and reads it the way the
//! connection and its callers do: the response header, the guard and `kafka-protocol`'s decoder
//! (`conn.rs`), then the parts of the answer the client parses further itself — a Fetch
//! answer's record batches (`consumer/fetcher.rs`), JoinGroup and DescribeGroups member
//! subscriptions, SyncGroup and DescribeGroups assignments (`consumer/protocol.rs`).

use bytes::Bytes;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, FetchRequest, FetchResponse, FindCoordinatorRequest, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{HeaderVersion, Request};

use crate::conn::{decode_body, strip_response_header};
use crate::consumer::fetcher::{self, FetchPlan};
use crate::consumer::protocol;
use crate::types::TopicPartition;
use crate::versions::{self, Range};

/// ApiVersions as the connection asks it: from v3 down to what the broker offers.
const API_VERSIONS: Range = (0, 3);
/// The SASL log-in's versions (`sasl.rs`).
const SASL_HANDSHAKE: Range = (1, 1);
const SASL_AUTHENTICATE: Range = (0, 2);

/// Every request the client sends: its API key and the versions it may send it at.
pub const REQUESTS: &[(i16, Range)] = &[
    (ProduceRequest::KEY, versions::PRODUCE),
    (FetchRequest::KEY, versions::FETCH),
    (ListOffsetsRequest::KEY, versions::LIST_OFFSETS),
    (MetadataRequest::KEY, versions::METADATA),
    (OffsetCommitRequest::KEY, versions::OFFSET_COMMIT),
    (OffsetFetchRequest::KEY, versions::OFFSET_FETCH),
    (FindCoordinatorRequest::KEY, versions::FIND_COORDINATOR),
    (JoinGroupRequest::KEY, versions::JOIN_GROUP),
    (HeartbeatRequest::KEY, versions::HEARTBEAT),
    (LeaveGroupRequest::KEY, versions::LEAVE_GROUP),
    (SyncGroupRequest::KEY, versions::SYNC_GROUP),
    (DescribeGroupsRequest::KEY, versions::DESCRIBE_GROUPS),
    (ListGroupsRequest::KEY, versions::LIST_GROUPS),
    (ApiVersionsRequest::KEY, API_VERSIONS),
    (CreateTopicsRequest::KEY, versions::CREATE_TOPICS),
    (DeleteTopicsRequest::KEY, versions::DELETE_TOPICS),
    (DeleteRecordsRequest::KEY, versions::DELETE_RECORDS),
    (InitProducerIdRequest::KEY, versions::INIT_PRODUCER_ID),
    (DescribeConfigsRequest::KEY, versions::DESCRIBE_CONFIGS),
    (AlterConfigsRequest::KEY, versions::ALTER_CONFIGS),
    (DeleteGroupsRequest::KEY, versions::DELETE_GROUPS),
    (
        IncrementalAlterConfigsRequest::KEY,
        versions::INCREMENTAL_ALTER_CONFIGS,
    ),
    (CreatePartitionsRequest::KEY, versions::CREATE_PARTITIONS),
    (OffsetDeleteRequest::KEY, versions::OFFSET_DELETE),
    (SaslHandshakeRequest::KEY, SASL_HANDSHAKE),
    (SaslAuthenticateRequest::KEY, SASL_AUTHENTICATE),
];

/// Reads `frame` (an answer without its size prefix) as the answer to a request `api_key` at
/// `version`; `fetch_offset` is where a Fetch asked to read from. `Err` says why the client
/// would refuse it; `Ok` that it read it. Panics only where the client would.
pub fn read_answer(
    api_key: i16,
    version: i16,
    frame: Bytes,
    fetch_offset: i64,
) -> Result<(), String> {
    // The connection refuses frames under four bytes before anything reads them.
    if frame.len() < 4 {
        return Err("answer shorter than its correlation id".into());
    }
    macro_rules! read {
        ($request:ty) => {{
            let header_version =
                <<$request as Request>::Response as HeaderVersion>::header_version(version);
            let body = strip_response_header(frame, header_version)?;
            decode_body::<$request>(version, body)?
        }};
    }
    match api_key {
        ProduceRequest::KEY => {
            read!(ProduceRequest);
        }
        FetchRequest::KEY => read_fetch(read!(FetchRequest), fetch_offset),
        ListOffsetsRequest::KEY => {
            read!(ListOffsetsRequest);
        }
        MetadataRequest::KEY => {
            read!(MetadataRequest);
        }
        OffsetCommitRequest::KEY => {
            read!(OffsetCommitRequest);
        }
        OffsetFetchRequest::KEY => {
            read!(OffsetFetchRequest);
        }
        FindCoordinatorRequest::KEY => {
            read!(FindCoordinatorRequest);
        }
        JoinGroupRequest::KEY => {
            for member in read!(JoinGroupRequest).members {
                read_subscription(&member.metadata);
            }
        }
        HeartbeatRequest::KEY => {
            read!(HeartbeatRequest);
        }
        LeaveGroupRequest::KEY => {
            read!(LeaveGroupRequest);
        }
        SyncGroupRequest::KEY => read_assignment(&read!(SyncGroupRequest).assignment),
        DescribeGroupsRequest::KEY => {
            for group in read!(DescribeGroupsRequest).groups {
                for member in group.members {
                    read_subscription(&member.member_metadata);
                    read_assignment(&member.member_assignment);
                }
            }
        }
        ListGroupsRequest::KEY => {
            read!(ListGroupsRequest);
        }
        ApiVersionsRequest::KEY => {
            read!(ApiVersionsRequest);
        }
        CreateTopicsRequest::KEY => {
            read!(CreateTopicsRequest);
        }
        DeleteTopicsRequest::KEY => {
            read!(DeleteTopicsRequest);
        }
        DeleteRecordsRequest::KEY => {
            read!(DeleteRecordsRequest);
        }
        InitProducerIdRequest::KEY => {
            read!(InitProducerIdRequest);
        }
        DescribeConfigsRequest::KEY => {
            read!(DescribeConfigsRequest);
        }
        AlterConfigsRequest::KEY => {
            read!(AlterConfigsRequest);
        }
        DeleteGroupsRequest::KEY => {
            read!(DeleteGroupsRequest);
        }
        IncrementalAlterConfigsRequest::KEY => {
            read!(IncrementalAlterConfigsRequest);
        }
        CreatePartitionsRequest::KEY => {
            read!(CreatePartitionsRequest);
        }
        OffsetDeleteRequest::KEY => {
            read!(OffsetDeleteRequest);
        }
        SaslHandshakeRequest::KEY => {
            read!(SaslHandshakeRequest);
        }
        SaslAuthenticateRequest::KEY => {
            read!(SaslAuthenticateRequest);
        }
        other => return Err(format!("the client never sends API {other}")),
    }
    Ok(())
}

/// The consumer's reading of a Fetch answer, as if it had asked every partition in it.
fn read_fetch(response: FetchResponse, fetch_offset: i64) {
    let partitions = response
        .responses
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                let tp = TopicPartition::new(topic.topic.0.to_string(), partition.partition_index);
                (tp, fetch_offset, -1, i32::MAX)
            })
        })
        .collect();
    let plan = FetchPlan {
        node: 0,
        max_wait: std::time::Duration::ZERO,
        min_bytes: 1,
        max_bytes: i32::MAX,
        partitions,
    };
    fetcher::parse(0, response, &plan);
}

/// A subscription the client reads must survive its own encoding (which writes partitions
/// grouped by topic, sorted and once each, as the Java client does).
fn read_subscription(bytes: &[u8]) {
    if let Some((_, mut subscription)) = protocol::decode_subscription(bytes) {
        let encoded = protocol::encode_subscription(&subscription);
        let (version, mut again) =
            protocol::decode_subscription(&encoded).expect("our own encoding decodes");
        assert_eq!(version, protocol::VERSION);
        normalize(&mut subscription.owned);
        normalize(&mut again.owned);
        assert_eq!(again, subscription);
    }
}

/// An assignment the client reads must survive its own encoding (see `read_subscription`).
fn read_assignment(bytes: &[u8]) {
    if let Some(mut assignment) = protocol::decode_assignment(bytes) {
        let encoded = protocol::encode_assignment(&assignment, protocol::VERSION);
        let mut again = protocol::decode_assignment(&encoded).expect("our own encoding decodes");
        normalize(&mut assignment.partitions);
        normalize(&mut again.partitions);
        assert_eq!(again, assignment);
    }
}

fn normalize(partitions: &mut Vec<TopicPartition>) {
    partitions.sort();
    partitions.dedup();
}
