//! Injected errors in Kafka's own response shapes.
//!
//! Two ways, by what the API does. An API that changes something (Produce, JoinGroup,
//! OffsetCommit, CreateTopics…) gets an error response built from the request, so nothing is
//! written, joined or committed — as a broker that refused it. A read-only API (Fetch,
//! Metadata, ListOffsets, FindCoordinator…) is handled as usual and every error code of its
//! answer is then overwritten, which gives exactly the shape a client expects.
//!
//! Partition-level errors (Produce, Fetch, ListOffsets, OffsetCommit): the errored partitions
//! are taken out of the request before it is handled and put back into the response with
//! their code, so the request's other partitions are served normally.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Fetch's top-level error codes that are about the fetch session, not a partition.
const FETCH_SESSION_ERRORS: [i16; 2] = [70, 71];

/// An error response for a request of an API that changes state; None for a read-only API
/// (then handle it and `overwrite_errors`).
pub fn error_response(body: &RequestKind, version: i16, code: i16) -> Option<ResponseKind> {
    let _ = version;
    let response = match body {
        RequestKind::Produce(request) => {
            let mut response = ProduceResponse::default();
            for topic in &request.topic_data {
                let mut out = produce_response::TopicProduceResponse::default();
                out.name = topic.name.clone();
                out.topic_id = topic.topic_id;
                for partition in &topic.partition_data {
                    out.partition_responses
                        .push(produce_partition(partition.index, code));
                }
                response.responses.push(out);
            }
            if request.acks == 0 {
                // acks=0 gets no answer; Kafka closes the connection on a failed one instead.
                return None;
            }
            ResponseKind::Produce(response)
        }
        RequestKind::CreateTopics(request) => {
            let mut response = CreateTopicsResponse::default();
            for topic in &request.topics {
                let mut out = create_topics_response::CreatableTopicResult::default();
                out.name = topic.name.clone();
                out.error_code = code;
                out.num_partitions = -1;
                out.replication_factor = -1;
                response.topics.push(out);
            }
            ResponseKind::CreateTopics(response)
        }
        RequestKind::DeleteTopics(request) => {
            let mut response = DeleteTopicsResponse::default();
            let names = request
                .topic_names
                .iter()
                .map(|name| (Some(name.clone()), Uuid::nil()))
                .chain(
                    request
                        .topics
                        .iter()
                        .map(|topic| (topic.name.clone(), topic.topic_id)),
                );
            for (name, topic_id) in names {
                let mut out = delete_topics_response::DeletableTopicResult::default();
                out.name = name;
                out.topic_id = topic_id;
                out.error_code = code;
                response.responses.push(out);
            }
            ResponseKind::DeleteTopics(response)
        }
        RequestKind::CreatePartitions(request) => {
            let mut response = CreatePartitionsResponse::default();
            for topic in &request.topics {
                let mut out = create_partitions_response::CreatePartitionsTopicResult::default();
                out.name = topic.name.clone();
                out.error_code = code;
                response.results.push(out);
            }
            ResponseKind::CreatePartitions(response)
        }
        RequestKind::InitProducerId(_) => {
            let mut response = InitProducerIdResponse::default();
            response.error_code = code;
            response.producer_id = (-1).into();
            response.producer_epoch = -1;
            ResponseKind::InitProducerId(response)
        }
        RequestKind::JoinGroup(request) => {
            let mut response = JoinGroupResponse::default();
            response.error_code = code;
            response.generation_id = -1;
            response.member_id = request.member_id.clone();
            response.leader = StrBytes::from_static_str("");
            ResponseKind::JoinGroup(response)
        }
        RequestKind::SyncGroup(_) => {
            let mut response = SyncGroupResponse::default();
            response.error_code = code;
            ResponseKind::SyncGroup(response)
        }
        RequestKind::Heartbeat(_) => {
            let mut response = HeartbeatResponse::default();
            response.error_code = code;
            ResponseKind::Heartbeat(response)
        }
        RequestKind::LeaveGroup(request) => {
            let mut response = LeaveGroupResponse::default();
            response.error_code = code;
            for member in &request.members {
                let mut out = leave_group_response::MemberResponse::default();
                out.member_id = member.member_id.clone();
                out.group_instance_id = member.group_instance_id.clone();
                out.error_code = code;
                response.members.push(out);
            }
            ResponseKind::LeaveGroup(response)
        }
        RequestKind::OffsetCommit(request) => {
            let mut response = OffsetCommitResponse::default();
            for topic in &request.topics {
                let mut out = offset_commit_response::OffsetCommitResponseTopic::default();
                out.name = topic.name.clone();
                out.topic_id = topic.topic_id;
                for partition in &topic.partitions {
                    out.partitions
                        .push(commit_partition(partition.partition_index, code));
                }
                response.topics.push(out);
            }
            ResponseKind::OffsetCommit(response)
        }
        RequestKind::DeleteGroups(request) => {
            let mut response = DeleteGroupsResponse::default();
            for group in &request.groups_names {
                let mut out = delete_groups_response::DeletableGroupResult::default();
                out.group_id = group.clone();
                out.error_code = code;
                response.results.push(out);
            }
            ResponseKind::DeleteGroups(response)
        }
        RequestKind::OffsetDelete(_) => {
            let mut response = OffsetDeleteResponse::default();
            response.error_code = code;
            ResponseKind::OffsetDelete(response)
        }
        RequestKind::DeleteRecords(request) => {
            let mut response = DeleteRecordsResponse::default();
            for topic in &request.topics {
                let mut out = delete_records_response::DeleteRecordsTopicResult::default();
                out.name = topic.name.clone();
                for partition in &topic.partitions {
                    let mut result =
                        delete_records_response::DeleteRecordsPartitionResult::default();
                    result.partition_index = partition.partition_index;
                    result.low_watermark = -1;
                    result.error_code = code;
                    out.partitions.push(result);
                }
                response.topics.push(out);
            }
            ResponseKind::DeleteRecords(response)
        }
        RequestKind::AlterConfigs(request) => {
            let mut response = AlterConfigsResponse::default();
            for resource in &request.resources {
                let mut out = alter_configs_response::AlterConfigsResourceResponse::default();
                out.error_code = code;
                out.resource_type = resource.resource_type;
                out.resource_name = resource.resource_name.clone();
                response.responses.push(out);
            }
            ResponseKind::AlterConfigs(response)
        }
        RequestKind::IncrementalAlterConfigs(request) => {
            let mut response = IncrementalAlterConfigsResponse::default();
            for resource in &request.resources {
                let mut out =
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                out.error_code = code;
                out.resource_type = resource.resource_type;
                out.resource_name = resource.resource_name.clone();
                response.responses.push(out);
            }
            ResponseKind::IncrementalAlterConfigs(response)
        }
        _ => return None,
    };
    Some(response)
}

