//! Where new partitions' replicas go: round robin over nodes, or explicit assignments checked
//! against Kafka's rules.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;

use super::{ControllerState, Refusal};

/// Round-robin placement: partition p's replicas are consecutive nodes starting at a rotating
/// offset, so leaders spread evenly across nodes.
pub(super) fn place_replicas(
    state: &mut ControllerState,
    first_index: usize,
    count: usize,
    replication_factor: i16,
) -> Result<Vec<Vec<i32>>, Refusal> {
    // Only serving nodes get new replicas, as Kafka places them only on registered brokers.
    let node_ids: Vec<i32> = state.live.iter().copied().collect();
    if replication_factor as usize > node_ids.len() {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
                node_ids.len()
            ),
        ));
    }
    let start = state.next_placement_start;
    state.next_placement_start = state.next_placement_start.wrapping_add(1);
    Ok((first_index..first_index + count)
        .map(|partition| {
            (0..replication_factor as usize)
                .map(|replica| node_ids[(start + partition + replica) % node_ids.len()])
                .collect()
        })
        .collect())
}

/// Checks explicit assignments: partitions numbered from `first_index` without gaps, replicas
/// on registered nodes, no node twice, one replication factor throughout.
pub(super) fn explicit_assignments(
    state: &ControllerState,
    assignments: &[(i32, Vec<i32>)],
    first_index: usize,
) -> Result<Vec<Vec<i32>>, Refusal> {
    let invalid = |message: String| {
        Err(Refusal::new(
            ResponseError::InvalidReplicaAssignment,
            message,
        ))
    };
    let mut by_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (index, replicas) in assignments {
        if by_index.insert(*index, replicas.clone()).is_some() {
            return invalid(format!("Partition {index} is assigned twice."));
        }
    }
    let expected: Vec<i32> = (first_index..first_index + assignments.len())
        .map(|i| i as i32)
        .collect();
    if by_index.keys().copied().collect::<Vec<_>>() != expected {
        return invalid(
            "Partitions must be numbered consecutively from the first new partition.".into(),
        );
    }
    let factor = by_index.values().next().map_or(0, Vec::len);
    for (index, replicas) in &by_index {
        if replicas.is_empty() || replicas.len() != factor {
            return invalid(format!(
                "Partition {index} has a replica count different from the others."
            ));
        }
        let mut seen = replicas.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return invalid(format!("Partition {index} lists a broker twice."));
        }
        if let Some(unknown) = replicas.iter().find(|id| !state.nodes.contains_key(id)) {
            return invalid(format!(
                "Broker {unknown} of partition {index} is not registered."
            ));
        }
    }
    Ok(by_index.into_values().collect())
}
