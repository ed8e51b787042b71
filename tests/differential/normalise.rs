//! What legitimately differs between two brokers, replaced by stable placeholders before the
//! trees are compared: cluster id, node ids, hosts and ports, topic ids, producer ids, member
//! ids, log-append times and throttle times. Placeholders are numbered in order of first
//! appearance within one scenario on one broker, so "the same member as two steps ago" still
//! compares. Names carry the run's prefix (every topic and group is unique per run); it is
//! stripped from every string, error messages included.
//!
//! Records in Fetch responses are decoded into batches and records, so a difference points at
//! a field (an offset, a timestamp, a key) rather than at a hex blob.

use std::collections::HashMap;

use kafka_protocol::messages::ApiKey;
use serde_json::{Map, Value, json};
use tidepool_protocol::batch::{self, BatchHeader};
use tidepool_protocol::records::{self, DecodeLimits};

use super::tree::{hex, unhex};

/// Placeholders for one scenario on one broker.
#[derive(Default)]
pub struct Placeholders {
    classes: HashMap<&'static str, HashMap<String, usize>>,
    /// The run's record timestamps are `base_ms` plus a few seconds at most (and it is a
    /// minute in the past): a log-append time that close to it is one of our record
    /// timestamps (Kafka answers a duplicate batch with its max timestamp), shown as
    /// `<base+N>`; any other is the broker's clock.
    base_ms: i64,
}

impl Placeholders {
    fn name(&mut self, class: &'static str, raw: &Value) -> Value {
        let key = match raw {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let seen = self.classes.entry(class).or_default();
        let next = seen.len() + 1;
        let number = *seen.entry(key).or_insert(next);
        Value::String(format!("<{class}-{number}>"))
    }
}

const NODE_FIELDS: &[&str] = &["node_id", "leader_id", "controller_id", "broker_id"];
const NODE_LIST_FIELDS: &[&str] = &[
    "replica_nodes",
    "isr_nodes",
    "offline_replicas",
    "eligible_leader_replicas",
    "last_known_elr",
];
const MEMBER_FIELDS: &[&str] = &["member_id", "leader"];
/// Keys that identify an element of a list, in order of preference: lists of such objects are
/// sorted by them (Kafka answers some lists in hash order).
const SORT_KEYS: &[&str] = &[
    "name",
    "topic",
    "partition_index",
    "partition",
    "index",
    "group_id",
    "resource_name",
    "key",
    "member_id",
];

const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

pub fn normalise(
    api: ApiKey,
    version: i16,
    tree: Value,
    prefix: &str,
    base_ms: i64,
    names: &mut Placeholders,
) -> Value {
    names.base_ms = base_ms;
    let mut tree = strip_prefix(tree, prefix);
    if api == ApiKey::FindCoordinator
        && version >= 4
        && let Some(object) = tree.as_object_mut()
    {
        // v4+ answers only in `coordinators`: the top-level fields are not on the wire, and
        // their decoded defaults (node 0) would map to different node placeholders.
        for field in ["error_code", "error_message", "node_id", "host", "port"] {
            object.remove(field);
        }
    }
    let tree = match api {
        ApiKey::ApiVersions => api_versions(tree),
        ApiKey::Metadata => keep_run_topics(tree, "topics"),
        ApiKey::ListGroups => keep_run_topics(tree, "groups"),
        ApiKey::DescribeConfigs => configs_by_name(tree, "results"),
        ApiKey::CreateTopics => configs_by_name(tree, "topics"),
        _ => tree,
    };
    walk(tree, None, names)
}

/// Removes the run's prefix from every string (object keys included).
fn strip_prefix(tree: Value, prefix: &str) -> Value {
    match tree {
        Value::String(text) => Value::String(text.replace(prefix, "")),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| strip_prefix(item, prefix))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key.replace(prefix, ""), strip_prefix(value, prefix)))
                .collect(),
        ),
        other => other,
    }
}