/// Where an error code sits in a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// The response's own error code.
    Top,
    /// A topic's, partition's, group's, member's or resource's.
    Item,
}

/// Sets every error code of a (read-only API's) response to `code`. Fetch's own error code is
/// set only for the session errors; a fetched partition's records are dropped with its error.
pub fn overwrite_errors(response: &mut ResponseKind, code: i16) {
    let fetch = matches!(response, ResponseKind::Fetch(_));
    if let ResponseKind::Fetch(fetch) = response {
        for topic in &mut fetch.responses {
            for partition in &mut topic.partitions {
                partition.records = None;
                partition.high_watermark = -1;
                partition.last_stable_offset = -1;
            }
        }
    }
    visit(response, &mut |level, error_code| {
        if level == Level::Item || !fetch || FETCH_SESSION_ERRORS.contains(&code) {
            *error_code = code;
        }
    });
}

/// Every non-zero error code of a response, top-level first, then in response order.
pub fn error_codes(response: &mut ResponseKind) -> Vec<i16> {
    let mut codes = Vec::new();
    visit(response, &mut |_, code| {
        if *code != 0 {
            codes.push(*code);
        }
    });
    codes
}

fn visit(response: &mut ResponseKind, f: &mut dyn FnMut(Level, &mut i16)) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter_mut()
            .flat_map(|t| t.partition_responses.iter_mut())
            .for_each(|p| f(Level::Item, &mut p.error_code)),
        ResponseKind::Fetch(r) => {
            f(Level::Top, &mut r.error_code);
            r.responses
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
                .for_each(|p| f(Level::Item, &mut p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| f(Level::Item, &mut p.error_code)),
        ResponseKind::Metadata(r) => {
            for topic in &mut r.topics {
                f(Level::Item, &mut topic.error_code);
                for partition in &mut topic.partitions {
                    f(Level::Item, &mut partition.error_code);
                }
            }
        }
        ResponseKind::ApiVersions(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::CreateTopics(r) => r
            .topics
            .iter_mut()
            .for_each(|t| f(Level::Item, &mut t.error_code)),
        ResponseKind::DeleteTopics(r) => r
            .responses
            .iter_mut()
            .for_each(|t| f(Level::Item, &mut t.error_code)),
        ResponseKind::InitProducerId(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| f(Level::Item, &mut p.error_code)),
        ResponseKind::CreatePartitions(r) => r
            .results
            .iter_mut()
            .for_each(|t| f(Level::Item, &mut t.error_code)),
        ResponseKind::DescribeCluster(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::FindCoordinator(r) => {
            f(Level::Top, &mut r.error_code);
            r.coordinators
                .iter_mut()
                .for_each(|c| f(Level::Item, &mut c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::SyncGroup(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::Heartbeat(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::LeaveGroup(r) => {
            f(Level::Top, &mut r.error_code);
            r.members
                .iter_mut()
                .for_each(|m| f(Level::Item, &mut m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| f(Level::Item, &mut p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(Level::Top, &mut r.error_code);
            r.topics
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
                .for_each(|p| f(Level::Item, &mut p.error_code));
            for group in &mut r.groups {
                f(Level::Item, &mut group.error_code);
                group
                    .topics
                    .iter_mut()
                    .flat_map(|t| t.partitions.iter_mut())
                    .for_each(|p| f(Level::Item, &mut p.error_code));
            }
        }
        ResponseKind::ListGroups(r) => f(Level::Top, &mut r.error_code),
        ResponseKind::DescribeGroups(r) => r
            .groups
            .iter_mut()
            .for_each(|g| f(Level::Item, &mut g.error_code)),
        ResponseKind::DeleteGroups(r) => r
            .results
            .iter_mut()
            .for_each(|g| f(Level::Item, &mut g.error_code)),
        ResponseKind::OffsetDelete(r) => {
            f(Level::Top, &mut r.error_code);
            r.topics
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
                .for_each(|p| f(Level::Item, &mut p.error_code));
        }
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .for_each(|p| f(Level::Item, &mut p.error_code)),
        ResponseKind::DescribeConfigs(r) => r
            .results
            .iter_mut()
            .for_each(|c| f(Level::Item, &mut c.error_code)),
        ResponseKind::AlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|c| f(Level::Item, &mut c.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|c| f(Level::Item, &mut c.error_code)),
        _ => {}
    }
}

/// APIs whose requests name partitions that can carry an injected partition error.
pub fn has_partition_errors(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::Produce | ApiKey::Fetch | ApiKey::ListOffsets | ApiKey::OffsetCommit
    )
}

/// The (topic, partition) pairs a request names, for the APIs `has_partition_errors` lists;
/// topics named only by id are looked up with `name_of`.
pub fn partitions_named(
    body: &RequestKind,
    name_of: &dyn Fn(Uuid) -> Option<String>,
) -> Vec<(String, i32)> {
    let name = |name: &str, id: Uuid| -> String {
        if name.is_empty() {
            name_of(id).unwrap_or_default()
        } else {
            name.to_owned()
        }
    };
    match body {
        RequestKind::Produce(r) => r
            .topic_data
            .iter()
            .flat_map(|t| {
                let topic = name(&t.name, t.topic_id);
                t.partition_data
                    .iter()
                    .map(move |p| (topic.clone(), p.index))
            })
            .collect(),
        RequestKind::Fetch(r) => r
            .topics
            .iter()
            .flat_map(|t| {
                let topic = name(&t.topic, t.topic_id);
                t.partitions
                    .iter()
                    .map(move |p| (topic.clone(), p.partition))
            })
            .collect(),
        RequestKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| {
                let topic = t.name.to_string();
                t.partitions
                    .iter()
                    .map(move |p| (topic.clone(), p.partition_index))
            })
            .collect(),
        RequestKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| {
                let topic = name(&t.name, t.topic_id);
                t.partitions
                    .iter()
                    .map(move |p| (topic.clone(), p.partition_index))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A partition taken out of a request to be answered with an injected error.
#[derive(Debug, Clone)]
pub struct Withheld {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub code: i16,
}

/// Takes the errored partitions out of the request (a topic left without partitions goes
/// too) and returns them, to be put back by `answer_withheld`.
pub fn withhold(
    body: &mut RequestKind,
    errors: &[(String, i32, i16)],
    name_of: &dyn Fn(Uuid) -> Option<String>,
) -> Vec<Withheld> {
    let mut withheld = Vec::new();
    let mut take = |topic: &str, topic_id: Uuid, partition: i32| -> bool {
        let topic = if topic.is_empty() {
            name_of(topic_id).unwrap_or_default()
        } else {
            topic.to_owned()
        };
        let found = errors
            .iter()
            .find(|(t, p, _)| *t == topic && *p == partition);
        if let Some((_, _, code)) = found {
            withheld.push(Withheld {
                topic,
                topic_id,
                partition,
                code: *code,
            });
            true
        } else {
            false
        }
    };
    match body {
        RequestKind::Produce(r) => {
            for t in &mut r.topic_data {
                let (name, id) = (t.name.to_string(), t.topic_id);
                t.partition_data.retain(|p| !take(&name, id, p.index));
            }
            r.topic_data.retain(|t| !t.partition_data.is_empty());
        }
        RequestKind::Fetch(r) => {
            for t in &mut r.topics {
                let (name, id) = (t.topic.to_string(), t.topic_id);
                t.partitions.retain(|p| !take(&name, id, p.partition));
            }
            r.topics.retain(|t| !t.partitions.is_empty());
        }
        RequestKind::ListOffsets(r) => {
            for t in &mut r.topics {
                let name = t.name.to_string();
                t.partitions
                    .retain(|p| !take(&name, Uuid::nil(), p.partition_index));
            }
            r.topics.retain(|t| !t.partitions.is_empty());
        }
        RequestKind::OffsetCommit(r) => {
            for t in &mut r.topics {
                let (name, id) = (t.name.to_string(), t.topic_id);
                t.partitions.retain(|p| !take(&name, id, p.partition_index));
            }
            r.topics.retain(|t| !t.partitions.is_empty());
        }
        _ => {}
    }
    withheld
}

/// Puts the withheld partitions back into the response, each with its injected error. A
/// request that named a topic by id gets it back by id (Fetch v13+, Produce v13+).
pub fn answer_withheld(response: &mut ResponseKind, withheld: &[Withheld]) {
    for w in withheld {
        let by_id = !w.topic_id.is_nil();
        match response {
            ResponseKind::Produce(r) => {
                let position = r.responses.iter().position(|t| {
                    if by_id {
                        t.topic_id == w.topic_id
                    } else {
                        t.name.as_str() == w.topic
                    }
                });
                let topic = match position {
                    Some(position) => &mut r.responses[position],
                    None => {
                        let mut topic = produce_response::TopicProduceResponse::default();
                        topic.name = TopicName(StrBytes::from_string(w.topic.clone()));
                        topic.topic_id = w.topic_id;
                        r.responses.push(topic);
                        r.responses.last_mut().expect("just pushed")
                    }
                };
                topic
                    .partition_responses
                    .push(produce_partition(w.partition, w.code));
            }
            ResponseKind::Fetch(r) => {
                let position = r.responses.iter().position(|t| {
                    if by_id {
                        t.topic_id == w.topic_id
                    } else {
                        t.topic.as_str() == w.topic
                    }
                });
                let topic = match position {
                    Some(position) => &mut r.responses[position],
                    None => {
                        let mut topic = fetch_response::FetchableTopicResponse::default();
                        if !by_id {
                            topic.topic = TopicName(StrBytes::from_string(w.topic.clone()));
                        }
                        topic.topic_id = w.topic_id;
                        r.responses.push(topic);
                        r.responses.last_mut().expect("just pushed")
                    }
                };
                let mut partition = fetch_response::PartitionData::default();
                partition.partition_index = w.partition;
                partition.error_code = w.code;
                partition.high_watermark = -1;
                partition.last_stable_offset = -1;
                partition.log_start_offset = -1;
                topic.partitions.push(partition);
            }
            ResponseKind::ListOffsets(r) => {
                let position = r.topics.iter().position(|t| t.name.as_str() == w.topic);
                let topic = match position {
                    Some(position) => &mut r.topics[position],
                    None => {
                        let mut topic = list_offsets_response::ListOffsetsTopicResponse::default();
                        topic.name = TopicName(StrBytes::from_string(w.topic.clone()));
                        r.topics.push(topic);
                        r.topics.last_mut().expect("just pushed")
                    }
                };
                let mut partition = list_offsets_response::ListOffsetsPartitionResponse::default();
                partition.partition_index = w.partition;
                partition.error_code = w.code;
                partition.timestamp = -1;
                partition.offset = -1;
                partition.leader_epoch = -1;
                topic.partitions.push(partition);
            }
            ResponseKind::OffsetCommit(r) => {
                let position = r.topics.iter().position(|t| {
                    if by_id {
                        t.topic_id == w.topic_id
                    } else {
                        t.name.as_str() == w.topic
                    }
                });
                let topic = match position {
                    Some(position) => &mut r.topics[position],
                    None => {
                        let mut topic =
                            offset_commit_response::OffsetCommitResponseTopic::default();
                        topic.name = TopicName(StrBytes::from_string(w.topic.clone()));
                        topic.topic_id = w.topic_id;
                        r.topics.push(topic);
                        r.topics.last_mut().expect("just pushed")
                    }
                };
                topic.partitions.push(commit_partition(w.partition, w.code));
            }
            _ => {}
        }
    }
}

fn produce_partition(index: i32, code: i16) -> produce_response::PartitionProduceResponse {
    let mut partition = produce_response::PartitionProduceResponse::default();
    partition.index = index;
    partition.error_code = code;
    partition.base_offset = -1;
    partition.log_append_time_ms = -1;
    partition.log_start_offset = -1;
    partition
}

fn commit_partition(
    index: i32,
    code: i16,
) -> offset_commit_response::OffsetCommitResponsePartition {
    let mut partition = offset_commit_response::OffsetCommitResponsePartition::default();
    partition.partition_index = index;
    partition.error_code = code;
    partition
}
