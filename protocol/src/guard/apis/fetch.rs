//! Fetch (api key 1) reads record batches from partitions: FetchRequest v4-18 and FetchResponse
//! v4-18, as kafka-protocol 0.18 decodes them.

use crate::guard::schema::*;

pub(crate) const REQUEST: Message = Message {
    api_key: 1,
    versions: between(4, 18),
    flexible: since(12),
    body: &Struct {
        name: "FetchRequest",
        fields: &[
            field("replica_id", until(14), INT32),
            field("max_wait_ms", ALL, INT32),
            field("min_bytes", ALL, INT32),
            field("max_bytes", ALL, INT32),
            field("isolation_level", ALL, INT8),
            field("session_id", since(7), INT32),
            field("session_epoch", since(7), INT32),
            field("topics", ALL, array(&FETCH_TOPIC)),
            field("forgotten_topics_data", since(7), array(&FORGOTTEN_TOPIC)),
            field("rack_id", since(11), STRING),
        ],
        tagged_fields: &[
            tagged(0, "cluster_id", ALL, NULLABLE_STRING),
            tagged(1, "replica_state", since(15), REPLICA_STATE),
        ],
    },
};

const FETCH_TOPIC: Kind = Kind::Struct(&Struct {
    name: "FetchTopic",
    fields: &[
        field("topic", until(12), STRING),
        field("topic_id", since(13), UUID),
        field("partitions", ALL, array(&FETCH_PARTITION)),
    ],
    tagged_fields: &[],
});

const FORGOTTEN_TOPIC: Kind = Kind::Struct(&Struct {
    name: "ForgottenTopic",
    fields: &[
        field("topic", between(7, 12), STRING),
        field("topic_id", since(13), UUID),
        field("partitions", since(7), array(&INT32)),
    ],
    tagged_fields: &[],
});

const REPLICA_STATE: Kind = Kind::Struct(&Struct {
    name: "ReplicaState",
    fields: &[
        field("replica_id", since(15), INT32),
        field("replica_epoch", since(15), INT64),
    ],
    tagged_fields: &[],
});

const FETCH_PARTITION: Kind = Kind::Struct(&Struct {
    name: "FetchPartition",
    fields: &[
        field("partition", ALL, INT32),
        field("current_leader_epoch", since(9), INT32),
        field("fetch_offset", ALL, INT64),
        field("last_fetched_epoch", since(12), INT32),
        field("log_start_offset", since(5), INT64),
        field("partition_max_bytes", ALL, INT32),
    ],
    tagged_fields: &[
        tagged(0, "replica_directory_id", since(17), UUID),
        tagged(1, "high_watermark", since(18), INT64),
    ],
});

pub(crate) const RESPONSE: Message = Message {
    api_key: 1,
    versions: between(4, 18),
    flexible: since(12),
    body: &Struct {
        name: "FetchResponse",
        fields: &[
            field("throttle_time_ms", ALL, INT32),
            field("error_code", since(7), INT16),
            field("session_id", since(7), INT32),
            field("responses", ALL, array(&FETCHABLE_TOPIC_RESPONSE)),
        ],
        tagged_fields: &[tagged(
            0,
            "node_endpoints",
            since(16),
            array(&NODE_ENDPOINT),
        )],
    },
};

const FETCHABLE_TOPIC_RESPONSE: Kind = Kind::Struct(&Struct {
    name: "FetchableTopicResponse",
    fields: &[
        field("topic", until(12), STRING),
        field("topic_id", since(13), UUID),
        field("partitions", ALL, array(&PARTITION_DATA)),
    ],
    tagged_fields: &[],
});

const NODE_ENDPOINT: Kind = Kind::Struct(&Struct {
    name: "NodeEndpoint",
    fields: &[
        field("node_id", since(16), INT32),
        field("host", since(16), STRING),
        field("port", since(16), INT32),
        field("rack", since(16), NULLABLE_STRING),
    ],
    tagged_fields: &[],
});

const PARTITION_DATA: Kind = Kind::Struct(&Struct {
    name: "PartitionData",
    fields: &[
        field("partition_index", ALL, INT32),
        field("error_code", ALL, INT16),
        field("high_watermark", ALL, INT64),
        field("last_stable_offset", ALL, INT64),
        field("log_start_offset", since(5), INT64),
        field(
            "aborted_transactions",
            ALL,
            nullable_array(&ABORTED_TRANSACTION),
        ),
        field("preferred_read_replica", since(11), INT32),
        field("records", ALL, RECORDS),
    ],
    tagged_fields: &[
        tagged(0, "diverging_epoch", ALL, EPOCH_END_OFFSET),
        tagged(1, "current_leader", ALL, LEADER_ID_AND_EPOCH),
        tagged(2, "snapshot_id", ALL, SNAPSHOT_ID),
    ],
});

const ABORTED_TRANSACTION: Kind = Kind::Struct(&Struct {
    name: "AbortedTransaction",
    fields: &[
        field("producer_id", ALL, INT64),
        field("first_offset", ALL, INT64),
    ],
    tagged_fields: &[],
});

const EPOCH_END_OFFSET: Kind = Kind::Struct(&Struct {
    name: "EpochEndOffset",
    fields: &[
        field("epoch", since(12), INT32),
        field("end_offset", since(12), INT64),
    ],
    tagged_fields: &[],
});

const LEADER_ID_AND_EPOCH: Kind = Kind::Struct(&Struct {
    name: "LeaderIdAndEpoch",
    fields: &[
        field("leader_id", since(12), INT32),
        field("leader_epoch", since(12), INT32),
    ],
    tagged_fields: &[],
});

const SNAPSHOT_ID: Kind = Kind::Struct(&Struct {
    name: "SnapshotId",
    fields: &[field("end_offset", ALL, INT64), field("epoch", ALL, INT32)],
    tagged_fields: &[],
});