fn walk(tree: Value, field: Option<&str>, names: &mut Placeholders) -> Value {
    match (field, tree) {
        (Some("throttle_time_ms"), Value::Number(_)) => json!("<throttle-ms>"),
        (Some("cluster_id"), Value::String(id)) if !id.is_empty() => json!("<cluster-id>"),
        (Some("host"), Value::String(host)) if !host.is_empty() => json!("<host>"),
        (Some("port"), value @ Value::Number(_)) if non_negative(&value) => json!("<port>"),
        (Some("finalized_features_epoch"), value @ Value::Number(_)) if non_negative(&value) => {
            json!("<features-epoch>")
        }
        (Some("log_append_time_ms"), value @ Value::Number(_)) if non_negative(&value) => {
            let time = value.as_i64().unwrap_or_default();
            if (-5_000..30_000).contains(&(time - names.base_ms)) {
                json!(format!("<base+{}>", time - names.base_ms))
            } else {
                json!("<log-append-time>")
            }
        }
        (Some(field), value @ Value::Number(_))
            if NODE_FIELDS.contains(&field) && non_negative(&value) =>
        {
            names.name("node", &value)
        }
        (Some(field), Value::Array(items)) if NODE_LIST_FIELDS.contains(&field) => Value::Array(
            items
                .into_iter()
                .map(|item| {
                    if non_negative(&item) {
                        names.name("node", &item)
                    } else {
                        item
                    }
                })
                .collect(),
        ),
        (Some("topic_id"), Value::String(id)) if id != ZERO_UUID => {
            names.name("topic-id", &Value::String(id))
        }
        (Some("producer_id"), value @ Value::Number(_)) if non_negative(&value) => {
            names.name("producer", &value)
        }
        (Some(field), Value::String(id)) if MEMBER_FIELDS.contains(&field) && !id.is_empty() => {
            names.name("member", &Value::String(id))
        }
        (Some("batch_index_error_message"), Value::String(message))
            if message.contains(TIMESTAMP_BOUNDS) =>
        {
            Value::String(timestamp_bounds(&message))
        }
        (Some("records"), Value::String(blob)) if blob.starts_with("0x") => {
            record_set(&blob, names)
        }
        (field, Value::Array(items)) => {
            let mut items: Vec<Value> = items
                .into_iter()
                .map(|item| walk(item, None, names))
                .collect();
            // A config's synonyms are in precedence order: that order is the answer.
            if field != Some("synonyms") {
                sort_by_identity(&mut items);
            }
            Value::Array(items)
        }
        (_, Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = walk(value, Some(&key), names);
                    (key, value)
                })
                .collect(),
        ),
        (_, other) => other,
    }
}

/// INVALID_TIMESTAMP's record errors name the window around the broker's clock; its width
/// (before.max.ms + after.max.ms) is what both brokers must agree on.
const TIMESTAMP_BOUNDS: &str = "The timestamp should be within [";

fn timestamp_bounds(message: &str) -> String {
    let Some(start) = message.find(TIMESTAMP_BOUNDS) else {
        return message.to_owned();
    };
    let bounds = &message[start + TIMESTAMP_BOUNDS.len()..];
    let parsed = bounds.split_once(']').and_then(|(inside, rest)| {
        let (lower, upper) = inside.split_once(", ")?;
        let width = upper
            .parse::<i64>()
            .ok()?
            .wrapping_sub(lower.parse::<i64>().ok()?);
        Some((width, rest))
    });
    match parsed {
        Some((width, rest)) => format!(
            "{}{TIMESTAMP_BOUNDS}<clock-window {width} ms>]{rest}",
            &message[..start]
        ),
        None => message.to_owned(),
    }
}

fn non_negative(value: &Value) -> bool {
    value.as_i64().is_some_and(|number| number >= 0)
}

/// Sorts a list of objects by the first identity key all of them carry.
fn sort_by_identity(items: &mut [Value]) {
    if items.len() < 2 || !items.iter().all(Value::is_object) {
        return;
    }
    let Some(key) = SORT_KEYS
        .iter()
        .find(|key| items.iter().all(|item| item.get(**key).is_some()))
    else {
        return;
    };
    items.sort_by(|a, b| {
        let (a, b) = (&a[*key], &b[*key]);
        match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a.to_string().cmp(&b.to_string()),
        }
    });
}

/// ApiVersions: the API list as an object keyed by API name, so a difference names the API.
fn api_versions(mut tree: Value) -> Value {
    if let Some(Value::Array(keys)) = tree.get_mut("api_keys").map(Value::take) {
        let mut by_name = Map::new();
        for entry in keys {
            let code = entry["api_key"].as_i64().unwrap_or(-1);
            let name = i16::try_from(code)
                .ok()
                .and_then(|code| ApiKey::try_from(code).ok())
                .map(|key| format!("{key:?}"))
                .unwrap_or_else(|| format!("api-{code}"));
            let mut entry = entry;
            if let Some(object) = entry.as_object_mut() {
                object.remove("api_key");
            }
            by_name.insert(name, entry);
        }
        tree["api_keys"] = Value::Object(by_name);
    }
    tree
}

/// Metadata and ListGroups list everything on the broker; a long-running Kafka holds earlier
/// runs' topics and groups. Keeps this run's (whose prefix was just stripped: names that still
/// start with the run-independent marker `dp` are other runs') and drops internal topics.
fn keep_run_topics(mut tree: Value, list: &str) -> Value {
    if let Some(Value::Array(items)) = tree.get_mut(list) {
        items.retain(|item| {
            let name = item
                .get("name")
                .or_else(|| item.get("group_id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            !name.starts_with(super::RUN_MARKER) && !name.starts_with("__")
        });
    }
    tree
}

/// DescribeConfigs and CreateTopics: each resource's configs keyed by name (the order is not
/// part of the contract, and a missing config then shows as one path).
fn configs_by_name(mut tree: Value, list: &str) -> Value {
    if let Some(Value::Array(results)) = tree.get_mut(list) {
        for result in results {
            if let Some(Value::Array(configs)) = result.get_mut("configs").map(Value::take) {
                let mut by_name = Map::new();
                for mut config in configs {
                    let name = config["name"].as_str().unwrap_or("?").to_owned();
                    if let Some(object) = config.as_object_mut() {
                        object.remove("name");
                    }
                    by_name.insert(name, config);
                }
                result["configs"] = Value::Object(by_name);
            }
        }
    }
    tree
}

/// A fetched record set as batches (header fields) with their records.
fn record_set(blob: &str, names: &mut Placeholders) -> Value {
    let Some(bytes) = unhex(blob) else {
        return json!("<bad hex>");
    };
    let ranges = match batch::split(&bytes) {
        Ok(ranges) => ranges,
        Err(error) => return json!(format!("<undecodable record set: {error}>")),
    };
    let batches = ranges
        .into_iter()
        .map(|range| {
            let bytes = &bytes[range];
            let Ok(header) = BatchHeader::parse(bytes) else {
                return json!("<truncated batch>");
            };
            let producer_id = if header.producer_id >= 0 {
                names.name("producer", &json!(header.producer_id))
            } else {
                json!(header.producer_id)
            };
            let max_timestamp = if header.is_log_append_time() {
                json!("<log-append-time>")
            } else {
                json!(header.max_timestamp)
            };
            let records = match records::decode(bytes, &DecodeLimits::default()) {
                Ok(records) => records
                    .into_iter()
                    .map(|record| {
                        json!({
                            "offset": record.offset,
                            "timestamp": if header.is_log_append_time() {
                                json!("<log-append-time>")
                            } else {
                                json!(record.timestamp)
                            },
                            "key": record.key.as_deref().map(text_or_hex),
                            "value": record.value.as_deref().map(text_or_hex),
                            "headers": record.headers.iter().map(|header| json!({
                                "key": header.key,
                                "value": header.value.as_deref().map(text_or_hex),
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
                Err(error) => json!(format!("<undecodable records: {error}>")),
            };
            json!({
                "base_offset": header.base_offset,
                "partition_leader_epoch": header.partition_leader_epoch,
                "magic": header.magic,
                "crc_valid": batch::compute_crc(bytes) == header.crc,
                "attributes": header.attributes,
                "last_offset_delta": header.last_offset_delta,
                "base_timestamp": header.base_timestamp,
                "max_timestamp": max_timestamp,
                "producer_id": producer_id,
                "producer_epoch": header.producer_epoch,
                "base_sequence": header.base_sequence,
                "records_count": header.records_count,
                "records": records,
            })
        })
        .collect();
    Value::Array(batches)
}

fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", hex(bytes)),
    }
}
